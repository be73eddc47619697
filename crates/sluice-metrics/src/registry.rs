//! Which [`RouteStats`] belongs to which route of the live snapshot.
//!
//! The stats outlive snapshots (a route that survives a configuration change keeps counting),
//! so they live here, keyed by their labels, but only for routes that have served a request: a
//! configuration of 20,000 hosts would otherwise hold 60,000 keys and stats that most hosts
//! never use. A request finds its stats through an index of the live snapshot's hosts by
//! address: one hash of a pointer, then the position of its route, no string hashing, no lock.
//! A route's first request takes the lock once to find or make its stats and leave them in its
//! host's index entry; an idle host's entry is a pointer and an empty cell.
//!
//! After each swap the apply loop calls [`Registry::refresh_changed`]: the hosts that came in
//! pick up the stats of the routes with their labels (a rebuilt host keeps its counts), and the
//! hosts that left release theirs, so the series of routes that are gone vanish from `/metrics`.
//! A host the previous snapshot already had (the same `Arc`, as incremental translation keeps
//! unchanged hosts) keeps its entry, so a refresh costs in proportion to what changed.

use crate::route::{Labels, RouteKey, RouteLabels, RouteStats};
use arc_swap::ArcSwap;
use sluice_model::{HostChanges, Route, SharedMap, Snapshot, VirtualHost};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

#[derive(Default)]
pub(crate) struct Registry {
    /// Also orders every change of the index: whoever holds it sees the index that is current.
    entries: Mutex<Entries>,
    index: ArcSwap<RouteIndex>,
}

#[derive(Default)]
struct Entries {
    /// The stats of each route that served a request, and how many route slots of indexed hosts
    /// hold them (two routes can share labels, e.g. an Exact and a Prefix path spelled the same).
    by_key: HashMap<RouteKey, (Arc<RouteStats>, usize)>,
    /// Made for requests that ran ahead of the index; dropped at the next refresh unless indexed.
    unindexed: Vec<RouteKey>,
}

#[derive(Default)]
struct RouteIndex {
    /// The version of the snapshot indexed last.
    version: u64,
    /// By the host's address. A [`SharedMap`], so that indexing the next snapshot copies the
    /// shards its changed hosts fall in, not an entry per host of the whole table.
    by_host: SharedMap<usize, Arc<IndexedHost>>,
}

/// A host of the indexed snapshot.
struct IndexedHost {
    /// Held so the address it is indexed by cannot be reused by another host while indexed.
    vhost: Arc<VirtualHost>,
    /// One slot per route, in route order: unmatched requests first, the fallback last. Made
    /// with the host's first request; a slot is filled (under the registry's lock) with its
    /// route's first request, or when the host is indexed and its route already has stats.
    slots: OnceLock<Box<[Slot]>>,
}

type Slot = OnceLock<Arc<RouteStats>>;

impl IndexedHost {
    fn new(vhost: &Arc<VirtualHost>) -> IndexedHost {
        IndexedHost {
            vhost: vhost.clone(),
            slots: OnceLock::new(),
        }
    }

    /// The position of `route` (`None`: no path matched) among the slots, if it is this host's.
    fn position(&self, route: Option<&Route>) -> Option<usize> {
        let Some(route) = route else {
            return Some(0);
        };
        let routes = &self.vhost.routes;
        if let Some(fallback) = &self.vhost.fallback
            && std::ptr::eq(fallback, route)
        {
            return Some(routes.len() + 1);
        }
        let offset = (route as *const Route as usize).checked_sub(routes.as_ptr() as usize)?;
        let i = offset / std::mem::size_of::<Route>();
        (i < routes.len() && std::ptr::eq(&routes[i], route)).then_some(i + 1)
    }

    /// The stats of the route at `position`, when it has them already.
    fn get(&self, position: usize) -> Option<&Arc<RouteStats>> {
        self.slots.get()?.get(position)?.get()
    }

    fn slots(&self) -> &[Slot] {
        self.slots.get_or_init(|| {
            let count = self.vhost.routes.len() + 2;
            (0..count).map(|_| OnceLock::new()).collect()
        })
    }

    /// Each route of the host with its position: unmatched first, then the routes, the fallback.
    fn routes(&self) -> impl Iterator<Item = (usize, Option<&Route>)> {
        let fallback = (self.vhost.routes.len() + 1, self.vhost.fallback.as_ref());
        std::iter::once((0, None))
            .chain(
                self.vhost
                    .routes
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (i + 1, Some(r))),
            )
            .chain(std::iter::once(fallback).filter(|(_, r)| r.is_some()))
    }
}

fn address(vhost: &VirtualHost) -> usize {
    vhost as *const VirtualHost as usize
}

impl Registry {
    pub(crate) fn lookup(
        &self,
        snapshot: &Arc<Snapshot>,
        vhost: &VirtualHost,
        route: Option<&Route>,
    ) -> Option<Arc<RouteStats>> {
        let index = self.index.load();
        if let Some(host) = index.by_host.get(&address(vhost))
            && let Some(position) = host.position(route)
            && let Some(stats) = host.get(position)
        {
            return Some(stats.clone());
        }
        drop(index);
        self.lookup_slow(snapshot, vhost, route)
    }

    /// A route's first request, or a request that loaded a snapshot the index has not caught
    /// up with (the moment between a swap and its refresh), or an older one (in flight across
    /// the swap).
    #[cold]
    fn lookup_slow(
        &self,
        snapshot: &Arc<Snapshot>,
        vhost: &VirtualHost,
        route: Option<&Route>,
    ) -> Option<Arc<RouteStats>> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let labels = RouteLabels::of(vhost, route);
        // Under the lock this is the index every later refresh starts from, so a slot filled
        // here is one that refresh will see and release.
        let index = self.index.load();
        if let Some(host) = index.by_host.get(&address(vhost))
            && let Some(position) = host.position(route)
        {
            let slot = &host.slots()[position];
            if let Some(stats) = slot.get() {
                return Some(stats.clone());
            }
            let stats = entries.hold(&labels);
            let _ = slot.set(stats.clone());
            return Some(stats);
        }
        if let Some((stats, _)) = entries.by_key.get(&labels as &dyn Labels) {
            return Some(stats.clone());
        }
        // A route of an older snapshot that is gone must not come back to life.
        if snapshot.version < index.version {
            return None;
        }
        let key = labels.to_key();
        let stats = Arc::new(RouteStats::new(key.clone()));
        entries.by_key.insert(key.clone(), (stats.clone(), 0));
        entries.unindexed.push(key);
        Some(stats)
    }

    /// Indexes only the hosts that changed, when the index is of the snapshot before this one.
    pub(crate) fn refresh_changed(&self, snapshot: &Arc<Snapshot>, changes: &HostChanges) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let old = self.index.load_full();
        if old.version + 1 != snapshot.version {
            drop(entries);
            return self.refresh(snapshot);
        }
        let mut by_host = old.by_host.clone();
        // New hosts take up their routes' stats before the hosts they replace let go of them,
        // so a route that survives keeps its counts.
        for vhost in &changes.added {
            let host = entries.index(vhost);
            if let Some(replaced) = by_host.insert(address(vhost), host) {
                entries.release(&replaced);
            }
        }
        for vhost in &changes.removed {
            if let Some(host) = by_host.remove(&address(vhost)) {
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
        let mut by_host = SharedMap::new();
        for vhost in snapshot.hosts.iter() {
            let host = match old.by_host.get(&address(vhost)) {
                Some(host) => host.clone(),
                None => entries.index(vhost),
            };
            by_host.insert(address(vhost), host);
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

    /// Every live route's stats that has any, ordered by labels; only those of `host` (as
    /// configured, any case) when given.
    pub(crate) fn all(&self, host: Option<&str>) -> Vec<Arc<RouteStats>> {
        let mut all: Vec<Arc<RouteStats>> = {
            let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            entries
                .by_key
                .values()
                .filter(|(stats, _)| host.is_none_or(|h| h.eq_ignore_ascii_case(&stats.key.host)))
                .map(|(stats, _)| stats.clone())
                .collect()
        };
        all.sort_by(|a, b| a.key.cmp(&b.key));
        all
    }

    /// The key of the unmatched requests of the indexed host named `host` (as configured, any
    /// case): how to list a host that has not served a request yet.
    pub(crate) fn indexed_host(&self, host: &str) -> Option<RouteKey> {
        let index = self.index.load();
        index
            .by_host
            .values()
            .map(|indexed| RouteLabels::of(&indexed.vhost, None))
            .find(|labels| labels.0[0].eq_ignore_ascii_case(host))
            .map(|labels| labels.to_key())
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

    /// The stats of the route with `labels`, made if it has none, counted as used once more.
    fn hold(&mut self, labels: &RouteLabels<'_>) -> Arc<RouteStats> {
        if let Some((stats, users)) = self.by_key.get_mut(labels as &dyn Labels) {
            *users += 1;
            return stats.clone();
        }
        let key = labels.to_key();
        let stats = Arc::new(RouteStats::new(key.clone()));
        self.by_key.insert(key, (stats.clone(), 1));
        stats
    }

    /// A new index entry for `vhost`, holding the stats its routes' labels already have (those
    /// of the host it replaces, or of requests that ran ahead of the index). With no stats at
    /// all, as after a start, nothing is looked up.
    fn index(&mut self, vhost: &Arc<VirtualHost>) -> Arc<IndexedHost> {
        let host = IndexedHost::new(vhost);
        if !self.by_key.is_empty() {
            for (position, route) in host.routes() {
                let labels = RouteLabels::of(vhost, route);
                if let Some((stats, users)) = self.by_key.get_mut(&labels as &dyn Labels) {
                    *users += 1;
                    let _ = host.slots()[position].set(stats.clone());
                }
            }
        }
        Arc::new(host)
    }

    /// Lets go of the stats `host`'s routes hold; those nothing else holds are forgotten.
    fn release(&mut self, host: &IndexedHost) {
        let filled = host
            .slots
            .get()
            .into_iter()
            .flatten()
            .filter_map(|s| s.get());
        for stats in filled {
            if let Some((_, users)) = self.by_key.get_mut(&stats.key) {
                *users = users.saturating_sub(1);
                if *users == 0 {
                    self.by_key.remove(&stats.key);
                }
            }
        }
    }
}
