//! Tengine-Ingress's global-consistency IDs and checksums (tengine-extensions.md section 3.4), so
//! that the checksums an existing control plane writes into IngressCheckSum/SecretCheckSum
//! objects match the ones computed here.
//!
//! - Ingress ID `<id>-<version>`: `version` is the annotation (prefix applies), a non-zero
//!   integer; `id` is the integer after the last `-` of the name. Either missing: no ID.
//! - Secret ID `<id>-<version>-<sha1>`: same rules, plus the lowercase hex SHA-1 of the DER of
//!   the first certificate in `tls.crt` (or `ca.crt` for a CA bundle).
//! - Checksum: IDs sorted as strings (`123992-1` < `27524-1`), joined with `,`, MD5, lowercase
//!   hex.

use crate::TranslateOptions;
use crate::annotations::PREFIX;
use crate::certs::secret_value;
use crate::class::is_ours;
use crate::referrer::{ReferrerLists, referrer_accepts};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use md5::{Digest, Md5};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use sha1::Sha1;
use sluice_store::{NamespacedName, ObjectStore};

/// One object's ID.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ChecksumId {
    pub id: String,
    pub object: NamespacedName,
}

/// The `version` annotation as Tengine-Ingress reads it: a non-zero integer, else `None`.
pub fn object_version(meta: &ObjectMeta) -> Option<i64> {
    let value = meta
        .annotations
        .as_ref()?
        .get(&format!("{PREFIX}version"))?;
    value.trim().parse::<i64>().ok().filter(|v| *v != 0)
}

/// The integer after the last `-` of the name (`alibaba-taobao-com-27555` -> 27555).
pub fn name_id(name: &str) -> Option<i64> {
    let (_, last) = name.rsplit_once('-')?;
    last.parse::<i64>().ok()
}

fn base_id(meta: &ObjectMeta) -> Option<String> {
    let version = object_version(meta)?;
    let id = name_id(meta.name.as_deref()?)?;
    Some(format!("{id}-{version}"))
}

/// IDs of the Ingresses `serve` would accept: ours by class, not dropped by the referrer check;
/// canaries included. In the store's key order (callers sort the strings).
pub fn ingress_ids(store: &ObjectStore, opts: &TranslateOptions) -> Vec<ChecksumId> {
    let referrers = ReferrerLists::of(store, opts);
    store
        .ingresses
        .iter()
        .filter(|(_, s)| is_ours(&s.object, store, opts))
        .filter(|(_, s)| referrer_accepts(&s.object.metadata, &referrers).is_ok())
        .filter_map(|(key, s)| {
            Some(ChecksumId {
                id: base_id(&s.object.metadata)?,
                object: key.clone(),
            })
        })
        .collect()
}

/// IDs of every Secret that holds a certificate.
pub fn secret_ids(store: &ObjectStore) -> Vec<ChecksumId> {
    store
        .secrets
        .iter()
        .filter_map(|(key, s)| {
            let base = base_id(&s.object.metadata)?;
            let der = first_certificate_der(&s.object)?;
            Some(ChecksumId {
                id: format!("{base}-{}", hex(&Sha1::digest(&der))),
                object: key.clone(),
            })
        })
        .collect()
}

/// DER of the first certificate of `tls.crt`, or of `ca.crt` for a CA-only Secret.
pub fn first_certificate_der(secret: &Secret) -> Option<Vec<u8>> {
    ["tls.crt", "ca.crt"].iter().find_map(|key| {
        let pem = secret_value(secret, key).ok()?;
        let first = CertificateDer::pem_slice_iter(&pem).next()?.ok()?;
        Some(first.as_ref().to_vec())
    })
}

/// The IDs sorted as strings, as the checksum is computed over them.
pub fn sorted_ids(ids: &[ChecksumId]) -> Vec<String> {
    let mut sorted: Vec<String> = ids.iter().map(|i| i.id.clone()).collect();
    sorted.sort();
    sorted
}

/// MD5 (lowercase hex) of the IDs sorted as strings and joined with `,`.
pub fn checksum_of(ids: &[String]) -> String {
    let mut sorted: Vec<&str> = ids.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    hex(&Md5::digest(sorted.join(",").as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ids_sort_as_strings_before_hashing() {
        // md5("123992-1,27524-1"): the string sort puts 123992 first.
        assert_eq!(
            checksum_of(&strings(&["27524-1", "123992-1"])),
            "294560cb5ddc0f5b4ad1fde6916622c0"
        );
    }

    #[test]
    fn empty_list_is_md5_of_nothing() {
        assert_eq!(checksum_of(&[]), "d41d8cd98f00b204e9800998ecf8427e");
    }

    const VECTOR_CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIBezCCASGgAwIBAgIUd1GwdmHtjrJdrrY+khtRw2r2JBswCgYIKoZIzj0EAwIw\nEzERMA8GA1UEAwwIdmVjLnRlc3QwHhcNMjYxMTI2MDMzODI1WhcNMzYxMTIzMDMz\nODI1WjATMREwDwYDVQQDDAh2ZWMudGVzdDBZMBMGByqGSM49AgEGCCqGSM49AwEH\nA0IABDR+7IVasd6BhDI0R8j6OjfSOSRBGLF3EZDLqEwWMKRrqbgESJMra6Um5tq8\nMxeEfALQdsuV5TJN0RMMkXYtPVGjUzBRMB0GA1UdDgQWBBT4HFeGPTIO3Q+tI2GJ\nvfqP4YkQgDAfBgNVHSMEGDAWgBT4HFeGPTIO3Q+tI2GJvfqP4YkQgDAPBgNVHRMB\nAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIQDaShtgG8OrDofyrlhgbVf6MwTM\nwqLugZ0K5Nkly9tOOgIgQoZ4+EDp59IiMd7K+NDxto/HYtyDAe8CJ5lI7EWABgA=\n-----END CERTIFICATE-----";

    fn store_of(objects: Vec<serde_json::Value>) -> ObjectStore {
        let mut store = ObjectStore::new();
        for v in objects {
            let object = sluice_store::StoredObject::from_value(v).unwrap().unwrap();
            store.upsert(object, sluice_model::Origin::ApiServer);
        }
        store
    }

    #[test]
    fn secret_id_ends_with_the_sha1_of_the_first_certificate() {
        let store = store_of(vec![serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": "cert-42", "namespace": "ns",
                "annotations": {"nginx.ingress.kubernetes.io/version": "3"}},
            "stringData": {"tls.crt": VECTOR_CERT, "tls.key": "unused for the ID"},
        })]);
        let ids = secret_ids(&store);
        assert_eq!(ids.len(), 1);
        assert_eq!(ids[0].id, "42-3-7dc3c11b75200430d9cc4a1fd8ad6e361c97e4b1");
    }

    #[test]
    fn ingress_ids_need_version_and_numeric_suffix_and_our_class() {
        let ingress = |name: &str, class: &str, version: Option<&str>| {
            let mut v = serde_json::json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": {"name": name, "namespace": "ns"},
                "spec": {"ingressClassName": class},
            });
            if let Some(version) = version {
                v["metadata"]["annotations"] =
                    serde_json::json!({"nginx.ingress.kubernetes.io/version": version});
            }
            v
        };
        let store = store_of(vec![
            ingress("alibaba-taobao-com-27555", "sluice", Some("1")),
            ingress("canary-27555", "sluice", Some("2")),
            ingress("no-version-1", "sluice", None),
            ingress("zero-2", "sluice", Some("0")),
            ingress("text-3", "sluice", Some("v1")),
            ingress("other-class-4", "nginx", Some("1")),
            ingress("nosuffix", "sluice", Some("1")),
        ]);
        let ids = sorted_ids(&ingress_ids(&store, &TranslateOptions::default()));
        assert_eq!(ids, ["27555-1", "27555-2"]);
    }

    #[test]
    fn names_need_a_numeric_last_part() {
        assert_eq!(name_id("alibaba-taobao-com-27555"), Some(27555));
        assert_eq!(name_id("web-007"), Some(7));
        assert_eq!(name_id("web"), None);
        assert_eq!(name_id("web-"), None);
        assert_eq!(name_id("web-1a"), None);
    }
}
