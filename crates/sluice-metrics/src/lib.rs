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

    fn readouts(&self) -> Vec<route::RouteReadout> {
        let now = self.second(Instant::now());
        self.registry.all().iter().map(|s| s.readout(now)).collect()
    }

    /// The `/metrics` body (text format 0.0.4, [`PROMETHEUS_CONTENT_TYPE`]).
    pub fn render_prometheus(&self, config: &ConfigState<'_>) -> String {
        prometheus::render(
            &self.readouts(),
            config,
            &self.options,
            self.access_log.as_ref().map(AccessLog::dropped),
        )
    }

    /// `/api/v1/stats`, optionally of one host (as configured).
    pub fn stats(&self, host: Option<&str>) -> StatsView {
        stats::build(&self.readouts(), self.started.elapsed().as_secs(), host)
    }
}
