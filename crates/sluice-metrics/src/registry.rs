//! Which [`RouteStats`] belongs to which route of the live snapshot.
//!
//! The stats outlive snapshots (a route that survives a configuration change keeps counting),
//! so they live here, keyed by their labels. After each swap the apply loop calls
//! [`Registry::refresh`], which drops the stats of routes that are gone (their series vanish
//! from `/metrics`) and indexes the new snapshot's hosts by address, so a request finds its stats
//! by the address of the host it matched and the position of its route: one hash of a pointer,
//! no string hashing, no lock. A host the previous snapshot already had (the same `Arc`, as
//! incremental translation keeps unchanged hosts) keeps its index entry, so a refresh costs in
//! proportion to what changed, not to the number of hosts.

use crate::route::{RouteKey, RouteStats};
use arc_swap::ArcSwap;
use sluice_model::{HostChanges, Route, Snapshot, VirtualHost};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

#[derive(Default)]
pub(crate) struct Registry {
    entries: Mutex<Entries>,
    index: ArcSwap<RouteIndex>,
}

#[derive(Default)]
struct Entries {
    /// Each live key's stats and how many indexed routes use it (two routes can share labels,
    /// e.g. an Exact and a Prefix path spelled the same).
    by_key: HashMap<RouteKey, (Arc<RouteStats>, usize)>,
    /// Made for requests that ran ahead of the index; dropped at the next refresh unless indexed.
    unindexed: Vec<RouteKey>,
}

#[derive(Default)]
struct RouteIndex {
    /// The version of the snapshot indexed last.
    version: u64,
    by_host: HashMap<usize, Arc<HostStats>, BuildHasherDefault<AddressHasher>>,
}

/// The stats of one host's routes, in route order, the fallback last.
struct HostStats {
    /// Held so the address it is indexed by cannot be reused by another host while indexed.
    vhost: Arc<VirtualHost>,
    unmatched: Arc<RouteStats>,
    routes: Vec<Arc<RouteStats>>,
}

impl HostStats {
    fn get(&self, route: Option<&Route>) -> Option<&Arc<RouteStats>> {
        let Some(route) = route else {
            return Some(&self.unmatched);
        };
        if let Some(fallback) = &self.vhost.fallback
            && std::ptr::eq(fallback, route)
        {
            return self.routes.last();
        }
        let first = self.vhost.routes.as_ptr() as usize;
        let offset = (route as *const Route as usize).checked_sub(first)?;
        let i = offset / std::mem::size_of::<Route>();
        (i < self.vhost.routes.len() && std::ptr::eq(&self.vhost.routes[i], route))
            .then(|| &self.routes[i])
    }

    /// Every key of the host with its stats: unmatched first, then the routes, the fallback last.
    fn keys(&self) -> impl Iterator<Item = (RouteKey, &Arc<RouteStats>)> {
        let host = RouteKey::host_of(&self.vhost);
        let empty: Arc<str> = Arc::from("");
        let routes = self.vhost.routes.iter().chain(self.vhost.fallback.iter());
        std::iter::once(None)
            .chain(routes.map(Some))
            .zip(std::iter::once(&self.unmatched).chain(&self.routes))
            .map(move |(route, stats)| (RouteKey::with_host(host.clone(), route, &empty), stats))
    }
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

impl Registry {
    pub(crate) fn lookup(
        &self,
        snapshot: &Arc<Snapshot>,
        vhost: &VirtualHost,
        route: Option<&Route>,
    ) -> Option<Arc<RouteStats>> {
        let index = self.index.load();
        if let Some(host) = index.by_host.get(&(vhost as *const VirtualHost as usize))
            && let Some(stats) = host.get(route)
        {
            return Some(stats.clone());
        }
        let indexed_version = index.version;
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
        if let Some((stats, _)) = entries.by_key.get(&key) {
            return Some(stats.clone());
        }
        // A route of an older snapshot that is gone must not come back to life.
        if !current {
            return None;
        }
        let stats = Arc::new(RouteStats::new(key.clone()));
        entries.by_key.insert(key.clone(), (stats.clone(), 0));
        entries.unindexed.push(key);
        Some(stats)
    }

    /// Indexes only the hosts that changed, when the index is of the snapshot before this one.
    pub(crate) fn refresh_changed(&self, snapshot: &Arc<Snapshot>, changes: &HostChanges) {
        let old = self.index.load_full();
        if old.version + 1 != snapshot.version {
            return self.refresh(snapshot);
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let mut by_host = old.by_host.clone();
        // New hosts hold their keys before the hosts they replace let go of theirs, so a route
        // that survives keeps its stats.
        for vhost in &changes.added {
            by_host.insert(Arc::as_ptr(vhost) as usize, Arc::new(entries.hold(vhost)));
        }
        for vhost in &changes.removed {
            if let Some(host) = by_host.remove(&(Arc::as_ptr(vhost) as usize)) {
                entries.release(&host);
            }
        }
        entries.forget_unindexed();
        self.index.store(Arc::new(RouteIndex {
            version: snapshot.version,
            by_host,
        }));
    }

    /// Indexes `snapshot`'s hosts and forgets the stats of routes it no longer has.
    pub(crate) fn refresh(&self, snapshot: &Arc<Snapshot>) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let old = self.index.load_full();
        let mut by_host = HashMap::with_capacity_and_hasher(old.by_host.len(), Default::default());
        for vhost in snapshot.hosts.iter() {
            let address = Arc::as_ptr(vhost) as usize;
            let host = match old.by_host.get(&address) {
                Some(host) => host.clone(),
                None => Arc::new(entries.hold(vhost)),
            };
            by_host.insert(address, host);
        }
        for (address, host) in &old.by_host {
            if !by_host.contains_key(address) {
                entries.release(host);
            }
        }
        entries.forget_unindexed();
        self.index.store(Arc::new(RouteIndex {
            version: snapshot.version,
            by_host,
        }));
    }

    /// Every live route's stats, ordered by labels.
    pub(crate) fn all(&self) -> Vec<Arc<RouteStats>> {
        let mut all: Vec<Arc<RouteStats>> = {
            let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            entries
                .by_key
                .values()
                .map(|(stats, _)| stats.clone())
                .collect()
        };
        all.sort_by(|a, b| a.key.cmp(&b.key));
        all
    }
}

impl Entries {
    fn forget_unindexed(&mut self) {
        for key in std::mem::take(&mut self.unindexed) {
            if self.by_key.get(&key).is_some_and(|(_, users)| *users == 0) {
                self.by_key.remove(&key);
            }
        }
    }

    /// The stats of every route of `vhost`, counted as used.
    fn hold(&mut self, vhost: &Arc<VirtualHost>) -> HostStats {
        let host = RouteKey::host_of(vhost);
        let empty: Arc<str> = Arc::from("");
        let mut stats = std::iter::once(None)
            .chain(vhost.routes.iter().chain(vhost.fallback.iter()).map(Some))
            .map(|route| {
                let key = RouteKey::with_host(host.clone(), route, &empty);
                let (stats, users) = self
                    .by_key
                    .entry(key)
                    .or_insert_with_key(|key| (Arc::new(RouteStats::new(key.clone())), 0));
                *users += 1;
                stats.clone()
            });
        let unmatched = stats.next().unwrap_or_else(|| {
            Arc::new(RouteStats::new(RouteKey::with_host(
                host.clone(),
                None,
                &empty,
            )))
        });
        HostStats {
            vhost: vhost.clone(),
            unmatched,
            routes: stats.collect(),
        }
    }

    fn release(&mut self, host: &HostStats) {
        for (key, _) in host.keys() {
            if let Some((_, users)) = self.by_key.get_mut(&key) {
                *users = users.saturating_sub(1);
                if *users == 0 {
                    self.by_key.remove(&key);
                }
            }
        }
    }
}
