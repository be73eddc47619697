//! `/api/v1/stats`: live per-domain numbers for people (and the dashboard), summed over each
//! host's routes.

use crate::histogram::{LATENCY_BOUNDS, LatencyCounts};
use crate::rate::SecondCounts;
use crate::route::RouteReadout;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsView {
    /// Seconds since the data plane started counting.
    pub uptime_seconds: u64,
    /// Upper bounds (ms) of the latency buckets of [`HostStats::latency_buckets`]; the last
    /// bucket has no upper bound.
    pub latency_bounds_ms: Vec<f64>,
    /// Busiest first (requests in the last 60 s, then in total), then by name.
    pub hosts: Vec<HostStats>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostStats {
    /// As configured (`*.foo.com` for a wildcard rule, `_` for the default server).
    pub host: String,
    /// Requests per second over the last complete second, 10 seconds, 60 seconds.
    pub qps_1s: f64,
    pub qps_10s: f64,
    pub qps_60s: f64,
    /// Requests since the host's routes appeared.
    pub requests: u64,
    /// Requests in the last 60 s, the current second included.
    pub requests_60s: u64,
    /// Share of answers that were not 5xx over the last 60 s; `null` without requests.
    pub success_rate_60s: Option<f64>,
    /// Share of answers that were not 5xx since the routes appeared; `null` without requests.
    pub success_rate: Option<f64>,
    /// Requests by status code, since the routes appeared.
    pub statuses: BTreeMap<u16, u64>,
    /// Request duration percentiles in milliseconds (interpolated within histogram buckets),
    /// since the routes appeared.
    pub latency_ms: Percentiles,
    /// Upstream response-head time percentiles in milliseconds.
    pub upstream_latency_ms: Percentiles,
    /// Request durations per latency bucket (not cumulative), since the routes appeared: the
    /// difference of two readings gives the percentiles of the time between them.
    pub latency_buckets: Vec<u64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Upstream failures and timeouts (answered 502/504).
    pub upstream_errors: u64,
    /// Requests per second for each of the last 60 complete seconds, oldest first.
    pub qps_history: Vec<u64>,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
}

impl Percentiles {
    fn of(c: &LatencyCounts) -> Percentiles {
        let ms = |q| c.quantile(&LATENCY_BOUNDS, q).map(|s| round3(s * 1000.0));
        Percentiles {
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
        }
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[derive(Default)]
struct HostTotals {
    requests: u64,
    server_errors: u64,
    statuses: BTreeMap<u16, u64>,
    latency: LatencyCounts,
    upstream: LatencyCounts,
    bytes_in: u64,
    bytes_out: u64,
    upstream_errors: u64,
    per_second: SecondCounts,
    errors_per_second: SecondCounts,
}

pub(crate) fn build(routes: &[RouteReadout], uptime_seconds: u64, host: Option<&str>) -> StatsView {
    let mut by_host: BTreeMap<&str, HostTotals> = BTreeMap::new();
    for r in routes {
        if host.is_some_and(|h| !h.eq_ignore_ascii_case(&r.key.host)) {
            continue;
        }
        let totals = by_host.entry(&r.key.host).or_default();
        for s in &r.series {
            let n = s.duration.count();
            totals.requests += n;
            if s.key.status >= 500 {
                totals.server_errors += n;
            }
            *totals.statuses.entry(s.key.status).or_default() += n;
            totals.latency.merge(&s.duration);
            totals.upstream.merge(&s.upstream);
            totals.bytes_in += s.request_size.sum;
            totals.bytes_out += s.response_size.sum;
        }
        totals.upstream_errors += r.upstream_failures + r.upstream_timeouts;
        totals.per_second.merge(&r.requests_per_second);
        totals.errors_per_second.merge(&r.server_errors_per_second);
    }
    let mut hosts: Vec<HostStats> = by_host
        .into_iter()
        .filter(|(_, t)| t.requests > 0 || host.is_some())
        .map(|(name, t)| {
            let recent = t.per_second.total_recent(60);
            let recent_errors = t.errors_per_second.total_recent(60);
            let rate = |ok: u64, all: u64| (all > 0).then(|| round3(ok as f64 / all as f64));
            HostStats {
                host: name.to_string(),
                qps_1s: round3(t.per_second.per_second(1)),
                qps_10s: round3(t.per_second.per_second(10)),
                qps_60s: round3(t.per_second.per_second(60)),
                requests: t.requests,
                requests_60s: recent,
                success_rate_60s: rate(recent.saturating_sub(recent_errors), recent),
                success_rate: rate(t.requests - t.server_errors, t.requests),
                statuses: t.statuses,
                latency_ms: Percentiles::of(&t.latency),
                upstream_latency_ms: Percentiles::of(&t.upstream),
                latency_buckets: t.latency.buckets.to_vec(),
                bytes_in: t.bytes_in,
                bytes_out: t.bytes_out,
                upstream_errors: t.upstream_errors,
                qps_history: t.per_second.counts[1..=60].iter().rev().copied().collect(),
            }
        })
        .collect();
    hosts.sort_by(|a, b| {
        b.requests_60s
            .cmp(&a.requests_60s)
            .then(b.requests.cmp(&a.requests))
            .then_with(|| a.host.cmp(&b.host))
    });
    StatsView {
        uptime_seconds,
        latency_bounds_ms: LATENCY_BOUNDS.iter().map(|b| b * 1000.0).collect(),
        hosts,
    }
}
