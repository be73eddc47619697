//! One kube-runtime watcher per kind, turned into [`Change`]s for the sync loop.
//!
//! The watcher lists, then watches from the list's resourceVersion; on a dropped connection it
//! watches again from where it was, on 410 Gone it lists again (`Init` .. `InitDone`), and every
//! error is retried with [`RetryDelay`]. Nothing here ever clears the store: only a complete new
//! list can remove objects (see the sync loop).

use super::sync::Change;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, Event, watcher};
use serde::de::DeserializeOwned;
use sluice_model::ObjectKind;
use sluice_store::{IngressCheckSum, SecretCheckSum, StoredObject};
use std::fmt::Debug;
use std::hash::{BuildHasher, RandomState};
use std::time::Duration;
use tokio::sync::mpsc;

/// The kubectl annotation holding a full copy of the object: never read, so not kept.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A kind the sync loop keeps in the store.
pub(super) trait WatchedKind:
    kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static
{
    const KIND: ObjectKind;
    /// The resource name for messages and RBAC hints (`ingresses`, `endpointslices.discovery.k8s.io`).
    const RESOURCE: &'static str;
    fn into_stored(self) -> StoredObject;
}

macro_rules! watched_kind {
    ($ty:ty, $kind:ident, $resource:literal) => {
        impl WatchedKind for $ty {
            const KIND: ObjectKind = ObjectKind::$kind;
            const RESOURCE: &'static str = $resource;
            fn into_stored(self) -> StoredObject {
                StoredObject::from(self)
            }
        }
    };
}

watched_kind!(Ingress, Ingress, "ingresses.networking.k8s.io");
watched_kind!(
    IngressClass,
    IngressClass,
    "ingressclasses.networking.k8s.io"
);
watched_kind!(Service, Service, "services");
watched_kind!(
    EndpointSlice,
    EndpointSlice,
    "endpointslices.discovery.k8s.io"
);
watched_kind!(Secret, Secret, "secrets");
watched_kind!(ConfigMap, ConfigMap, "configmaps");
watched_kind!(
    IngressCheckSum,
    IngressCheckSum,
    "ingresschecksums.tengine.taobao.org"
);
watched_kind!(
    SecretCheckSum,
    SecretCheckSum,
    "secretchecksums.tengine.taobao.org"
);

/// Whether a kind must exist on the server. An optional kind (a CRD that may not be installed)
/// whose list answers 404 counts as listed and empty, so the controller still becomes ready;
/// the watcher keeps retrying and picks the kind up once its CRD is installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Presence {
    Required,
    Optional,
}

/// Watches `api` until the sync loop goes away, sending every event to `changes`.
pub(super) async fn run<K: WatchedKind>(
    api: Api<K>,
    config: watcher::Config,
    presence: Presence,
    changes: mpsc::Sender<Change>,
) {
    let scope = api_scope(&config);
    let mut stream = watcher(api, config).backoff(RetryDelay::default()).boxed();
    let mut failing = false;
    let mut reported_absent = false;
    while let Some(item) = stream.next().await {
        let change = match item {
            Ok(event) => {
                if failing {
                    tracing::info!(kind = %K::KIND, "watch of {} resumed", K::RESOURCE);
                    failing = false;
                }
                match event {
                    Event::Init => Change::Relisting(K::KIND),
                    Event::InitApply(object) => Change::Listed(strip(object).into_stored()),
                    Event::InitDone => Change::RelistDone(K::KIND),
                    Event::Apply(object) => Change::Applied(strip(object).into_stored()),
                    Event::Delete(object) => Change::Deleted(object.into_stored()),
                }
            }
            Err(err) if presence == Presence::Optional && is_not_found(&err) => {
                if !reported_absent {
                    tracing::info!(
                        kind = %K::KIND,
                        "{} are not served by the API server (is the CRD installed?); treating them as none and checking again periodically",
                        K::RESOURCE
                    );
                    reported_absent = true;
                }
                Change::Absent(K::KIND)
            }
            Err(err) => {
                if failing {
                    tracing::debug!(kind = %K::KIND, error = %err, "watch still failing");
                } else {
                    tracing::warn!(
                        kind = %K::KIND,
                        error = %err,
                        "cannot list/watch {}{scope}: {}; serving the last configuration and retrying with backoff",
                        K::RESOURCE,
                        hint(&err, K::RESOURCE)
                    );
                    failing = true;
                }
                continue;
            }
        };
        if changes.send(change).await.is_err() {
            return;
        }
    }
}

/// Delays between retries of a failed list or watch: 250 ms doubling up to 5 s, each shortened
/// by up to a fifth at random so replicas do not retry in lockstep; back to 250 ms after a
/// success. Shorter than client-go's 0.8 s .. 30 s because a gateway that missed changes serves
/// stale routes: after an API server restart, changes apply within seconds.
pub(super) struct RetryDelay {
    next: Duration,
}

impl RetryDelay {
    const FIRST: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(5);
}

impl Default for RetryDelay {
    fn default() -> Self {
        RetryDelay { next: Self::FIRST }
    }
}

impl Iterator for RetryDelay {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = self.next;
        self.next = (delay * 2).min(Self::MAX);
        let fifth = u64::try_from(delay.as_millis() / 5).unwrap_or(0).max(1);
        let jitter = RandomState::new().hash_one(delay) % fifth;
        Some(delay - Duration::from_millis(jitter))
    }
}

impl Backoff for RetryDelay {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

fn api_scope(config: &watcher::Config) -> String {
    match &config.field_selector {
        Some(fields) => format!(" (fields {fields})"),
        None => String::new(),
    }
}

/// Drops what Sluice never reads but that can be most of an object's size.
fn strip<K: kube::Resource>(mut object: K) -> K {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
    object
}

fn api_status(err: &watcher::Error) -> Option<u16> {
    match err {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => Some(status.code),
        watcher::Error::WatchError(status) => Some(status.code),
        _ => None,
    }
}

fn is_not_found(err: &watcher::Error) -> bool {
    api_status(err) == Some(404)
}

fn hint(err: &watcher::Error, resource: &str) -> String {
    match api_status(err) {
        Some(401) => "the API server does not accept Sluice's credentials; check the ServiceAccount token or --kubeconfig".to_string(),
        Some(403) => format!(
            "Sluice's identity may not list/watch {resource}; grant get, list and watch on it in Sluice's ClusterRole (deploy/rbac.yaml)"
        ),
        Some(code) => format!("the API server answered {code}"),
        None => "the API server is unreachable or the connection broke".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_up_to_five_seconds_and_start_over_after_a_success() {
        let mut delay = RetryDelay::default();
        let delays: Vec<Duration> = delay.by_ref().take(8).collect();
        for (got, nominal) in delays
            .iter()
            .zip([250, 500, 1000, 2000, 4000, 5000, 5000, 5000])
        {
            let nominal = Duration::from_millis(nominal);
            assert!(
                *got <= nominal && *got >= nominal * 4 / 5,
                "{got:?} vs {nominal:?}"
            );
        }
        delay.reset();
        assert!(
            delay
                .next()
                .is_some_and(|d| d <= Duration::from_millis(250))
        );
    }
}
