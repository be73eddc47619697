//! The leader's writes: `status.loadBalancer.ingress` of every Ingress this controller serves,
//! and Events for rejected or conflicting Ingresses.

use super::events::EventRecorder;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{Ingress, IngressLoadBalancerIngress};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use sluice_model::Problem;
use sluice_store::{NamespacedName, ObjectStore};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Status writes in flight at once (20,000 Ingresses one after the other would take minutes).
const CONCURRENT_WRITES: usize = 8;
/// Also checked this often without a change, so a failed write or a moved load balancer is
/// caught up with.
const RESYNC_EVERY: Duration = Duration::from_secs(30);

/// What the Ingresses' status should say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishAddress {
    /// `--publish-service`: that Service's load-balancer addresses, else its external IPs, else
    /// its cluster IP.
    Service(NamespacedName),
    /// `--publish-status-address`: these IPs or host names.
    Addresses(Vec<String>),
    /// Neither flag: status is left alone.
    Nothing,
}

/// What the apply loop hands the leader after every apply.
#[derive(Debug, Clone, Default)]
pub struct StatusInput {
    /// The objects the applied snapshot was built from (for each Ingress's current status).
    pub store: Arc<ObjectStore>,
    /// The Ingresses this controller serves (its class).
    pub ours: Vec<NamespacedName>,
    /// The problems `/api/v1/problems` shows.
    pub problems: Vec<Problem>,
}

pub struct StatusPublisher {
    client: Client,
    publish: PublishAddress,
    events: EventRecorder,
    warned_service: Option<String>,
}

impl StatusPublisher {
    /// `identity` names this replica in the Events it records.
    pub fn new(client: Client, publish: PublishAddress, identity: String) -> Self {
        StatusPublisher {
            events: EventRecorder::new(client.clone(), identity),
            client,
            publish,
            warned_service: None,
        }
    }

    /// Writes status and Events whenever this replica leads and the input or the leadership
    /// changes (and every 30 s), until either channel closes.
    pub async fn run(
        mut self,
        mut leader: watch::Receiver<bool>,
        mut input: watch::Receiver<StatusInput>,
    ) {
        let mut resync = tokio::time::interval(RESYNC_EVERY);
        loop {
            tokio::select! {
                changed = leader.changed() => if changed.is_err() { return },
                changed = input.changed() => if changed.is_err() { return },
                _ = resync.tick() => {}
            }
            if !*leader.borrow_and_update() {
                continue;
            }
            let current = input.borrow_and_update().clone();
            self.write_status(&current).await;
            self.events.record(&current).await;
        }
    }

    async fn write_status(&mut self, input: &StatusInput) {
        let Some(desired) = self.addresses().await else {
            return;
        };
        let stale: Vec<NamespacedName> = input
            .ours
            .iter()
            .filter(|key| {
                input
                    .store
                    .ingresses
                    .get(*key)
                    .is_some_and(|stored| current_addresses(&stored.object) != desired)
            })
            .cloned()
            .collect();
        if stale.is_empty() {
            return;
        }
        let patch = json!({"status": {"loadBalancer": {"ingress": desired}}});
        let writes: Vec<_> = stale
            .into_iter()
            .map(|key| {
                let api: Api<Ingress> = Api::namespaced(self.client.clone(), &key.namespace);
                let patch = patch.clone();
                async move {
                    let result = api
                        .patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .map(drop);
                    (key.to_string(), result)
                }
            })
            .collect();
        let results: Vec<(String, Result<(), kube::Error>)> = futures_util::stream::iter(writes)
            .buffer_unordered(CONCURRENT_WRITES)
            .collect()
            .await;
        let mut written = 0;
        for (ingress, result) in results {
            match result {
                Ok(()) => written += 1,
                // Deleted meanwhile: nothing to write.
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(err) => tracing::warn!(
                    ingress = %ingress,
                    error = %err,
                    "cannot write the Ingress status (Sluice needs update/patch on ingresses/status); retrying later"
                ),
            }
        }
        if written > 0 {
            tracing::info!(ingresses = written, addresses = ?desired.iter().map(show).collect::<Vec<_>>(), "Ingress status updated");
        }
    }

    /// The addresses to publish, sorted; `None` when there is nothing to publish or the
    /// publish Service cannot be read now.
    async fn addresses(&mut self) -> Option<Vec<IngressLoadBalancerIngress>> {
        let mut addresses: Vec<IngressLoadBalancerIngress> = match &self.publish {
            PublishAddress::Nothing => return None,
            PublishAddress::Addresses(list) => list.iter().map(|a| address(a)).collect(),
            PublishAddress::Service(key) => {
                let api: Api<Service> = Api::namespaced(self.client.clone(), &key.namespace);
                let problem = match api.get_opt(&key.name).await {
                    Ok(Some(service)) => {
                        self.warned_service = None;
                        return Some(sorted(service_addresses(&service)));
                    }
                    Ok(None) => format!(
                        "the --publish-service Service {key} does not exist; Ingress status is not updated until it does"
                    ),
                    Err(err) => format!(
                        "cannot read the --publish-service Service {key}: {err}; Ingress status is not updated meanwhile"
                    ),
                };
                if self.warned_service.as_ref() != Some(&problem) {
                    tracing::warn!("{problem}");
                    self.warned_service = Some(problem);
                }
                return None;
            }
        };
        addresses.sort_by_key(show);
        Some(addresses)
    }
}

fn sorted(mut addresses: Vec<IngressLoadBalancerIngress>) -> Vec<IngressLoadBalancerIngress> {
    addresses.sort_by_key(show);
    addresses.dedup();
    addresses
}

fn show(address: &IngressLoadBalancerIngress) -> String {
    address
        .ip
        .clone()
        .or_else(|| address.hostname.clone())
        .unwrap_or_default()
}

fn address(value: &str) -> IngressLoadBalancerIngress {
    if value.parse::<IpAddr>().is_ok() {
        IngressLoadBalancerIngress {
            ip: Some(value.to_string()),
            ..Default::default()
        }
    } else {
        IngressLoadBalancerIngress {
            hostname: Some(value.to_string()),
            ..Default::default()
        }
    }
}

/// A Service's address as clients reach it: its load balancer's, else its external IPs, else
/// its cluster IP.
pub(super) fn service_addresses(service: &Service) -> Vec<IngressLoadBalancerIngress> {
    let balanced: Vec<IngressLoadBalancerIngress> = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|lb| match (&lb.ip, &lb.hostname) {
            (Some(ip), _) => Some(address(ip)),
            (None, Some(hostname)) => Some(address(hostname)),
            (None, None) => None,
        })
        .collect();
    if !balanced.is_empty() {
        return balanced;
    }
    let spec = service.spec.as_ref();
    let external: Vec<IngressLoadBalancerIngress> = spec
        .and_then(|s| s.external_ips.as_ref())
        .into_iter()
        .flatten()
        .map(|ip| address(ip))
        .collect();
    if !external.is_empty() {
        return external;
    }
    spec.and_then(|s| s.cluster_ip.as_deref())
        .filter(|ip| !ip.is_empty() && *ip != "None")
        .map(address)
        .into_iter()
        .collect()
}

fn current_addresses(ingress: &Ingress) -> Vec<IngressLoadBalancerIngress> {
    sorted(
        ingress
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|a| IngressLoadBalancerIngress { ports: None, ..a })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(value: serde_json::Value) -> Service {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_service_is_published_by_its_load_balancer_then_external_then_cluster_ip() {
        let shown = |s: &Service| service_addresses(s).iter().map(show).collect::<Vec<_>>();
        let lb = service(
            json!({"spec": {"clusterIP": "10.96.0.9", "externalIPs": ["192.0.2.7"]},
            "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.4"}, {"hostname": "lb.example.com"}]}}}),
        );
        assert_eq!(shown(&lb), ["203.0.113.4", "lb.example.com"]);
        let external =
            service(json!({"spec": {"clusterIP": "10.96.0.9", "externalIPs": ["192.0.2.7"]}}));
        assert_eq!(shown(&external), ["192.0.2.7"]);
        let cluster = service(json!({"spec": {"clusterIP": "10.96.0.9"}}));
        assert_eq!(shown(&cluster), ["10.96.0.9"]);
        let headless = service(json!({"spec": {"clusterIP": "None"}}));
        assert!(shown(&headless).is_empty());
    }

    #[test]
    fn static_addresses_are_ips_or_host_names() {
        assert_eq!(address("10.0.0.1").ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(
            address("gw.example.com").hostname.as_deref(),
            Some("gw.example.com")
        );
    }
}
