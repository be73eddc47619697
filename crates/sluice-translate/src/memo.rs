//! What one translation hands to the next: parsed certificates and backend slots. Both are
//! keyed by the object they came from and reused only while that object is the very same one
//! (same `Arc`, same origin), so reuse never changes a translation's result.

use crate::certs::load_server_cert;
use crate::endpoints::{first_key_of, is_of, resolve_endpoints};
use k8s_openapi::api::core::v1::Secret;
use sluice_model::{BackendKey, BackendSlot, ObjectKind, ServerCert};
use sluice_store::{NamespacedName, ObjectStore, Stored};
use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Parsed TLS Secrets. Parsing an RSA key checks it, which costs about a millisecond; a
/// translation of thousands of TLS hosts must not pay that again for Secrets that did not change.
#[derive(Default)]
pub(crate) struct CertMemo {
    entries: HashMap<NamespacedName, CertEntry>,
}

struct CertEntry {
    /// The Secret the result was made from, `None` when it did not exist.
    source: Option<Stored<Secret>>,
    result: Result<ServerCert, String>,
}

fn same_secret(a: Option<&Stored<Secret>>, b: Option<&Stored<Secret>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(&a.object, &b.object) && a.origin == b.origin,
        _ => false,
    }
}

impl CertMemo {
    pub(crate) fn server_cert(
        &mut self,
        store: &ObjectStore,
        key: &NamespacedName,
    ) -> Result<ServerCert, String> {
        let current = store.secrets.get(key);
        if let Some(entry) = self.entries.get(key)
            && same_secret(entry.source.as_ref(), current)
        {
            return entry.result.clone();
        }
        let result = match current {
            None => Err(format!(
                "the Secret does not exist; create a kubernetes.io/tls Secret named {} in \
                 namespace {}",
                key.name, key.namespace
            )),
            Some(stored) => load_server_cert(&stored.object, &key.object_ref(ObjectKind::Secret))
                .map_err(|why| format!("{why} (Secret read from {})", stored.origin)),
        };
        self.entries.insert(
            key.clone(),
            CertEntry {
                source: current.cloned(),
                result: result.clone(),
            },
        );
        result
    }

    /// Forgets the Secrets `keep` says nobody names any more.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&NamespacedName) -> bool) {
        self.entries.retain(|key, _| keep(key));
    }
}

/// One slot per backend for the whole snapshot, counted by the groups that route to it. A slot
/// that stays in use keeps its `Arc` (and its round-robin position) from snapshot to snapshot.
#[derive(Default)]
pub(crate) struct SlotPool {
    slots: BTreeMap<PooledSlot, usize>,
    /// The map handed to the last snapshot, reused while no slot comes or goes.
    published: Option<Arc<BTreeMap<BackendKey, Arc<BackendSlot>>>>,
    /// Slots created or released since the last sweep: the only ones it can drop.
    unsure: Vec<BackendKey>,
}

/// A slot ordered and looked up by its key: the key lives once, in the slot (40,000 backends
/// would otherwise hold a second copy of every key here).
struct PooledSlot(Arc<BackendSlot>);

impl Borrow<BackendKey> for PooledSlot {
    fn borrow(&self) -> &BackendKey {
        &self.0.key
    }
}

impl PartialEq for PooledSlot {
    fn eq(&self, other: &Self) -> bool {
        self.0.key == other.0.key
    }
}

impl Eq for PooledSlot {}

impl PartialOrd for PooledSlot {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PooledSlot {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.key.cmp(&other.0.key)
    }
}

// A slot's endpoints change behind `ArcSwap`, but a pooled slot is ordered by its key alone,
// which never changes.
#[allow(clippy::mutable_key_type)]
impl SlotPool {
    /// The slot of `key`, created with the store's endpoints if no group uses it yet. The
    /// caller must [`SlotPool::hold`] it for it to stay.
    pub(crate) fn slot(&mut self, store: &ObjectStore, key: BackendKey) -> Arc<BackendSlot> {
        if let Some((pooled, _)) = self.slots.get_key_value(&key) {
            return pooled.0.clone();
        }
        self.published = None;
        self.unsure.push(key.clone());
        let endpoints = resolve_endpoints(store, &key);
        let slot = Arc::new(BackendSlot::new(key, endpoints));
        self.slots.insert(PooledSlot(slot.clone()), 0);
        slot
    }

    pub(crate) fn hold(&mut self, slots: &[Arc<BackendSlot>]) {
        for slot in slots {
            if let Some(users) = self.slots.get_mut(&slot.key) {
                *users += 1;
            }
        }
    }

    pub(crate) fn release(&mut self, slots: &[Arc<BackendSlot>]) {
        for slot in slots {
            if let Some(users) = self.slots.get_mut(&slot.key) {
                *users = users.saturating_sub(1);
                if *users == 0 {
                    self.unsure.push(slot.key.clone());
                }
            }
        }
    }

    /// Drops the slots no group holds, the ones created and then not used included.
    pub(crate) fn sweep(&mut self) {
        for key in std::mem::take(&mut self.unsure) {
            if self.slots.get(&key).is_some_and(|users| *users == 0) {
                self.slots.remove(&key);
                self.published = None;
            }
        }
    }

    /// Re-reads from `store` the endpoints of every slot of `services`.
    pub(crate) fn refresh_services(
        &self,
        store: &ObjectStore,
        services: &std::collections::BTreeSet<NamespacedName>,
    ) {
        for service in services {
            let of_service = self
                .slots
                .range::<BackendKey, _>(first_key_of(service)..)
                .map(|(pooled, _)| &pooled.0)
                .take_while(|slot| is_of(&slot.key, service));
            for slot in of_service {
                slot.set_endpoints(resolve_endpoints(store, &slot.key));
            }
        }
    }

    pub(crate) fn snapshot_map(&mut self) -> Arc<BTreeMap<BackendKey, Arc<BackendSlot>>> {
        let slots = &self.slots;
        self.published
            .get_or_insert_with(|| {
                Arc::new(
                    slots
                        .keys()
                        .map(|pooled| (pooled.0.key.clone(), pooled.0.clone()))
                        .collect(),
                )
            })
            .clone()
    }
}
