//! A Service as backend resolution reads it: its ports, or the DNS name it stands for.

use super::boxed;
use super::port::NamedPort;
use k8s_openapi::api::core::v1::Service;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlimService {
    /// `metadata.resourceVersion`: the Kubernetes source skips an unchanged object on relist.
    pub resource_version: Option<Box<str>>,
    /// `spec.externalName` of a Service of type ExternalName (and only then); `None` when it
    /// is empty, which leaves such a Service without endpoints of its own.
    pub external_name: Option<Box<str>>,
    /// `spec.ports`, in order.
    pub ports: Box<[NamedPort]>,
}

impl From<Service> for SlimService {
    fn from(service: Service) -> Self {
        let spec = service.spec.unwrap_or_default();
        let external_name = match spec.type_.as_deref() {
            Some("ExternalName") => spec.external_name.filter(|name| !name.is_empty()),
            _ => None,
        };
        let ports = spec
            .ports
            .unwrap_or_default()
            .into_iter()
            .map(|p| NamedPort {
                name: p.name.map(boxed),
                port: p.port,
            })
            .collect();
        SlimService {
            resource_version: service.metadata.resource_version.map(boxed),
            external_name: external_name.map(boxed),
            ports,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn slim(value: serde_json::Value) -> SlimService {
        serde_json::from_value::<Service>(value).unwrap().into()
    }

    #[test]
    fn ports_keep_their_order_names_and_numbers() {
        let service = slim(json!({
            "metadata": {"name": "web", "resourceVersion": "42"},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}, {"port": 443}]}
        }));
        assert_eq!(service.resource_version.as_deref(), Some("42"));
        assert_eq!(service.external_name, None);
        assert_eq!(
            &*service.ports,
            [
                NamedPort {
                    name: Some("http".into()),
                    port: 80
                },
                NamedPort {
                    name: None,
                    port: 443
                }
            ]
        );
    }

    #[test]
    fn only_an_external_name_service_names_a_host() {
        let external = |type_: &str, name: &str| {
            slim(json!({"metadata": {"name": "x"},
                "spec": {"type": type_, "externalName": name}}))
            .external_name
        };
        assert_eq!(
            external("ExternalName", "db.example.com").as_deref(),
            Some("db.example.com")
        );
        assert_eq!(external("ExternalName", ""), None);
        assert_eq!(external("ClusterIP", "db.example.com"), None);
    }

    #[test]
    fn a_service_without_spec_has_no_ports() {
        let service = slim(json!({"metadata": {"name": "x"}}));
        assert!(service.ports.is_empty());
        assert_eq!(service.resource_version, None);
    }
}
