//! Which [`RouteStats`] belongs to which route of the live snapshot.
//!
//! The stats outlive snapshots (a route that survives a configuration change keeps counting),
//! so they live here, keyed by their labels. After each swap the apply loop calls
//! [`Registry::refresh`], which drops the stats of routes that are gone (their series vanish
//! from `/metrics`) and builds an index from the addresses of the new snapshot's routes to their
//! stats, so a request finds its stats by the address of the route it matched: one hash of a
//! pointer, no string hashing, no lock.

use crate::route::{RouteKey, RouteStats};
use arc_swap::ArcSwap;
use sluice_model::{Route, Snapshot, VirtualHost};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

#[derive(Default)]
pub(crate) struct Registry {
    entries: Mutex<HashMap<RouteKey, Arc<RouteStats>>>,
    index: ArcSwap<RouteIndex>,
}

#[derive(Default)]
struct RouteIndex {
    /// Held so the indexed addresses cannot be reused by another snapshot while indexed.
    snapshot: Option<Arc<Snapshot>>,
    by_address: HashMap<usize, Arc<RouteStats>, BuildHasherDefault<AddressHasher>>,
}

/// Addresses are already unique; mixing the bits is all the hash has to do.
#[derive(Default)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = ((n as u64) >> 3).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// The address a route (or, for requests that matched no path, its host) is indexed by.
fn address(vhost: &VirtualHost, route: Option<&Route>) -> usize {
    match route {
        Some(route) => route as *const Route as usize,
        None => vhost as *const VirtualHost as usize,
    }
}

impl Registry {
    pub(crate) fn lookup(
        &self,
        snapshot: &Arc<Snapshot>,
        vhost: &VirtualHost,
        route: Option<&Route>,
    ) -> Option<Arc<RouteStats>> {
        let index = self.index.load();
        if let Some(indexed) = &index.snapshot
            && Arc::ptr_eq(indexed, snapshot)
            && let Some(stats) = index.by_address.get(&address(vhost, route))
        {
            return Some(stats.clone());
        }
        let indexed_version = index.snapshot.as_ref().map_or(0, |s| s.version);
        drop(index);
        self.lookup_by_key(snapshot.version >= indexed_version, vhost, route)
    }

    /// Requests that loaded a snapshot the index has not caught up with (the moment between a
    /// swap and its refresh), or an older one (in flight across the swap).
    #[cold]
    fn lookup_by_key(
        &self,
        current: bool,
        vhost: &VirtualHost,
        route: Option<&Route>,
    ) -> Option<Arc<RouteStats>> {
        let key = RouteKey::of(vhost, route);
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(stats) = entries.get(&key) {
            return Some(stats.clone());
        }
        // A route of an older snapshot that is gone must not come back to life.
        if !current {
            return None;
        }
        let stats = Arc::new(RouteStats::new(key.clone()));
        entries.insert(key, stats.clone());
        Some(stats)
    }

    /// Indexes `snapshot`'s routes and forgets the stats of routes it no longer has.
    pub(crate) fn refresh(&self, snapshot: &Arc<Snapshot>) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let mut kept = HashMap::with_capacity(entries.len());
        let mut by_address = HashMap::default();
        let empty: Arc<str> = Arc::from("");
        for vhost in snapshot.hosts.iter() {
            let host = RouteKey::host_of(vhost);
            let routes = vhost.routes.iter().chain(vhost.fallback.iter());
            for route in std::iter::once(None).chain(routes.map(Some)) {
                let key = RouteKey::with_host(host.clone(), route, &empty);
                let stats = kept
                    .get(&key)
                    .or_else(|| entries.get(&key))
                    .cloned()
                    .unwrap_or_else(|| Arc::new(RouteStats::new(key.clone())));
                by_address.insert(address(vhost, route), stats.clone());
                kept.insert(key, stats);
            }
        }
        *entries = kept;
        self.index.store(Arc::new(RouteIndex {
            snapshot: Some(snapshot.clone()),
            by_address,
        }));
    }

    /// Every live route's stats, ordered by labels.
    pub(crate) fn all(&self) -> Vec<Arc<RouteStats>> {
        let mut all: Vec<Arc<RouteStats>> = {
            let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            entries.values().cloned().collect()
        };
        all.sort_by(|a, b| a.key.cmp(&b.key));
        all
    }
}
