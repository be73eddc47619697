//! `sluice serve --kubernetes`: the API server as the source, plus what only a controller in a
//! cluster does (leader election, Ingress status, Events), wired around the same apply loop.

use crate::apply::Applier;
use anyhow::{Context, anyhow};
use clap::{ArgAction, Args};
use sluice_admin::RuntimeState;
use sluice_source::SourceUpdate;
use sluice_source::kubernetes::{
    InstanceIdentity, KubernetesOptions, KubernetesSource, LeaderElection, LeaseSettings,
    PublishAddress, StatusInput, StatusPublisher, connect,
};
use sluice_store::NamespacedName;
use sluice_translate::{TranslateOptions, is_ours};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Flags of Kubernetes mode.
#[derive(Debug, Clone, Args)]
pub struct KubernetesArgs {
    /// Watch the Kubernetes API server (in-cluster ServiceAccount, or --kubeconfig) instead of a
    /// manifest directory: Ingress controller and gateway in one process.
    #[arg(long, env = "SLUICE_KUBERNETES")]
    pub kubernetes: bool,

    /// Kubeconfig file to reach the API server with (default: the pod's ServiceAccount).
    #[arg(long, env = "SLUICE_KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// Watch Ingresses, Services, EndpointSlices and Secrets of this namespace only
    /// (default: every namespace).
    #[arg(long, env = "SLUICE_WATCH_NAMESPACE", value_name = "NAMESPACE")]
    pub watch_namespace: Option<String>,

    /// `namespace/name` of the Service in front of Sluice: its load-balancer addresses (else
    /// external IPs, else cluster IP) are written to status.loadBalancer of every Ingress served.
    #[arg(long, env = "SLUICE_PUBLISH_SERVICE", value_name = "NAMESPACE/NAME")]
    pub publish_service: Option<String>,

    /// IPs or host names written to status.loadBalancer of every Ingress served (instead of
    /// --publish-service).
    #[arg(
        long,
        env = "SLUICE_PUBLISH_STATUS_ADDRESS",
        value_delimiter = ',',
        value_name = "ADDRESS,..."
    )]
    pub publish_status_address: Vec<String>,

    /// When the API server suddenly lists no Ingresses at all after some were served, keep
    /// serving the last configuration and report a problem instead of dropping every route.
    #[arg(
        long,
        env = "SLUICE_REFUSE_EMPTY_CONFIG",
        default_value_t = true,
        action = ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    pub refuse_empty_config: bool,

    /// Name of the Lease (in the pod's namespace) that elects the replica writing Ingress status
    /// and Events.
    #[arg(long, env = "SLUICE_ELECTION_ID", default_value = "sluice-leader")]
    pub election_id: String,

    /// How long a leader that stopped renewing keeps the Lease before another replica takes over.
    #[arg(long, env = "SLUICE_ELECTION_LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub election_lease_duration: Duration,

    /// How often the leader renews the Lease (and the others check it).
    #[arg(long, env = "SLUICE_ELECTION_RENEW_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub election_renew_interval: Duration,

    /// This instance's ordinal among the replicas (default: the trailing number of POD_NAME,
    /// as a StatefulSet names its pods).
    #[arg(long, env = "SLUICE_INSTANCE_ORDINAL")]
    pub instance_ordinal: Option<u32>,
}

/// The running Kubernetes-mode tasks that need a word at shutdown.
pub struct KubernetesMode {
    shutdown: CancellationToken,
    election: JoinHandle<()>,
}

impl KubernetesMode {
    /// Gives up leadership (releasing the Lease, so another replica takes over during our drain).
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(3), self.election).await;
    }
}

/// Connects, waits for the first complete sync and applies it (marking the instance ready), then
/// keeps applying changes in the background. Returns once the first configuration is live.
pub async fn start(
    args: &KubernetesArgs,
    options: TranslateOptions,
    state: Arc<RuntimeState>,
    state_dir: Option<std::path::PathBuf>,
) -> anyhow::Result<KubernetesMode> {
    let identity = InstanceIdentity::from_env(args.instance_ordinal);
    tracing::info!(
        name = %identity.name,
        namespace = identity.namespace.as_deref().unwrap_or("-"),
        ordinal = ?identity.ordinal,
        "instance identity"
    );
    let publish = publish_address(args)?;
    let client = connect(args.kubeconfig.as_deref()).await?;
    let source = KubernetesSource::new(
        client.clone(),
        KubernetesOptions {
            watch_namespace: args.watch_namespace.clone(),
            configmap: options.configmap.clone(),
            refuse_empty_config: args.refuse_empty_config,
        },
    );
    let (updates_tx, mut updates) = watch::channel(SourceUpdate::default());
    tokio::spawn(source.run(updates_tx));
    tracing::info!(
        "waiting for the first complete list of every watched kind; /readyz answers 503 until then"
    );
    updates
        .changed()
        .await
        .map_err(|_| anyhow!("the Kubernetes source stopped before its first sync"))?;
    let first = updates.borrow_and_update().clone();
    let gates = crate::gate::GateOptions {
        instance_ordinal: identity.ordinal.map(i64::from),
        state_dir,
    };
    let mut applier = Applier::with_gates(options.clone(), state.clone(), gates);
    applier.apply(&first);
    state.mark_ready();
    tracing::info!("first configuration from the API server is live; ready");

    let (status_tx, status_rx) = watch::channel(status_input(&first, &options, &state));
    tokio::spawn(async move {
        while updates.changed().await.is_ok() {
            let update = updates.borrow_and_update().clone();
            applier.apply(&update);
            status_tx.send_replace(status_input(&update, &options, &state));
        }
    });

    let lease_namespace = identity
        .namespace
        .clone()
        .or_else(|| args.watch_namespace.clone())
        .unwrap_or_else(|| "default".to_string());
    let election = LeaderElection::new(
        client.clone(),
        LeaseSettings {
            namespace: lease_namespace,
            name: args.election_id.clone(),
            identity: identity.name.clone(),
            lease_duration: args.election_lease_duration,
            renew_every: args.election_renew_interval,
        },
    );
    let shutdown = CancellationToken::new();
    let (leader_tx, leader_rx) = watch::channel(false);
    let election = tokio::spawn(election.run(leader_tx, shutdown.clone().cancelled_owned()));
    let publisher = StatusPublisher::new(client, publish, identity.name);
    tokio::spawn(publisher.run(leader_rx, status_rx));
    Ok(KubernetesMode { shutdown, election })
}

fn publish_address(args: &KubernetesArgs) -> anyhow::Result<PublishAddress> {
    match (&args.publish_service, args.publish_status_address.is_empty()) {
        (Some(_), false) => Err(anyhow!(
            "--publish-service and --publish-status-address exclude each other: choose one"
        )),
        (Some(service), true) => NamespacedName::parse(service)
            .map(PublishAddress::Service)
            .ok_or_else(|| {
                anyhow!("--publish-service {service:?}: expected NAMESPACE/NAME, e.g. sluice-system/sluice")
            })
            .context("invalid --publish-service"),
        (None, false) => Ok(PublishAddress::Addresses(
            args.publish_status_address
                .iter()
                .map(|a| a.trim().to_string())
                .filter(|a| !a.is_empty())
                .collect(),
        )),
        (None, true) => Ok(PublishAddress::Nothing),
    }
}

fn status_input(
    update: &SourceUpdate,
    options: &TranslateOptions,
    state: &RuntimeState,
) -> StatusInput {
    let store = update.store.clone();
    let ours = store
        .ingresses
        .iter()
        .filter(|(_, stored)| is_ours(&stored.object, &store, options))
        .map(|(key, _)| key.clone())
        .collect();
    StatusInput {
        ours,
        problems: state.report.load().problems.clone(),
        store,
    }
}
