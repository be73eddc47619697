//! The object store proper.

use crate::checksum::{IngressCheckSum, SecretCheckSum};
use crate::decode::StoredObject;
use crate::slice_index::SliceIndex;
use crate::slim::{SlimEndpointSlice, SlimEndpoints, SlimService};
use imbl::OrdMap;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use sluice_model::{ObjectKind, ObjectRef, Origin};
use std::fmt;
use std::sync::Arc;

/// `namespace/name`; cluster-scoped objects have an empty namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NamespacedName {
    pub namespace: String,
    pub name: String,
}

impl NamespacedName {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        NamespacedName {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// Parses `namespace/name` (a bare `name` is in `default`).
    pub fn parse(s: &str) -> Option<Self> {
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Some(NamespacedName::new(ns, name))
            }
            None if !s.is_empty() => Some(NamespacedName::new("default", s)),
            _ => None,
        }
    }

    pub fn object_ref(&self, kind: ObjectKind) -> ObjectRef {
        ObjectRef::new(kind, self.namespace.clone(), self.name.clone())
    }
}

impl fmt::Display for NamespacedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// An object and where it was read from.
#[derive(Debug)]
pub struct Stored<T> {
    pub object: Arc<T>,
    pub origin: Origin,
}

/// Identity, not content: the very same object read from the same place. This is what lets
/// `OrdMap::diff` between two versions of a store find the changed entries quickly (shared
/// subtrees are skipped), and what readers that reuse earlier work need to know.
impl<T> PartialEq for Stored<T> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.object, &other.object) && self.origin == other.origin
    }
}

impl<T> Clone for Stored<T> {
    fn clone(&self) -> Self {
        Stored {
            object: self.object.clone(),
            origin: self.origin.clone(),
        }
    }
}

/// A counter per kind, bumped on every change of an object of that kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindRevisions {
    pub ingress: u64,
    pub ingress_class: u64,
    pub service: u64,
    pub endpoint_slice: u64,
    pub endpoints: u64,
    pub secret: u64,
    pub config_map: u64,
    pub ingress_checksum: u64,
    pub secret_checksum: u64,
}

impl KindRevisions {
    fn bump(&mut self, kind: ObjectKind) {
        let counter = match kind {
            ObjectKind::Ingress => &mut self.ingress,
            ObjectKind::IngressClass => &mut self.ingress_class,
            ObjectKind::Service => &mut self.service,
            ObjectKind::EndpointSlice => &mut self.endpoint_slice,
            ObjectKind::Endpoints => &mut self.endpoints,
            ObjectKind::Secret => &mut self.secret,
            ObjectKind::ConfigMap => &mut self.config_map,
            ObjectKind::IngressCheckSum => &mut self.ingress_checksum,
            ObjectKind::SecretCheckSum => &mut self.secret_checksum,
        };
        *counter += 1;
    }

    /// True when everything that changed since `before` only moves endpoints (Services,
    /// EndpointSlices, Endpoints), so routes need not be rebuilt. A checksum object change counts
    /// as a route change: it may release held Ingress or Secret changes.
    pub fn only_endpoints_changed_since(&self, before: &KindRevisions) -> bool {
        self.ingress == before.ingress
            && self.ingress_class == before.ingress_class
            && self.secret == before.secret
            && self.config_map == before.config_map
            && self.ingress_checksum == before.ingress_checksum
            && self.secret_checksum == before.secret_checksum
    }
}

/// Every object Sluice reads, by kind, then namespace/name.
///
/// The maps are persistent (`imbl`): a clone shares everything with the original and a change
/// to either copies only the path to the changed entry. A source publishes a clone after every
/// change, and the gate, the translator and the next change all hold one, so with 20,000
/// Ingresses a change costs a few node copies instead of copying 60,000 entries.
#[derive(Debug, Clone, Default)]
pub struct ObjectStore {
    pub ingresses: OrdMap<NamespacedName, Stored<Ingress>>,
    /// Cluster-scoped: keyed by name.
    pub ingress_classes: OrdMap<String, Stored<IngressClass>>,
    pub services: OrdMap<NamespacedName, Stored<SlimService>>,
    pub endpoint_slices: OrdMap<NamespacedName, Stored<SlimEndpointSlice>>,
    /// Legacy v1 Endpoints.
    pub endpoints: OrdMap<NamespacedName, Stored<SlimEndpoints>>,
    pub secrets: OrdMap<NamespacedName, Stored<Secret>>,
    pub config_maps: OrdMap<NamespacedName, Stored<ConfigMap>>,
    /// Tengine-Ingress checksum objects (`tengine.taobao.org/v1`).
    pub ingress_checksums: OrdMap<NamespacedName, Stored<IngressCheckSum>>,
    pub secret_checksums: OrdMap<NamespacedName, Stored<SecretCheckSum>>,
    /// Service `namespace/name` -> names of its EndpointSlices (label
    /// `kubernetes.io/service-name`).
    slices_by_service: SliceIndex,
    revisions: KindRevisions,
}

impl ObjectStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn revisions(&self) -> KindRevisions {
        self.revisions
    }

    /// The key an object is stored under: its namespace (`default` when absent, empty for
    /// cluster-scoped kinds) and name.
    pub fn key_of(object: &StoredObject) -> NamespacedName {
        let namespace = match object {
            StoredObject::IngressClass(_) => "",
            _ => object
                .namespace()
                .filter(|ns| !ns.is_empty())
                .unwrap_or("default"),
        };
        NamespacedName::new(namespace, object.name())
    }

    /// Inserts or replaces an object. Returns its key.
    pub fn upsert(&mut self, object: StoredObject, origin: Origin) -> NamespacedName {
        let key = Self::key_of(&object);
        self.revisions.bump(object.kind());
        match object {
            StoredObject::Ingress(mut o) => {
                o.metadata.namespace = Some(key.namespace.clone());
                self.ingresses.insert(key.clone(), stored(o, origin));
            }
            StoredObject::IngressClass(o) => {
                self.ingress_classes
                    .insert(key.name.clone(), stored(o, origin));
            }
            StoredObject::Service(o) => {
                self.services.insert(key.clone(), stored(o.object, origin));
            }
            StoredObject::EndpointSlice(o) => {
                self.unindex_slice(&key);
                if let Some(service) = o.object.service.as_deref() {
                    self.slices_by_service.insert(
                        NamespacedName::new(key.namespace.clone(), service),
                        &key.name,
                    );
                }
                self.endpoint_slices
                    .insert(key.clone(), stored(o.object, origin));
            }
            StoredObject::Endpoints(o) => {
                self.endpoints.insert(key.clone(), stored(o.object, origin));
            }
            StoredObject::Secret(mut o) => {
                o.metadata.namespace = Some(key.namespace.clone());
                self.secrets.insert(key.clone(), stored(o, origin));
            }
            StoredObject::ConfigMap(mut o) => {
                o.metadata.namespace = Some(key.namespace.clone());
                self.config_maps.insert(key.clone(), stored(o, origin));
            }
            StoredObject::IngressCheckSum(mut o) => {
                o.metadata.namespace = Some(key.namespace.clone());
                self.ingress_checksums
                    .insert(key.clone(), stored(o, origin));
            }
            StoredObject::SecretCheckSum(mut o) => {
                o.metadata.namespace = Some(key.namespace.clone());
                self.secret_checksums.insert(key.clone(), stored(o, origin));
            }
        }
        key
    }

    /// Removes an object; returns whether it was there.
    pub fn remove(&mut self, kind: ObjectKind, key: &NamespacedName) -> bool {
        let removed = match kind {
            ObjectKind::Ingress => self.ingresses.remove(key).is_some(),
            ObjectKind::IngressClass => self.ingress_classes.remove(&key.name).is_some(),
            ObjectKind::Service => self.services.remove(key).is_some(),
            ObjectKind::EndpointSlice => {
                self.unindex_slice(key);
                self.endpoint_slices.remove(key).is_some()
            }
            ObjectKind::Endpoints => self.endpoints.remove(key).is_some(),
            ObjectKind::Secret => self.secrets.remove(key).is_some(),
            ObjectKind::ConfigMap => self.config_maps.remove(key).is_some(),
            ObjectKind::IngressCheckSum => self.ingress_checksums.remove(key).is_some(),
            ObjectKind::SecretCheckSum => self.secret_checksums.remove(key).is_some(),
        };
        if removed {
            self.revisions.bump(kind);
        }
        removed
    }

    /// The EndpointSlices of a Service (by the `kubernetes.io/service-name` label).
    pub fn endpoint_slices_of(
        &self,
        service: &NamespacedName,
    ) -> impl Iterator<Item = &Stored<SlimEndpointSlice>> {
        self.slices_by_service
            .slices_of(service)
            .filter_map(|name| {
                self.endpoint_slices
                    .get(&NamespacedName::new(service.namespace.clone(), name))
            })
    }

    pub fn is_empty(&self) -> bool {
        self.ingresses.is_empty()
            && self.ingress_classes.is_empty()
            && self.services.is_empty()
            && self.endpoint_slices.is_empty()
            && self.endpoints.is_empty()
            && self.secrets.is_empty()
            && self.config_maps.is_empty()
            && self.ingress_checksums.is_empty()
            && self.secret_checksums.is_empty()
    }

    fn unindex_slice(&mut self, key: &NamespacedName) {
        let Some(old) = self.endpoint_slices.get(key) else {
            return;
        };
        let Some(service) = old.object.service.as_deref() else {
            return;
        };
        let service_key = NamespacedName::new(key.namespace.clone(), service);
        self.slices_by_service.remove(&service_key, &key.name);
    }
}

/// The keys whose entry differs between two versions of a map: added, removed, or not the very
/// same object (see `Stored`'s equality). Subtrees the versions share are skipped, so this costs
/// what changed.
pub fn changed_keys<K: Ord + Clone, V: Clone + PartialEq>(
    before: &OrdMap<K, V>,
    now: &OrdMap<K, V>,
) -> Vec<K> {
    before
        .diff(now)
        .map(|item| match item {
            imbl::ordmap::DiffItem::Add(key, _) | imbl::ordmap::DiffItem::Remove(key, _) => {
                key.clone()
            }
            imbl::ordmap::DiffItem::Update { new: (key, _), .. } => key.clone(),
        })
        .collect()
}

fn stored<T>(object: T, origin: Origin) -> Stored<T> {
    Stored {
        object: Arc::new(object),
        origin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(v: serde_json::Value) -> StoredObject {
        StoredObject::from_value(v).unwrap().unwrap()
    }

    fn slice(name: &str, service: &str) -> StoredObject {
        decode(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4", "endpoints": []
        }))
    }

    #[test]
    fn slices_are_indexed_by_service_and_follow_relabels() {
        let mut store = ObjectStore::new();
        store.upsert(slice("web-1", "web"), Origin::ApiServer);
        store.upsert(slice("web-2", "web"), Origin::ApiServer);
        let web = NamespacedName::new("default", "web");
        assert_eq!(store.endpoint_slices_of(&web).count(), 2);
        store.upsert(slice("web-2", "api"), Origin::ApiServer);
        assert_eq!(store.endpoint_slices_of(&web).count(), 1);
        store.remove(
            ObjectKind::EndpointSlice,
            &NamespacedName::new("default", "web-1"),
        );
        assert_eq!(store.endpoint_slices_of(&web).count(), 0);
    }

    #[test]
    fn endpoint_changes_are_told_apart_from_route_changes() {
        let mut store = ObjectStore::new();
        let before = store.revisions();
        store.upsert(slice("web-1", "web"), Origin::ApiServer);
        assert!(store.revisions().only_endpoints_changed_since(&before));
        store.upsert(
            decode(
                json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": {"name": "x"}, "spec": {}}),
            ),
            Origin::ApiServer,
        );
        assert!(!store.revisions().only_endpoints_changed_since(&before));
    }

    #[test]
    fn unknown_kinds_are_skipped_and_bad_fields_explained() {
        assert!(
            StoredObject::from_value(json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "x"}}))
            .unwrap()
            .is_none()
        );
        let err = StoredObject::from_value(json!({"apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress", "metadata": {"name": "x"}, "spec": {"rules": "nope"}}))
        .unwrap_err();
        assert!(err.to_string().contains("Ingress x"), "{err}");
    }

    #[test]
    fn checksum_objects_are_stored_and_move_their_own_revision() {
        let mut store = ObjectStore::new();
        let before = store.revisions();
        let key = store.upsert(
            decode(json!({"apiVersion": "tengine.taobao.org/v1", "kind": "SecretCheckSum",
                "metadata": {"name": "sec-1"}, "spec": {"checksum": "d41d8cd98f00b204e9800998ecf8427e"}})),
            Origin::ApiServer,
        );
        assert_eq!(key, NamespacedName::new("default", "sec-1"));
        assert_eq!(
            store.secret_checksums[&key].object.spec.checksum.as_deref(),
            Some("d41d8cd98f00b204e9800998ecf8427e")
        );
        assert_eq!(
            store.revisions().secret_checksum,
            before.secret_checksum + 1
        );
        assert!(!store.revisions().only_endpoints_changed_since(&before));
        assert!(store.remove(ObjectKind::SecretCheckSum, &key));
        assert!(store.is_empty());
    }

    #[test]
    fn namespaced_names_parse() {
        assert_eq!(
            NamespacedName::parse("ns/cert"),
            Some(NamespacedName::new("ns", "cert"))
        );
        assert_eq!(
            NamespacedName::parse("cert"),
            Some(NamespacedName::new("default", "cert"))
        );
        assert_eq!(NamespacedName::parse("a/b/c"), None);
        assert_eq!(NamespacedName::parse(""), None);
    }
}
