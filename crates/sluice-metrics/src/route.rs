//! The statistics of one route (host + Ingress + Service + path as configured), split into
//! series by method, status and canary, each series sharded per thread.

use crate::histogram::{
    AtomicHistogram, Counts, LATENCY_BUCKETS, LatencyCounts, SIZE_BUCKETS, SizeCounts,
};
use crate::rate::{SecondCounts, SecondRing};
use crate::shard::{Padded, shard_index, shards};
use arc_swap::ArcSwap;
use sluice_model::{Route, VirtualHost};
use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

/// What labels a route's series: the configured host (`_` for the default server), the Ingress,
/// its Service and the path as written in the Ingress. Empty Ingress/Service/path stand for
/// requests to the host that matched no path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RouteKey {
    pub host: Arc<str>,
    pub namespace: Arc<str>,
    pub ingress: Arc<str>,
    pub service: Arc<str>,
    pub path: Arc<str>,
}

/// The label value of the default server (requests whose host no rule names), as nginx names
/// its catch-all server.
pub const DEFAULT_SERVER: &str = "_";

impl RouteKey {
    pub fn of(vhost: &VirtualHost, route: Option<&Route>) -> RouteKey {
        RouteLabels::of(vhost, route).to_key()
    }

    /// The `host` label of a virtual host.
    pub fn host_of(vhost: &VirtualHost) -> Arc<str> {
        RouteLabels::of(vhost, None).0[0].into()
    }
}

impl Hash for RouteKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.labels().hash(state);
    }
}

/// A route's five labels, as a [`RouteKey`] owns them or as a snapshot's route has them, so the
/// registry can look up the stats of a route without building its key first.
pub(crate) trait Labels {
    fn labels(&self) -> [&str; 5];
}

impl Labels for RouteKey {
    fn labels(&self) -> [&str; 5] {
        [
            &self.host,
            &self.namespace,
            &self.ingress,
            &self.service,
            &self.path,
        ]
    }
}

/// The labels of a route of a snapshot (or of its host's unmatched requests), borrowed from it.
pub(crate) struct RouteLabels<'a>(pub(crate) [&'a str; 5]);

impl<'a> RouteLabels<'a> {
    pub(crate) fn of(vhost: &'a VirtualHost, route: Option<&'a Route>) -> RouteLabels<'a> {
        let host = if vhost.name.is_empty() {
            DEFAULT_SERVER
        } else {
            vhost.name.as_str()
        };
        RouteLabels(match route {
            Some(route) => [
                host,
                &route.ingress.namespace,
                &route.ingress.name,
                &route.backend().key.service,
                route.path.as_str(),
            ],
            None => [host, "", "", "", ""],
        })
    }
}

impl RouteLabels<'_> {
    pub(crate) fn to_key(&self) -> RouteKey {
        let [host, namespace, ingress, service, path] = self.0;
        RouteKey {
            host: host.into(),
            namespace: namespace.into(),
            ingress: ingress.into(),
            service: service.into(),
            path: path.into(),
        }
    }
}

impl Labels for RouteLabels<'_> {
    fn labels(&self) -> [&str; 5] {
        self.0
    }
}

impl<'a> Borrow<dyn Labels + 'a> for RouteKey {
    fn borrow(&self) -> &(dyn Labels + 'a) {
        self
    }
}

impl Hash for dyn Labels + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.labels().hash(state);
    }
}

impl PartialEq for dyn Labels + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.labels() == other.labels()
    }
}

impl Eq for dyn Labels + '_ {}

/// Methods get a label of their own; anything else is `OTHER`, so a client cannot grow the
/// number of series by inventing methods.
pub const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE", "OTHER",
];

pub fn method_index(method: &str) -> u8 {
    METHODS[..METHODS.len() - 1]
        .iter()
        .position(|m| *m == method)
        .unwrap_or(METHODS.len() - 1) as u8
}

/// One request as the data plane saw it.
#[derive(Debug, Clone, Copy)]
pub struct Observation {
    pub method: u8,
    pub status: u16,
    /// Set when the canary backend served the request.
    pub canary: bool,
    /// Body bytes received from the client.
    pub request_bytes: u64,
    /// Body bytes sent to the client.
    pub response_bytes: u64,
    /// From the request head to the last response byte handed to the connection.
    pub duration: Duration,
    /// From sending the request upstream to the upstream's response head; `None` when no
    /// upstream answered (Sluice answered itself, or the upstream failed).
    pub upstream: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesKey {
    pub method: u8,
    pub status: u16,
    pub canary: bool,
}

#[derive(Debug, Default)]
struct SeriesShard {
    duration: AtomicHistogram<LATENCY_BUCKETS>,
    upstream: AtomicHistogram<LATENCY_BUCKETS>,
    request_size: AtomicHistogram<SIZE_BUCKETS>,
    response_size: AtomicHistogram<SIZE_BUCKETS>,
}

#[derive(Debug)]
struct Series {
    key: SeriesKey,
    shards: Box<[Padded<SeriesShard>]>,
}

/// A series read out of its shards. Request count and byte totals are the histograms' counts
/// and sums.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesReadout {
    pub key: SeriesKey,
    pub duration: LatencyCounts,
    pub upstream: LatencyCounts,
    pub request_size: SizeCounts,
    pub response_size: SizeCounts,
}

#[derive(Debug, Default)]
struct RateShard {
    requests: SecondRing,
    server_errors: SecondRing,
}

#[derive(Debug)]
pub struct RouteStats {
    pub key: RouteKey,
    /// Copy-on-write: a route sees a handful of (method, status) pairs, all within its first
    /// requests; after that every request only reads.
    series: ArcSwap<Vec<Arc<Series>>>,
    adding: Mutex<()>,
    /// Allocated with the first request: a configuration of many hosts costs little for the
    /// routes that see no traffic.
    rates: OnceLock<Box<[Padded<RateShard>]>>,
    upstream_failures: AtomicU64,
    upstream_timeouts: AtomicU64,
}

/// Everything about a route at one instant, for the exposition and the stats API.
#[derive(Debug, Clone)]
pub struct RouteReadout {
    pub key: RouteKey,
    pub series: Vec<SeriesReadout>,
    pub requests_per_second: SecondCounts,
    pub server_errors_per_second: SecondCounts,
    pub upstream_failures: u64,
    pub upstream_timeouts: u64,
}

impl RouteStats {
    pub(crate) fn new(key: RouteKey) -> RouteStats {
        RouteStats {
            key,
            series: ArcSwap::from_pointee(Vec::new()),
            adding: Mutex::new(()),
            rates: OnceLock::new(),
            upstream_failures: AtomicU64::new(0),
            upstream_timeouts: AtomicU64::new(0),
        }
    }

    pub(crate) fn record(&self, o: &Observation, second: u32) {
        let key = SeriesKey {
            method: o.method,
            status: o.status,
            canary: o.canary,
        };
        let shard = shard_index();
        let list = self.series.load();
        let series = match list.iter().find(|s| s.key == key) {
            Some(series) => series,
            None => {
                drop(list);
                return self.record_new_series(key, o, second);
            }
        };
        observe(&series.shards[shard].0, o);
        self.count_rate(shard, o.status, second);
    }

    #[cold]
    fn record_new_series(&self, key: SeriesKey, o: &Observation, second: u32) {
        let series = {
            let _adding = self.adding.lock().unwrap_or_else(PoisonError::into_inner);
            let list = self.series.load_full();
            match list.iter().find(|s| s.key == key) {
                Some(series) => series.clone(),
                None => {
                    let series = Arc::new(Series {
                        key,
                        shards: shards(),
                    });
                    let mut next = Vec::with_capacity(list.len() + 1);
                    next.extend(list.iter().cloned());
                    next.push(series.clone());
                    self.series.store(Arc::new(next));
                    series
                }
            }
        };
        let shard = shard_index();
        observe(&series.shards[shard].0, o);
        self.count_rate(shard, o.status, second);
    }

    fn count_rate(&self, shard: usize, status: u16, second: u32) {
        let rates = &self.rates.get_or_init(shards)[shard].0;
        rates.requests.bump(second);
        if status >= 500 {
            rates.server_errors.bump(second);
        }
    }

    pub(crate) fn upstream_failed(&self, timeout: bool) {
        if timeout {
            self.upstream_timeouts.fetch_add(1, Relaxed);
        } else {
            self.upstream_failures.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn readout(&self, now_second: u32) -> RouteReadout {
        let mut series: Vec<SeriesReadout> = self
            .series
            .load()
            .iter()
            .map(|s| {
                let shards = || s.shards.iter().map(|p| &p.0);
                SeriesReadout {
                    key: s.key,
                    duration: Counts::gather(shards().map(|x| &x.duration)),
                    upstream: Counts::gather(shards().map(|x| &x.upstream)),
                    request_size: Counts::gather(shards().map(|x| &x.request_size)),
                    response_size: Counts::gather(shards().map(|x| &x.response_size)),
                }
            })
            .collect();
        series.sort_by_key(|s| s.key);
        let mut requests_per_second = SecondCounts::default();
        let mut server_errors_per_second = SecondCounts::default();
        for rate in self.rates.get().into_iter().flat_map(|r| r.iter()) {
            requests_per_second.add_ring(&rate.0.requests, now_second);
            server_errors_per_second.add_ring(&rate.0.server_errors, now_second);
        }
        RouteReadout {
            key: self.key.clone(),
            series,
            requests_per_second,
            server_errors_per_second,
            upstream_failures: self.upstream_failures.load(Relaxed),
            upstream_timeouts: self.upstream_timeouts.load(Relaxed),
        }
    }
}

fn observe(shard: &SeriesShard, o: &Observation) {
    shard.duration.observe_ns(saturating_ns(o.duration));
    if let Some(upstream) = o.upstream {
        shard.upstream.observe_ns(saturating_ns(upstream));
    }
    shard.request_size.observe_bytes(o.request_bytes);
    shard.response_size.observe_bytes(o.response_bytes);
}

fn saturating_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
