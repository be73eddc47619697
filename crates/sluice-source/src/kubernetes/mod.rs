//! Kubernetes mode: the objects Sluice serves, watched on the API server and kept in the same
//! [`sluice_store::ObjectStore`] the manifest source fills, published through the same channel.
//!
//! Also here, because only Kubernetes mode has them: leader election on a Lease, the Ingress
//! status the leader publishes, the Events it records for rejected Ingresses, and the
//! instance identity from the downward API.

mod events;
mod identity;
mod lease;
mod status;
mod sync;
mod watch;

pub use identity::{InstanceIdentity, ordinal_of};
pub use lease::{LeaderElection, LeaseSettings};
pub use status::{PublishAddress, StatusInput, StatusPublisher};

use crate::SourceUpdate;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::watcher;
use kube::{Api, Client};
use sluice_model::ObjectKind;
use sluice_store::{IngressCheckSum, NamespacedName, SecretCheckSum};
use std::collections::BTreeSet;
use std::path::Path;
use sync::{Change, SyncState};
use tokio::sync::{mpsc, watch as channel};
use watch::{Presence, WatchedKind};

/// Only TLS Secrets are ever used, and a cluster has many other Secrets (tokens, Helm releases).
const TLS_SECRETS: &str = "type=kubernetes.io/tls";

/// What to watch.
#[derive(Debug, Clone)]
pub struct KubernetesOptions {
    /// One namespace (`--watch-namespace`), or every namespace.
    pub watch_namespace: Option<String>,
    /// The global options ConfigMap (`--configmap`): the only ConfigMap watched.
    pub configmap: Option<NamespacedName>,
    /// Keep the last configuration when the API server suddenly lists no Ingresses.
    pub refuse_empty_config: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot read kubeconfig {path}: {source}; check the path given to --kubeconfig")]
    Kubeconfig {
        path: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error(
        "not running in a cluster ({0}) and no --kubeconfig given; pass --kubeconfig FILE to run outside a cluster"
    )]
    InCluster(#[source] kube::config::InClusterError),
    #[error("cannot create a Kubernetes client: {0}")]
    Client(#[source] kube::Error),
}

/// A client from `kubeconfig`, or from the pod's ServiceAccount when `None`.
pub async fn connect(kubeconfig: Option<&Path>) -> Result<Client, ConnectError> {
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|source| {
                ConnectError::Kubeconfig {
                    path: path.display().to_string(),
                    source,
                }
            })?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .map_err(|source| ConnectError::Kubeconfig {
                    path: path.display().to_string(),
                    source,
                })?
        }
        None => kube::Config::incluster().map_err(ConnectError::InCluster)?,
    };
    Client::try_from(config).map_err(ConnectError::Client)
}

/// The watches of one API server, feeding one object store.
pub struct KubernetesSource {
    client: Client,
    options: KubernetesOptions,
}

impl KubernetesSource {
    pub fn new(client: Client, options: KubernetesOptions) -> Self {
        KubernetesSource { client, options }
    }

    /// Watches until the receiver of `tx` is dropped. Publishes nothing until every watched kind
    /// has been listed completely once (so the first update is a complete configuration), then
    /// one update per burst of changes. While the API server is unreachable nothing is
    /// published, so the last configuration stays in effect.
    pub async fn run(self, tx: channel::Sender<SourceUpdate>) {
        let (changes_tx, changes) = mpsc::channel(4096);
        let ns = self.options.watch_namespace.as_deref();
        let client = &self.client;
        let all = watcher::Config::default();
        let mut watches: Vec<(ObjectKind, BoxFuture<'static, ()>)> = vec![
            watch_kind(namespaced::<Ingress>(client, ns), all.clone(), &changes_tx),
            watch_kind(
                Api::<IngressClass>::all(client.clone()),
                all.clone(),
                &changes_tx,
            ),
            watch_kind(namespaced::<Service>(client, ns), all.clone(), &changes_tx),
            watch_kind(
                namespaced::<EndpointSlice>(client, ns),
                all.clone(),
                &changes_tx,
            ),
            watch_kind(
                namespaced::<Secret>(client, ns),
                all.clone().fields(TLS_SECRETS),
                &changes_tx,
            ),
        ];
        if let Some(configmap) = &self.options.configmap {
            watches.push(watch_kind(
                Api::<ConfigMap>::namespaced(client.clone(), &configmap.namespace),
                all.clone()
                    .fields(&format!("metadata.name={}", configmap.name)),
                &changes_tx,
            ));
        }
        // Tengine-Ingress's checksum kinds are CRDs a cluster may not have installed.
        for watch in [
            optional_kind(
                namespaced::<IngressCheckSum>(client, ns),
                all.clone(),
                &changes_tx,
            ),
            optional_kind(
                namespaced::<SecretCheckSum>(client, ns),
                all.clone(),
                &changes_tx,
            ),
        ] {
            watches.push(watch);
        }
        drop(changes_tx);
        let expected: BTreeSet<ObjectKind> = watches.iter().map(|(kind, _)| *kind).collect();
        let mut running = tokio::task::JoinSet::new();
        for (_, watch) in watches {
            running.spawn(watch);
        }
        let state = SyncState::new(expected, self.options.refuse_empty_config);
        sync::run(state, changes, tx).await;
        running.shutdown().await;
    }
}

fn namespaced<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn watch_kind<K: WatchedKind>(
    api: Api<K>,
    config: watcher::Config,
    changes: &mpsc::Sender<Change>,
) -> (ObjectKind, BoxFuture<'static, ()>) {
    (
        K::KIND,
        watch::run(api, config, Presence::Required, changes.clone()).boxed(),
    )
}

fn optional_kind<K: WatchedKind>(
    api: Api<K>,
    config: watcher::Config,
    changes: &mpsc::Sender<Change>,
) -> (ObjectKind, BoxFuture<'static, ()>) {
    (
        K::KIND,
        watch::run(api, config, Presence::Optional, changes.clone()).boxed(),
    )
}
