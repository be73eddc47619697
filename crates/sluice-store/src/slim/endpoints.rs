//! Legacy v1 Endpoints as backend resolution reads them: per subset, its ports and its ready
//! addresses. Read only for a Service that has no EndpointSlices.

use super::boxed;
use super::port::NamedPort;
use k8s_openapi::api::core::v1::{EndpointSubset, Endpoints};
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlimEndpoints {
    /// `metadata.resourceVersion`: the Kubernetes source skips an unchanged object on relist.
    pub resource_version: Option<Box<str>>,
    /// `subsets`, in order.
    pub subsets: Box<[SlimSubset]>,
}

/// One subset: every ready address takes every port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlimSubset {
    pub ports: Box<[NamedPort]>,
    /// `addresses` (never `notReadyAddresses`) that are IP addresses, in order.
    pub addresses: Box<[IpAddr]>,
}

impl From<Endpoints> for SlimEndpoints {
    fn from(endpoints: Endpoints) -> Self {
        SlimEndpoints {
            resource_version: endpoints.metadata.resource_version.map(boxed),
            subsets: endpoints
                .subsets
                .unwrap_or_default()
                .into_iter()
                .map(SlimSubset::from)
                .collect(),
        }
    }
}

impl From<EndpointSubset> for SlimSubset {
    fn from(subset: EndpointSubset) -> Self {
        SlimSubset {
            ports: subset
                .ports
                .unwrap_or_default()
                .into_iter()
                .map(|p| NamedPort {
                    name: p.name.map(boxed),
                    port: p.port,
                })
                .collect(),
            addresses: subset
                .addresses
                .unwrap_or_default()
                .iter()
                .filter_map(|address| address.ip.parse::<IpAddr>().ok())
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_ports_and_ready_ip_addresses_per_subset() {
        let endpoints: SlimEndpoints = serde_json::from_value::<Endpoints>(json!({
            "metadata": {"name": "web"},
            "subsets": [
                {"addresses": [{"ip": "10.0.0.1"}, {"ip": "bad"}],
                 "notReadyAddresses": [{"ip": "10.0.0.9"}],
                 "ports": [{"name": "http", "port": 8080}]},
                {"notReadyAddresses": [{"ip": "10.0.0.8"}]}
            ]
        }))
        .unwrap()
        .into();
        assert_eq!(endpoints.resource_version, None);
        assert_eq!(endpoints.subsets.len(), 2);
        let first = &endpoints.subsets[0];
        assert_eq!(
            &*first.ports,
            [NamedPort {
                name: Some("http".into()),
                port: 8080
            }]
        );
        assert_eq!(&*first.addresses, ["10.0.0.1".parse::<IpAddr>().unwrap()]);
        assert!(endpoints.subsets[1].ports.is_empty());
        assert!(endpoints.subsets[1].addresses.is_empty());
    }
}
