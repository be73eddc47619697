//! From an untyped manifest document to a typed object.

use crate::checksum::{CHECKSUM_API_VERSION, IngressCheckSum, SecretCheckSum};
use crate::slim::{SlimEndpointSlice, SlimEndpoints, SlimService};
use crate::store::NamespacedName;
use k8s_openapi::Metadata;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
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
    Service(Named<SlimService>),
    EndpointSlice(Named<SlimEndpointSlice>),
    Endpoints(Named<SlimEndpoints>),
    Secret(Secret),
    ConfigMap(ConfigMap),
    IngressCheckSum(IngressCheckSum),
    SecretCheckSum(SecretCheckSum),
}

/// A slim object (see [`crate::slim`]) and the name it is stored under: the store keeps the
/// name in its key only.
#[derive(Debug, Clone)]
pub struct Named<T> {
    /// `metadata.namespace` (`None` or empty: `default`).
    pub namespace: Option<String>,
    pub name: String,
    pub object: T,
}

impl<T> Named<T> {
    /// `object`, to be stored under `key`.
    pub fn under(key: &NamespacedName, object: T) -> Self {
        Named {
            namespace: Some(key.namespace.clone()),
            name: key.name.clone(),
            object,
        }
    }

    /// Takes the name from the full object's metadata and converts the rest.
    fn from_full<K: Metadata<Ty = ObjectMeta> + Into<T>>(mut full: K) -> Self {
        let meta = full.metadata_mut();
        Named {
            namespace: meta.namespace.take(),
            name: meta.name.take().unwrap_or_default(),
            object: full.into(),
        }
    }
}

macro_rules! from_full {
    ($($ty:ty => $variant:ident),* $(,)?) => {
        $(impl From<$ty> for StoredObject {
            fn from(object: $ty) -> Self {
                StoredObject::$variant(object)
            }
        })*
    };
}

from_full!(
    Ingress => Ingress,
    IngressClass => IngressClass,
    Secret => Secret,
    ConfigMap => ConfigMap,
    IngressCheckSum => IngressCheckSum,
    SecretCheckSum => SecretCheckSum,
);

/// The endpoint kinds are converted here, where they come in, so no full copy outlives decoding.
macro_rules! from_slim {
    ($($ty:ty => $variant:ident),* $(,)?) => {
        $(impl From<$ty> for StoredObject {
            fn from(object: $ty) -> Self {
                StoredObject::$variant(Named::from_full(object))
            }
        })*
    };
}

from_slim!(
    Service => Service,
    EndpointSlice => EndpointSlice,
    Endpoints => Endpoints,
);

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
        fn decode<T: serde::de::DeserializeOwned + Into<StoredObject>>(
            value: serde_json::Value,
        ) -> Result<StoredObject, serde_json::Error> {
            serde_json::from_value::<T>(value).map(Into::into)
        }
        // The full k8s-openapi type checks the schema, as the API server would.
        let decoded = match (api_version.as_str(), kind.as_str()) {
            ("networking.k8s.io/v1", "Ingress") => decode::<Ingress>(value),
            ("networking.k8s.io/v1", "IngressClass") => decode::<IngressClass>(value),
            ("v1", "Service") => decode::<Service>(value),
            ("v1", "Endpoints") => decode::<Endpoints>(value),
            ("v1", "Secret") => decode::<Secret>(value),
            ("v1", "ConfigMap") => decode::<ConfigMap>(value),
            ("discovery.k8s.io/v1", "EndpointSlice") => decode::<EndpointSlice>(value),
            (CHECKSUM_API_VERSION, "IngressCheckSum") => decode::<IngressCheckSum>(value),
            (CHECKSUM_API_VERSION, "SecretCheckSum") => decode::<SecretCheckSum>(value),
            _ => return Ok(None),
        };
        decoded.map(Some).map_err(schema)
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

    /// `metadata.namespace` as written (`None` or empty: `default`; see `ObjectStore::key_of`).
    pub fn namespace(&self) -> Option<&str> {
        self.head().namespace
    }

    /// `metadata.name` (empty when absent).
    pub fn name(&self) -> &str {
        self.head().name
    }

    /// `metadata.resourceVersion`, set on objects from the API server.
    pub fn resource_version(&self) -> Option<&str> {
        self.head().resource_version
    }

    fn head(&self) -> Head<'_> {
        match self {
            StoredObject::Ingress(o) => Head::full(&o.metadata),
            StoredObject::IngressClass(o) => Head::full(&o.metadata),
            StoredObject::Secret(o) => Head::full(&o.metadata),
            StoredObject::ConfigMap(o) => Head::full(&o.metadata),
            StoredObject::IngressCheckSum(o) => Head::full(&o.metadata),
            StoredObject::SecretCheckSum(o) => Head::full(&o.metadata),
            StoredObject::Service(o) => Head::slim(o, &o.object.resource_version),
            StoredObject::EndpointSlice(o) => Head::slim(o, &o.object.resource_version),
            StoredObject::Endpoints(o) => Head::slim(o, &o.object.resource_version),
        }
    }
}

/// The metadata every kind has, full or slim.
struct Head<'a> {
    namespace: Option<&'a str>,
    name: &'a str,
    resource_version: Option<&'a str>,
}

impl<'a> Head<'a> {
    fn full(meta: &'a ObjectMeta) -> Self {
        Head {
            namespace: meta.namespace.as_deref(),
            name: meta.name.as_deref().unwrap_or(""),
            resource_version: meta.resource_version.as_deref(),
        }
    }

    fn slim<T>(named: &'a Named<T>, resource_version: &'a Option<Box<str>>) -> Self {
        Head {
            namespace: named.namespace.as_deref(),
            name: &named.name,
            resource_version: resource_version.as_deref(),
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
