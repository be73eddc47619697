//! Leader election on a `coordination.k8s.io/v1` Lease, the way client-go does it: the holder
//! renews the Lease every few seconds with an update that is conditional on the
//! resourceVersion it read, and another replica takes the Lease over only when it has seen the
//! same record unchanged for a whole lease duration (measured on its own clock, so clock skew
//! between nodes does not matter). Only the leader writes Ingress status and Events.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Where the Lease is and how it is held.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub namespace: String,
    /// `--election-id`.
    pub name: String,
    /// This replica's holder identity (its pod name).
    pub identity: String,
    /// How long a Lease that is not renewed stays with its holder (client-go: 15 s).
    pub lease_duration: Duration,
    /// How often the holder renews, and how often the others look (client-go: 2 s; 5 s here).
    pub renew_every: Duration,
}

impl LeaseSettings {
    /// A leader that could not renew for this long steps down before anyone can take over, so
    /// two replicas never both believe they lead.
    fn renew_deadline(&self) -> Duration {
        self.lease_duration * 2 / 3
    }
}

/// The election loop of one replica.
pub struct LeaderElection {
    api: Api<Lease>,
    settings: LeaseSettings,
    /// The holder record last seen, and when it was first seen (for expiry on our clock).
    observed: Option<(Record, Instant)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    holder: String,
    renew_time: Option<MicroTime>,
    transitions: Option<i32>,
    resource_version: Option<String>,
}

impl Record {
    fn of(lease: &Lease) -> Record {
        let spec = lease.spec.as_ref();
        Record {
            holder: spec
                .and_then(|s| s.holder_identity.clone())
                .unwrap_or_default(),
            renew_time: spec.and_then(|s| s.renew_time.clone()),
            transitions: spec.and_then(|s| s.lease_transitions),
            resource_version: lease.metadata.resource_version.clone(),
        }
    }
}

impl LeaderElection {
    pub fn new(client: Client, settings: LeaseSettings) -> Self {
        LeaderElection {
            api: Api::namespaced(client, &settings.namespace),
            settings,
            observed: None,
        }
    }

    /// Campaigns and renews until `shutdown` completes, telling `leader` whether this replica
    /// leads. On shutdown a held Lease is released so another replica takes over at once.
    pub async fn run(
        mut self,
        leader: watch::Sender<bool>,
        shutdown: impl Future<Output = ()> + Send,
    ) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut last_renewed: Option<Instant> = None;
        let mut failing = false;
        tracing::info!(
            lease = %format_args!("{}/{}", self.settings.namespace, self.settings.name),
            identity = %self.settings.identity,
            "leader election started"
        );
        loop {
            let leads = match self.try_acquire_or_renew().await {
                Ok(held) => {
                    if failing {
                        tracing::info!("leader election: the Lease is reachable again");
                        failing = false;
                    }
                    if held {
                        last_renewed = Some(Instant::now());
                    }
                    held
                }
                Err(err) => {
                    if !failing {
                        tracing::warn!(
                            lease = %format_args!("{}/{}", self.settings.namespace, self.settings.name),
                            error = %err,
                            "leader election: cannot read or update the Lease (Sluice needs get, create and update on leases.coordination.k8s.io in this namespace); retrying"
                        );
                        failing = true;
                    }
                    last_renewed.is_some_and(|at| at.elapsed() < self.settings.renew_deadline())
                }
            };
            if !leads {
                last_renewed = None;
            }
            leader.send_if_modified(|current| {
                if *current == leads {
                    return false;
                }
                if leads {
                    tracing::info!(identity = %self.settings.identity, "became the leader: this replica writes Ingress status and Events");
                } else {
                    tracing::info!(identity = %self.settings.identity, "no longer the leader");
                }
                *current = leads;
                true
            });
            tokio::select! {
                () = tokio::time::sleep(self.settings.renew_every) => {}
                () = &mut shutdown => {
                    if *leader.borrow() {
                        leader.send_replace(false);
                        self.release().await;
                    }
                    return;
                }
            }
        }
    }

    /// One round: creates the Lease, renews it, or takes it over when it expired. Returns
    /// whether this replica holds it now.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let me = self.settings.identity.clone();
        let now = MicroTime(Timestamp::now());
        let duration_secs =
            i32::try_from(self.settings.lease_duration.as_secs().max(1)).unwrap_or(15);
        let Some(mut lease) = self.api.get_opt(&self.settings.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.settings.name.clone()),
                    namespace: Some(self.settings.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observe(&created);
                    Ok(true)
                }
                Err(err) if is_conflict(&err) => Ok(false),
                Err(err) => Err(err),
            };
        };
        self.observe(&lease);
        let record = Record::of(&lease);
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if record.holder != me && !record.holder.is_empty() {
            let held_for = spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(self.settings.lease_duration, Duration::from_secs);
            let unchanged_since = self
                .observed
                .as_ref()
                .map_or_else(Instant::now, |(_, at)| *at);
            if unchanged_since.elapsed() < held_for {
                return Ok(false);
            }
            tracing::info!(previous = %record.holder, "the Lease expired; taking it over");
        }
        if record.holder != me {
            spec.holder_identity = Some(me);
            spec.acquire_time = Some(now.clone());
            if !record.holder.is_empty() {
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
        }
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(duration_secs);
        // The update carries the resourceVersion just read: if anyone wrote in between, the API
        // server answers 409 and this round is lost instead of overwriting their write.
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
        {
            Ok(updated) => {
                self.observe(&updated);
                Ok(true)
            }
            Err(err) if is_conflict(&err) => Ok(false),
            Err(err) => Err(err),
        }
    }

    fn observe(&mut self, lease: &Lease) {
        let record = Record::of(lease);
        let changed = self.observed.as_ref().is_none_or(|(seen, _)| {
            seen.holder != record.holder
                || seen.renew_time != record.renew_time
                || seen.transitions != record.transitions
        });
        if changed {
            self.observed = Some((record, Instant::now()));
        }
    }

    /// Gives the Lease up (empty holder) so that another replica need not wait for it to expire.
    async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.settings.name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!("released the leader Lease"),
            Err(err) => {
                tracing::warn!(error = %err, "could not release the leader Lease; another replica takes over when it expires")
            }
        }
    }
}

fn is_conflict(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 409)
}
