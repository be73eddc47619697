//! From an untyped manifest document to a typed object.

use crate::checksum::{CHECKSUM_API_VERSION, IngressCheckSum, SecretCheckSum};
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use sluice_model::ObjectKind;

/// kubectl's annotation holding a full copy of the object as last applied: never read.
const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// One object of a kind Sluice reads.
// Short-lived: decoded, then moved into the store's `Arc`; boxing the variants would only
// complicate every match.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum StoredObject {
    Ingress(Ingress),
    IngressClass(IngressClass),
    Service(Service),
    EndpointSlice(EndpointSlice),
    Endpoints(Endpoints),
    Secret(Secret),
    ConfigMap(ConfigMap),
    IngressCheckSum(IngressCheckSum),
    SecretCheckSum(SecretCheckSum),
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("missing `{0}`: every manifest needs apiVersion, kind and metadata.name")]
    MissingField(&'static str),
    #[error("{kind} {name}: {source} (check the field against the {api_version} {kind} schema)")]
    Schema {
        kind: String,
        api_version: String,
        name: String,
        #[source]
        source: serde_json::Error,
    },
}

impl StoredObject {
    /// Decodes a document. `Ok(None)` for kinds Sluice does not read (they are ignored).
    ///
    /// `metadata.managedFields` and the last-applied annotation are dropped: nothing reads them,
    /// and in a `kubectl get -o yaml` dump they are often larger than the rest of the object.
    pub fn from_value(mut value: serde_json::Value) -> Result<Option<StoredObject>, DecodeError> {
        drop_unread(&mut value);
        let api_version = value
            .get("apiVersion")
            .and_then(|v| v.as_str())
            .ok_or(DecodeError::MissingField("apiVersion"))?
            .to_string();
        let kind = value
            .get("kind")
            .and_then(|v| v.as_str())
            .ok_or(DecodeError::MissingField("kind"))?
            .to_string();
        let name = value
            .pointer("/metadata/name")
            .and_then(|v| v.as_str())
            .ok_or(DecodeError::MissingField("metadata.name"))?
            .to_string();
        let schema = |source| DecodeError::Schema {
            kind: kind.clone(),
            api_version: api_version.clone(),
            name: name.clone(),
            source,
        };
        let obj = match (api_version.as_str(), kind.as_str()) {
            ("networking.k8s.io/v1", "Ingress") => {
                StoredObject::Ingress(serde_json::from_value(value).map_err(schema)?)
            }
            ("networking.k8s.io/v1", "IngressClass") => {
                StoredObject::IngressClass(serde_json::from_value(value).map_err(schema)?)
            }
            ("v1", "Service") => {
                StoredObject::Service(serde_json::from_value(value).map_err(schema)?)
            }
            ("v1", "Endpoints") => {
                StoredObject::Endpoints(serde_json::from_value(value).map_err(schema)?)
            }
            ("v1", "Secret") => {
                StoredObject::Secret(serde_json::from_value(value).map_err(schema)?)
            }
            ("v1", "ConfigMap") => {
                StoredObject::ConfigMap(serde_json::from_value(value).map_err(schema)?)
            }
            ("discovery.k8s.io/v1", "EndpointSlice") => {
                StoredObject::EndpointSlice(serde_json::from_value(value).map_err(schema)?)
            }
            (CHECKSUM_API_VERSION, "IngressCheckSum") => {
                StoredObject::IngressCheckSum(serde_json::from_value(value).map_err(schema)?)
            }
            (CHECKSUM_API_VERSION, "SecretCheckSum") => {
                StoredObject::SecretCheckSum(serde_json::from_value(value).map_err(schema)?)
            }
            _ => return Ok(None),
        };
        Ok(Some(obj))
    }

    pub fn kind(&self) -> ObjectKind {
        match self {
            StoredObject::Ingress(_) => ObjectKind::Ingress,
            StoredObject::IngressClass(_) => ObjectKind::IngressClass,
            StoredObject::Service(_) => ObjectKind::Service,
            StoredObject::EndpointSlice(_) => ObjectKind::EndpointSlice,
            StoredObject::Endpoints(_) => ObjectKind::Endpoints,
            StoredObject::Secret(_) => ObjectKind::Secret,
            StoredObject::ConfigMap(_) => ObjectKind::ConfigMap,
            StoredObject::IngressCheckSum(_) => ObjectKind::IngressCheckSum,
            StoredObject::SecretCheckSum(_) => ObjectKind::SecretCheckSum,
        }
    }

    pub fn metadata(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        match self {
            StoredObject::Ingress(o) => &o.metadata,
            StoredObject::IngressClass(o) => &o.metadata,
            StoredObject::Service(o) => &o.metadata,
            StoredObject::EndpointSlice(o) => &o.metadata,
            StoredObject::Endpoints(o) => &o.metadata,
            StoredObject::Secret(o) => &o.metadata,
            StoredObject::ConfigMap(o) => &o.metadata,
            StoredObject::IngressCheckSum(o) => &o.metadata,
            StoredObject::SecretCheckSum(o) => &o.metadata,
        }
    }
}

fn drop_unread(value: &mut serde_json::Value) {
    let Some(metadata) = value
        .get_mut("metadata")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return;
    };
    metadata.remove("managedFields");
    if let Some(annotations) = metadata
        .get_mut("annotations")
        .and_then(serde_json::Value::as_object_mut)
    {
        annotations.remove(LAST_APPLIED_ANNOTATION);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn managed_fields_and_the_last_applied_copy_are_not_kept() {
        let decoded = StoredObject::from_value(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {
                "name": "web",
                "annotations": {
                    LAST_APPLIED_ANNOTATION: "{\"apiVersion\": \"networking.k8s.io/v1\"}",
                    "nginx.ingress.kubernetes.io/rewrite-target": "/"
                },
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]
            },
            "spec": {}
        }));
        let Ok(Some(StoredObject::Ingress(ingress))) = decoded else {
            panic!("not decoded: {decoded:?}");
        };
        assert_eq!(ingress.metadata.managed_fields, None);
        let annotations = ingress.metadata.annotations.unwrap_or_default();
        assert_eq!(
            annotations.keys().collect::<Vec<_>>(),
            ["nginx.ingress.kubernetes.io/rewrite-target"]
        );
    }
}
