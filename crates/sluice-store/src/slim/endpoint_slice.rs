//! An EndpointSlice as backend resolution reads it: the Service it belongs to, its ports and
//! the addresses that may receive traffic.

use super::boxed;
use super::port::SlicePort;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use std::net::IpAddr;

/// The label that ties a slice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlimEndpointSlice {
    /// `metadata.resourceVersion`: the Kubernetes source skips an unchanged object on relist.
    pub resource_version: Option<Box<str>>,
    /// The `kubernetes.io/service-name` label: the Service (same namespace) it belongs to.
    pub service: Option<Box<str>>,
    /// `ports`, in order.
    pub ports: Box<[SlicePort]>,
    /// The addresses of the endpoints that take traffic (see [`takes_traffic`]), those that are
    /// IP addresses (an FQDN slice has none), in order.
    pub ready_addresses: Box<[IpAddr]>,
}

impl From<EndpointSlice> for SlimEndpointSlice {
    fn from(slice: EndpointSlice) -> Self {
        let service = slice
            .metadata
            .labels
            .and_then(|mut labels| labels.remove(SERVICE_NAME_LABEL))
            .map(boxed);
        let ports = slice
            .ports
            .unwrap_or_default()
            .into_iter()
            .map(|p| SlicePort {
                name: p.name.map(boxed),
                port: p.port,
            })
            .collect();
        let ready_addresses = slice
            .endpoints
            .iter()
            .filter(|endpoint| takes_traffic(endpoint))
            .flat_map(|endpoint| &endpoint.addresses)
            .filter_map(|address| address.parse::<IpAddr>().ok())
            .collect();
        SlimEndpointSlice {
            resource_version: slice.metadata.resource_version.map(boxed),
            service,
            ports,
            ready_addresses,
        }
    }
}

/// Absent `ready` means ready, unless the endpoint is going away.
fn takes_traffic(endpoint: &Endpoint) -> bool {
    let conditions = endpoint.conditions.as_ref();
    let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
    match conditions.and_then(|c| c.ready) {
        Some(ready) => ready,
        None => !terminating,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn slim(value: serde_json::Value) -> SlimEndpointSlice {
        serde_json::from_value::<EndpointSlice>(value)
            .unwrap()
            .into()
    }

    #[test]
    fn keeps_the_service_the_ports_and_the_addresses_that_take_traffic() {
        let slice = slim(json!({
            "metadata": {"name": "web-1", "resourceVersion": "7", "labels": {
                "kubernetes.io/service-name": "web", "app": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}, {"name": "none"}],
            "endpoints": [
                {"addresses": ["10.0.0.1", "10.0.0.2"]},
                {"addresses": ["10.0.0.3"], "conditions": {"ready": true, "terminating": true}},
                {"addresses": ["10.0.0.4"], "conditions": {"ready": false}},
                {"addresses": ["10.0.0.5"], "conditions": {"terminating": true}},
                {"addresses": ["not-an-ip", "fd00::1"], "conditions": {"ready": true}}
            ]
        }));
        assert_eq!(slice.resource_version.as_deref(), Some("7"));
        assert_eq!(slice.service.as_deref(), Some("web"));
        assert_eq!(
            &*slice.ports,
            [
                SlicePort {
                    name: Some("http".into()),
                    port: Some(8080)
                },
                SlicePort {
                    name: Some("none".into()),
                    port: None
                }
            ]
        );
        let addresses: Vec<String> = slice
            .ready_addresses
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(addresses, ["10.0.0.1", "10.0.0.2", "10.0.0.3", "fd00::1"]);
    }

    #[test]
    fn a_slice_without_labels_or_ports_belongs_to_no_service() {
        let slice = slim(json!({"metadata": {"name": "x"}, "addressType": "IPv4",
            "endpoints": []}));
        assert_eq!(slice.service, None);
        assert!(slice.ports.is_empty());
        assert!(slice.ready_addresses.is_empty());
    }
}
