//! Per-domain observability: request statistics recorded on the hot path without locks, their
//! Prometheus exposition (native and ingress-nginx compatible), live per-host stats, and the
//! access log.
//!
//! Statistics are kept per route (host + Ingress + Service + path as configured, never the raw
//! URL, so the number of series is bounded by the configuration) and within a route per method,
//! status and canary. Counters are sharded per thread and summed when read.

mod access_log;
mod clock;
mod histogram;
mod prometheus;
mod rate;
mod registry;
mod route;
mod shard;
mod stats;
mod text_format;

pub use access_log::{AccessEntry, AccessLog, AccessLogFormat, AccessLogTarget};
pub use histogram::{LATENCY_BOUNDS, SIZE_BOUNDS};
pub use route::{DEFAULT_SERVER, Observation, RouteKey, RouteStats, method_index};
pub use stats::{HostStats, Percentiles, StatsView};
pub use text_format::CONTENT_TYPE as PROMETHEUS_CONTENT_TYPE;

use registry::Registry;
use sluice_model::{Route, Snapshot, VirtualHost};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// What the exposition needs besides the request statistics.
#[derive(Debug, Clone, Default)]
pub struct MetricsOptions {
    /// `--metrics-compat ingress-nginx`.
    pub compat_ingress_nginx: bool,
    /// ingress-nginx's constant labels `controller_class`, `controller_namespace`,
    /// `controller_pod`.
    pub controller_class: String,
    pub controller_namespace: String,
    pub controller_pod: String,
    /// The `class` label of `ssl_expire_time_seconds`.
    pub ingress_class: String,
}

/// The Tengine-Ingress controller counters of tengine-extensions.md section 7, when the
/// checksum gate and referrer checks report them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TengineCounters {
    pub ing_checksum_success: u64,
    pub ing_checksum_errors: u64,
    pub secret_checksum_success: u64,
    pub secret_checksum_errors: u64,
    pub sslcert_verify_fail: u64,
    pub ing_referrer_verify_fail: u64,
    pub canary_referrer_verify_fail: u64,
    pub canary_num_limit_exceeded: u64,
}

/// The configuration side of `/metrics`.
#[derive(Debug, Clone)]
pub struct ConfigState<'a> {
    pub snapshot: &'a Snapshot,
    pub applied_at: SystemTime,
    pub apply_duration: Duration,
    pub rejected: usize,
    pub warnings: usize,
    pub tengine: Option<TengineCounters>,
}

/// Shared by the data plane (writes), the apply loop (refresh) and the admin API (reads).
pub struct Metrics {
    registry: Registry,
    started: Instant,
    options: MetricsOptions,
    access_log: Option<AccessLog>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("options", &self.options)
            .field("access_log", &self.access_log)
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(MetricsOptions::default())
    }
}

impl Metrics {
    pub fn new(options: MetricsOptions) -> Metrics {
        Metrics {
            registry: Registry::default(),
            started: Instant::now(),
            options,
            access_log: None,
        }
    }

    pub fn with_access_log(mut self, log: AccessLog) -> Metrics {
        self.access_log = Some(log);
        self
    }

    pub fn access_log(&self) -> Option<&AccessLog> {
        self.access_log.as_ref()
    }

    /// Call after every snapshot swap: indexes the new routes and drops the series of routes
    /// that are gone.
    pub fn refresh(&self, snapshot: &Arc<Snapshot>) {
        self.registry.refresh(snapshot);
    }

    /// Like [`Metrics::refresh`], given which hosts changed since the snapshot indexed last
    /// (the one numbered `snapshot.version - 1`): only those are indexed again. With another
    /// predecessor it indexes everything.
    pub fn refresh_changed(&self, snapshot: &Arc<Snapshot>, changes: &sluice_model::HostChanges) {
        self.registry.refresh_changed(snapshot, changes);
    }

    /// The stats of the route a request matched in `snapshot` (`route` is `None` when no path
    /// of `vhost` matched). `None` only for a route of a replaced snapshot that no longer
    /// exists.
    pub fn route_stats(
        &self,
        snapshot: &Arc<Snapshot>,
        vhost: &VirtualHost,
        route: Option<&Route>,
    ) -> Option<Arc<RouteStats>> {
        self.registry.lookup(snapshot, vhost, route)
    }

    /// Counts one finished request.
    pub fn record(&self, stats: &RouteStats, observation: &Observation, finished: Instant) {
        stats.record(observation, self.second(finished));
    }

    /// Counts an upstream that failed (502) or timed out (504).
    pub fn upstream_failed(&self, stats: &RouteStats, timeout: bool) {
        stats.upstream_failed(timeout);
    }

    fn second(&self, at: Instant) -> u32 {
        at.saturating_duration_since(self.started).as_secs() as u32
    }

    fn readouts(&self, host: Option<&str>) -> Vec<route::RouteReadout> {
        let now = self.second(Instant::now());
        let stats = self.registry.all(host);
        let mut readouts: Vec<_> = stats.iter().map(|s| s.readout(now)).collect();
        // Stats are made with a route's first request; a host that has served none is still
        // listed when asked for by name, with zeros, as long as it is configured.
        if let Some(host) = host
            && readouts.is_empty()
            && let Some(key) = self.registry.indexed_host(host)
        {
            readouts.push(RouteStats::new(key).readout(now));
        }
        readouts
    }

    /// The `/metrics` body (text format 0.0.4, [`PROMETHEUS_CONTENT_TYPE`]).
    pub fn render_prometheus(&self, config: &ConfigState<'_>) -> String {
        prometheus::render(
            &self.readouts(None),
            config,
            &self.options,
            self.access_log.as_ref().map(AccessLog::dropped),
        )
    }

    /// `/api/v1/stats`, optionally of one host (as configured).
    pub fn stats(&self, host: Option<&str>) -> StatsView {
        stats::build(&self.readouts(host), self.started.elapsed().as_secs(), host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_model::{
        BackendKey, BackendSlot, Endpoints, HostTable, ObjectKind, ObjectRef, PathMatch,
        RoutePolicy, RouteTarget, ServicePortRef,
    };

    fn route(ingress: &str, service: &str, path: &str) -> Route {
        Route {
            path: PathMatch::prefix(path),
            target: RouteTarget::Backend(Arc::new(BackendSlot::new(
                BackendKey {
                    namespace: "ns".into(),
                    service: service.into(),
                    port: ServicePortRef::Number(80),
                },
                Endpoints::Ready(Vec::new()),
            ))),
            policy: Arc::new(RoutePolicy::default()),
            ingress: Arc::new(ObjectRef::new(ObjectKind::Ingress, "ns", ingress)),
        }
    }

    fn snapshot(version: u64, hosts: &[&str]) -> Arc<Snapshot> {
        let mut table = HostTable::default();
        for host in hosts {
            table.insert(Arc::new(VirtualHost {
                name: host.to_string(),
                routes: vec![route(&format!("ing-{host}"), "svc", "/")],
                ..VirtualHost::default()
            }));
        }
        Arc::new(Snapshot {
            version,
            hosts: table,
            ..Snapshot::default()
        })
    }

    fn observation(status: u16) -> Observation {
        Observation {
            method: method_index("GET"),
            status,
            canary: false,
            request_bytes: 3,
            response_bytes: 7,
            duration: Duration::from_millis(2),
            upstream: Some(Duration::from_millis(1)),
        }
    }

    fn hit(metrics: &Metrics, snapshot: &Arc<Snapshot>, host: &str, status: u16) -> bool {
        let vhost = snapshot.hosts.lookup(host);
        match metrics.route_stats(snapshot, vhost, vhost.routes.first()) {
            Some(stats) => {
                metrics.record(&stats, &observation(status), Instant::now());
                true
            }
            None => false,
        }
    }

    fn config(snapshot: &Snapshot) -> ConfigState<'_> {
        ConfigState {
            snapshot,
            applied_at: SystemTime::UNIX_EPOCH,
            apply_duration: Duration::ZERO,
            rejected: 0,
            warnings: 0,
            tengine: None,
        }
    }

    #[test]
    fn counts_survive_swaps_and_gone_routes_disappear() {
        let metrics = Metrics::default();
        let first = snapshot(1, &["a.test", "b.test"]);
        metrics.refresh(&first);
        assert!(hit(&metrics, &first, "a.test", 200));
        assert!(hit(&metrics, &first, "b.test", 503));
        let text = metrics.render_prometheus(&config(&first));
        assert!(text.contains("sluice_http_requests_total{host=\"b.test\",namespace=\"ns\",ingress=\"ing-b.test\",service=\"svc\",path=\"/\",method=\"GET\",code=\"503\",canary=\"false\"} 1\n"), "{text}");

        // The same routes rebuilt (new objects, same labels) keep their counts; b.test is gone.
        let second = snapshot(2, &["a.test"]);
        metrics.refresh(&second);
        assert!(hit(&metrics, &second, "a.test", 200));
        let stats = metrics.stats(None);
        assert_eq!(stats.hosts.len(), 1);
        assert_eq!(stats.hosts[0].host, "a.test");
        assert_eq!(stats.hosts[0].requests, 2);
        assert_eq!(stats.hosts[0].bytes_in, 6);
        assert_eq!(stats.hosts[0].bytes_out, 14);
        let text = metrics.render_prometheus(&config(&second));
        assert!(!text.contains("b.test"), "{text}");

        // A request still holding the old snapshot counts for a route that survived, and does
        // not bring back one that is gone.
        assert!(hit(&metrics, &first, "a.test", 200));
        assert!(!hit(&metrics, &first, "b.test", 200));
        assert!(
            !metrics
                .render_prometheus(&config(&second))
                .contains("b.test")
        );
        assert_eq!(metrics.stats(Some("a.test")).hosts[0].requests, 3);
    }

    #[test]
    fn hosts_kept_by_a_new_snapshot_keep_their_index_and_counts() {
        let metrics = Metrics::default();
        let first = snapshot(1, &["a.test", "b.test"]);
        metrics.refresh(&first);
        assert!(hit(&metrics, &first, "a.test", 200));
        assert!(hit(&metrics, &first, "b.test", 200));
        // Incremental translation: a.test is the very same host, b.test rebuilt with the same
        // labels (its old entry is released after the new one holds the key).
        let mut hosts = HostTable::default();
        hosts.insert(first.hosts.lookup("a.test").clone());
        hosts.insert(snapshot(0, &["b.test"]).hosts.lookup("b.test").clone());
        let second = Arc::new(Snapshot {
            version: 2,
            hosts,
            ..Snapshot::default()
        });
        metrics.refresh(&second);
        assert!(hit(&metrics, &second, "a.test", 200));
        assert!(hit(&metrics, &second, "b.test", 200));
        assert_eq!(metrics.stats(Some("a.test")).hosts[0].requests, 2);
        assert_eq!(metrics.stats(Some("b.test")).hosts[0].requests, 2);
        // b.test gone for good: its series vanish even though a.test is reused again.
        let mut hosts = HostTable::default();
        hosts.insert(first.hosts.lookup("a.test").clone());
        let third = Arc::new(Snapshot {
            version: 3,
            hosts,
            ..Snapshot::default()
        });
        metrics.refresh(&third);
        assert!(hit(&metrics, &third, "a.test", 200));
        assert_eq!(metrics.stats(Some("a.test")).hosts[0].requests, 3);
        let text = metrics.render_prometheus(&config(&third));
        assert!(!text.contains("b.test"), "{text}");
        assert!(!hit(&metrics, &second, "b.test", 200));
    }

    #[test]
    fn refreshing_only_the_changed_hosts_indexes_like_a_full_refresh() {
        let metrics = Metrics::default();
        let first = snapshot(1, &["a.test", "b.test"]);
        let all: Vec<_> = first.hosts.iter().cloned().collect();
        metrics.refresh_changed(
            &first,
            &sluice_model::HostChanges {
                removed: Vec::new(),
                added: all,
            },
        );
        assert!(hit(&metrics, &first, "a.test", 200));
        assert!(hit(&metrics, &first, "b.test", 200));
        // b.test replaced by c.test; a.test is the same host.
        let mut hosts = HostTable::default();
        hosts.default = first.hosts.default.clone();
        hosts.insert(first.hosts.lookup("a.test").clone());
        let c = snapshot(0, &["c.test"]).hosts.lookup("c.test").clone();
        hosts.insert(c.clone());
        let second = Arc::new(Snapshot {
            version: 2,
            hosts,
            ..Snapshot::default()
        });
        let changes = sluice_model::HostChanges {
            removed: vec![first.hosts.lookup("b.test").clone()],
            added: vec![c],
        };
        metrics.refresh_changed(&second, &changes);
        assert!(hit(&metrics, &second, "a.test", 200));
        assert!(hit(&metrics, &second, "c.test", 200));
        assert_eq!(metrics.stats(Some("a.test")).hosts[0].requests, 2);
        let text = metrics.render_prometheus(&config(&second));
        assert!(!text.contains("b.test"), "{text}");
        assert!(text.contains("host=\"c.test\""), "{text}");
        // A snapshot that does not follow the indexed one is indexed in full.
        let unrelated = snapshot(7, &["d.test"]);
        metrics.refresh_changed(&unrelated, &sluice_model::HostChanges::default());
        assert!(hit(&metrics, &unrelated, "d.test", 200));
        let text = metrics.render_prometheus(&config(&unrelated));
        assert!(!text.contains("c.test"), "{text}");
    }

    #[test]
    fn a_snapshot_not_yet_indexed_still_counts() {
        let metrics = Metrics::default();
        let first = snapshot(1, &["a.test"]);
        metrics.refresh(&first);
        // Swapped in, not yet refreshed: found by labels, created when new.
        let second = snapshot(2, &["a.test", "c.test"]);
        assert!(hit(&metrics, &second, "a.test", 200));
        assert!(hit(&metrics, &second, "c.test", 200));
        metrics.refresh(&second);
        assert!(hit(&metrics, &second, "c.test", 200));
        let stats = metrics.stats(None);
        let requests: Vec<(String, u64)> = stats
            .hosts
            .iter()
            .map(|h| (h.host.clone(), h.requests))
            .collect();
        assert_eq!(
            requests,
            [("c.test".to_string(), 2), ("a.test".to_string(), 1)]
        );
    }

    #[test]
    fn routes_get_stats_with_their_first_request() {
        let metrics = Metrics::default();
        let first = snapshot(1, &["a.test", "b.test", "c.test"]);
        metrics.refresh(&first);
        assert!(metrics.registry.all(None).is_empty());
        assert!(hit(&metrics, &first, "a.test", 200));
        let keys: Vec<String> = metrics
            .registry
            .all(None)
            .iter()
            .map(|s| format!("{}{}", s.key.host, s.key.path))
            .collect();
        assert_eq!(keys, ["a.test/"]);
        // Rebuilt hosts: an idle one still holds nothing, a busy one keeps its counts.
        let second = snapshot(2, &["a.test", "b.test", "c.test"]);
        let changes = sluice_model::HostChanges {
            removed: first.hosts.iter().cloned().collect(),
            added: second.hosts.iter().cloned().collect(),
        };
        metrics.refresh_changed(&second, &changes);
        assert_eq!(metrics.registry.all(None).len(), 1);
        assert!(hit(&metrics, &second, "a.test", 200));
        assert_eq!(metrics.stats(Some("a.test")).hosts[0].requests, 2);
        // An idle host asked for by name is listed with zeros; an unknown one is not.
        let idle = metrics.stats(Some("B.test"));
        assert_eq!(idle.hosts.len(), 1);
        assert_eq!(idle.hosts[0].host, "b.test");
        assert_eq!(idle.hosts[0].requests, 0);
        assert!(metrics.stats(Some("nowhere.test")).hosts.is_empty());
        assert_eq!(metrics.stats(None).hosts.len(), 1);
    }

    #[test]
    fn the_fallback_counts_under_its_own_labels() {
        let metrics = Metrics::default();
        let mut vhost = VirtualHost {
            name: "a.test".into(),
            routes: vec![route("ing-a", "svc", "/api")],
            fallback: Some(route("ing-a", "default-svc", "")),
            ..VirtualHost::default()
        };
        vhost.routes.push(route("ing-a", "svc", "/web"));
        let mut hosts = HostTable::default();
        hosts.insert(Arc::new(vhost));
        let s = Arc::new(Snapshot {
            version: 1,
            hosts,
            ..Snapshot::default()
        });
        metrics.refresh(&s);
        let vhost = s.hosts.lookup("a.test");
        for route in [
            vhost.fallback.as_ref(),
            vhost.routes.get(1),
            vhost.fallback.as_ref(),
        ] {
            let stats = metrics.route_stats(&s, vhost, route).expect("stats");
            metrics.record(&stats, &observation(200), Instant::now());
        }
        let text = metrics.render_prometheus(&config(&s));
        assert!(text.contains("sluice_http_requests_total{host=\"a.test\",namespace=\"ns\",ingress=\"ing-a\",service=\"default-svc\",path=\"\",method=\"GET\",code=\"200\",canary=\"false\"} 2\n"), "{text}");
        assert!(
            text.contains(
                "service=\"svc\",path=\"/web\",method=\"GET\",code=\"200\",canary=\"false\"} 1\n"
            ),
            "{text}"
        );
        assert!(!text.contains("path=\"/api\""), "{text}");
    }

    #[test]
    fn threads_racing_on_a_first_request_share_one_stats() {
        let metrics = Arc::new(Metrics::default());
        let s = snapshot(1, &["a.test"]);
        metrics.refresh(&s);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (metrics, s) = (metrics.clone(), s.clone());
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        assert!(hit(&metrics, &s, "a.test", 200));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("recording thread");
        }
        assert_eq!(metrics.registry.all(None).len(), 1);
        assert_eq!(metrics.stats(Some("a.test")).hosts[0].requests, 2000);
    }

    #[test]
    fn requests_matching_no_path_count_under_their_host() {
        let metrics = Metrics::default();
        let s = snapshot(1, &["a.test"]);
        metrics.refresh(&s);
        for host in ["a.test", "unknown.test"] {
            let vhost = s.hosts.lookup(host);
            let stats = metrics.route_stats(&s, vhost, None).expect("host stats");
            metrics.record(&stats, &observation(404), Instant::now());
        }
        let text = metrics.render_prometheus(&config(&s));
        assert!(text.contains("host=\"a.test\",namespace=\"\",ingress=\"\",service=\"\",path=\"\",method=\"GET\",code=\"404\""), "{text}");
        assert!(text.contains("host=\"_\",namespace=\"\""), "{text}");
    }
}
