//! Tengine-Ingress's checksum objects (`tengine.taobao.org/v1` `IngressCheckSum` and
//! `SecretCheckSum`): an external control plane writes the MD5 of the Ingress (resp. Secret) IDs
//! it expects every gateway to serve; the gateway holds back changes until its own MD5 matches.
//!
//! Both kinds implement `k8s_openapi::Resource` and `Metadata`, so a kube-rs `Api<T>` can list
//! and watch them like any built-in type.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

pub const CHECKSUM_GROUP: &str = "tengine.taobao.org";
pub const CHECKSUM_VERSION: &str = "v1";
pub const CHECKSUM_API_VERSION: &str = "tengine.taobao.org/v1";

/// `spec` of both checksum kinds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckSumSpec {
    /// RFC 3339 time the control plane computed the checksum at (informational: the newest
    /// object is chosen by `metadata.creationTimestamp`, as Tengine-Ingress does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// Lowercase hex MD5 of the sorted, comma-joined IDs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// The IDs the checksum was computed from; only used to show what differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<String>>,
}

macro_rules! checksum_kind {
    ($name:ident, $kind:literal, $list_kind:literal, $plural:literal) => {
        #[doc = concat!("`", $kind, "` (`tengine.taobao.org/v1`, namespaced, plural `", $plural, "`).")]
        #[derive(Debug, Clone, Default, PartialEq, Deserialize)]
        pub struct $name {
            #[serde(default)]
            pub metadata: ObjectMeta,
            #[serde(default)]
            pub spec: CheckSumSpec,
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                #[derive(Serialize)]
                #[serde(rename_all = "camelCase")]
                struct Wire<'a> {
                    api_version: &'static str,
                    kind: &'static str,
                    metadata: &'a ObjectMeta,
                    spec: &'a CheckSumSpec,
                }
                Wire {
                    api_version: CHECKSUM_API_VERSION,
                    kind: $kind,
                    metadata: &self.metadata,
                    spec: &self.spec,
                }
                .serialize(s)
            }
        }

        impl k8s_openapi::Resource for $name {
            const API_VERSION: &'static str = CHECKSUM_API_VERSION;
            const GROUP: &'static str = CHECKSUM_GROUP;
            const KIND: &'static str = $kind;
            const VERSION: &'static str = CHECKSUM_VERSION;
            const URL_PATH_SEGMENT: &'static str = $plural;
            type Scope = k8s_openapi::NamespaceResourceScope;
        }

        impl k8s_openapi::ListableResource for $name {
            const LIST_KIND: &'static str = $list_kind;
        }

        impl k8s_openapi::Metadata for $name {
            type Ty = ObjectMeta;

            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }

            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

checksum_kind!(
    IngressCheckSum,
    "IngressCheckSum",
    "IngressCheckSumList",
    "ingresschecksums"
);
checksum_kind!(
    SecretCheckSum,
    "SecretCheckSum",
    "SecretCheckSumList",
    "secretchecksums"
);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_with_api_version_and_kind() {
        let value = json!({
            "apiVersion": "tengine.taobao.org/v1",
            "kind": "IngressCheckSum",
            "metadata": {"name": "ing-checksum-x1", "namespace": "kube-system"},
            "spec": {"timestamp": "2024-01-02T03:04:05Z", "checksum": "abc", "ids": ["1-1"]},
        });
        let parsed: IngressCheckSum = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(parsed.spec.ids.as_deref(), Some(&["1-1".to_string()][..]));
        assert_eq!(serde_json::to_value(&parsed).unwrap(), value);
    }
}
