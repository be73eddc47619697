//! The object of one definition in a file, held once: as decoded until it goes into the store,
//! then as the store's own `Arc`. At 20,000 Ingresses a second, per-file copy of every object
//! was about 100 MB.

use sluice_model::ObjectKind;
use sluice_store::k8s_openapi::api::core::v1::{ConfigMap, Secret};
use sluice_store::k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use sluice_store::slim::{SlimEndpointSlice, SlimEndpoints, SlimService};
use sluice_store::{
    IngressCheckSum, Named, NamespacedName, ObjectStore, SecretCheckSum, StoredObject,
};
use std::sync::Arc;

#[derive(Debug)]
pub(crate) enum Held {
    /// Read from the file and not (yet) in the store: a duplicate that lost, or a definition
    /// just parsed. Boxed: a decoded object is over 800 bytes inline, and every definition in
    /// every file has a `Held`.
    Decoded(Box<StoredObject>),
    /// The store's object for this definition.
    Shared(SharedObject),
}

impl Held {
    /// The object to put into the store under `key`: moved when only decoded, copied when
    /// already shared (a definition that comes back into effect after another one replaced it).
    pub fn into_decoded(self, key: &NamespacedName) -> StoredObject {
        match self {
            Held::Decoded(object) => *object,
            Held::Shared(shared) => shared.to_decoded(key),
        }
    }
}

/// An object the store holds, by kind.
#[derive(Debug, Clone)]
pub(crate) enum SharedObject {
    Ingress(Arc<Ingress>),
    IngressClass(Arc<IngressClass>),
    Service(Arc<SlimService>),
    EndpointSlice(Arc<SlimEndpointSlice>),
    Endpoints(Arc<SlimEndpoints>),
    Secret(Arc<Secret>),
    ConfigMap(Arc<ConfigMap>),
    IngressCheckSum(Arc<IngressCheckSum>),
    SecretCheckSum(Arc<SecretCheckSum>),
}

impl SharedObject {
    /// The store's object under `key`, if it has one.
    pub fn from_store(
        store: &ObjectStore,
        kind: ObjectKind,
        key: &NamespacedName,
    ) -> Option<SharedObject> {
        Some(match kind {
            ObjectKind::Ingress => SharedObject::Ingress(store.ingresses.get(key)?.object.clone()),
            ObjectKind::IngressClass => {
                SharedObject::IngressClass(store.ingress_classes.get(&key.name)?.object.clone())
            }
            ObjectKind::Service => SharedObject::Service(store.services.get(key)?.object.clone()),
            ObjectKind::EndpointSlice => {
                SharedObject::EndpointSlice(store.endpoint_slices.get(key)?.object.clone())
            }
            ObjectKind::Endpoints => {
                SharedObject::Endpoints(store.endpoints.get(key)?.object.clone())
            }
            ObjectKind::Secret => SharedObject::Secret(store.secrets.get(key)?.object.clone()),
            ObjectKind::ConfigMap => {
                SharedObject::ConfigMap(store.config_maps.get(key)?.object.clone())
            }
            ObjectKind::IngressCheckSum => {
                SharedObject::IngressCheckSum(store.ingress_checksums.get(key)?.object.clone())
            }
            ObjectKind::SecretCheckSum => {
                SharedObject::SecretCheckSum(store.secret_checksums.get(key)?.object.clone())
            }
        })
    }

    fn to_decoded(&self, key: &NamespacedName) -> StoredObject {
        // The slim kinds keep their name only in the store's key.
        fn named<T: Clone>(key: &NamespacedName, object: &T) -> Named<T> {
            Named::under(key, object.clone())
        }
        match self {
            SharedObject::Ingress(o) => StoredObject::Ingress((**o).clone()),
            SharedObject::IngressClass(o) => StoredObject::IngressClass((**o).clone()),
            SharedObject::Service(o) => StoredObject::Service(named(key, &**o)),
            SharedObject::EndpointSlice(o) => StoredObject::EndpointSlice(named(key, &**o)),
            SharedObject::Endpoints(o) => StoredObject::Endpoints(named(key, &**o)),
            SharedObject::Secret(o) => StoredObject::Secret((**o).clone()),
            SharedObject::ConfigMap(o) => StoredObject::ConfigMap((**o).clone()),
            SharedObject::IngressCheckSum(o) => StoredObject::IngressCheckSum((**o).clone()),
            SharedObject::SecretCheckSum(o) => StoredObject::SecretCheckSum((**o).clone()),
        }
    }
}
