//! `/metrics`: Sluice's own `sluice_*` families, and with `--metrics-compat ingress-nginx` the
//! `nginx_ingress_controller_*` families with ingress-nginx's names, labels and buckets.
//!
//! Written by hand in text format 0.0.4 rather than with a client library's OpenMetrics
//! encoder: the compat families must look exactly like ingress-nginx's (counters without
//! `_total`, Go's float spelling in `le`), and one response cannot mix the two formats.

use crate::histogram::{LATENCY_BOUNDS, LatencyCounts, SIZE_BOUNDS, SizeCounts};
use crate::route::{DEFAULT_SERVER, METHODS, RouteReadout, SeriesKey};
use crate::text_format::TextWriter;
use crate::{ConfigState, MetricsOptions, TengineCounters};
use std::collections::BTreeMap;
use std::time::UNIX_EPOCH;

const NS_PER_S: f64 = 1e9;

/// Prometheus' default buckets: ingress-nginx's `--time-buckets`.
const COMPAT_TIME_BOUNDS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// ingress-nginx's `--length-buckets` (request_size, response_size).
const COMPAT_LENGTH_BOUNDS: [f64; 10] =
    [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0];
/// ingress-nginx's `--size-buckets` (bytes_sent).
const COMPAT_SIZE_BOUNDS: [f64; 7] = [10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7];

fn status_text(status: u16) -> String {
    status.to_string()
}

fn method_text(key: &SeriesKey) -> &'static str {
    METHODS
        .get(usize::from(key.method))
        .copied()
        .unwrap_or("OTHER")
}

pub(crate) fn render(
    routes: &[RouteReadout],
    config: &ConfigState<'_>,
    options: &MetricsOptions,
    access_log_dropped: Option<u64>,
) -> String {
    let mut w = TextWriter::default();
    native_requests(&mut w, routes);
    native_config(&mut w, config);
    native_certificates(&mut w, config);
    if let Some(dropped) = access_log_dropped {
        w.family(
            "sluice_access_log_dropped_total",
            "counter",
            "Access log entries dropped because the writer could not keep up.",
        );
        w.sample("sluice_access_log_dropped_total", &[], dropped);
    }
    if let Some(counters) = &config.tengine {
        native_tengine(&mut w, counters);
    }
    if options.compat_ingress_nginx {
        let compat = Compat::new(options);
        compat.requests(&mut w, routes);
        compat.config(&mut w, config);
        if let Some(counters) = &config.tengine {
            compat.tengine(&mut w, counters);
        }
    }
    w.out
}

fn route_labels(r: &RouteReadout) -> [(&'static str, &str); 5] {
    [
        ("host", &r.key.host),
        ("namespace", &r.key.namespace),
        ("ingress", &r.key.ingress),
        ("service", &r.key.service),
        ("path", &r.key.path),
    ]
}

fn native_requests(w: &mut TextWriter, routes: &[RouteReadout]) {
    let active: Vec<&RouteReadout> = routes.iter().filter(|r| !r.series.is_empty()).collect();

    w.family(
        "sluice_http_requests_total",
        "counter",
        "Requests answered, by route (host, Ingress, Service and path as configured), method, status code and whether a canary served them.",
    );
    for r in &active {
        for s in &r.series {
            let status = status_text(s.key.status);
            let mut labels = route_labels(r).to_vec();
            labels.extend([
                ("method", method_text(&s.key)),
                ("code", status.as_str()),
                ("canary", if s.key.canary { "true" } else { "false" }),
            ]);
            w.sample("sluice_http_requests_total", &labels, s.duration.count());
        }
    }

    w.family(
        "sluice_http_request_duration_seconds",
        "histogram",
        "Time from the request head to the last response byte handed to the client connection.",
    );
    for r in &active {
        let mut merged = LatencyCounts::default();
        r.series.iter().for_each(|s| merged.merge(&s.duration));
        latency_histogram(
            w,
            "sluice_http_request_duration_seconds",
            &route_labels(r),
            &merged,
        );
    }

    w.family(
        "sluice_upstream_response_duration_seconds",
        "histogram",
        "Time from sending the request to the upstream to receiving its response head.",
    );
    for r in &active {
        let mut merged = LatencyCounts::default();
        r.series.iter().for_each(|s| merged.merge(&s.upstream));
        if merged.count() > 0 {
            latency_histogram(
                w,
                "sluice_upstream_response_duration_seconds",
                &route_labels(r),
                &merged,
            );
        }
    }

    for (name, help, pick) in [
        (
            "sluice_http_request_body_bytes_total",
            "Request body bytes received from clients.",
            (|s: &crate::route::SeriesReadout| s.request_size.sum) as fn(&_) -> u64,
        ),
        (
            "sluice_http_response_body_bytes_total",
            "Response body bytes sent to clients.",
            |s: &crate::route::SeriesReadout| s.response_size.sum,
        ),
    ] {
        w.family(name, "counter", help);
        for r in &active {
            w.sample(
                name,
                &route_labels(r),
                r.series.iter().map(pick).sum::<u64>(),
            );
        }
    }

    w.family(
        "sluice_upstream_errors_total",
        "counter",
        "Requests whose upstream could not be reached or failed before answering (502), or timed out (504).",
    );
    for r in routes {
        for (kind, n) in [
            ("failure", r.upstream_failures),
            ("timeout", r.upstream_timeouts),
        ] {
            if n > 0 {
                let mut labels = route_labels(r).to_vec();
                labels.push(("kind", kind));
                w.sample("sluice_upstream_errors_total", &labels, n);
            }
        }
    }
}

fn latency_histogram(w: &mut TextWriter, name: &str, labels: &[(&str, &str)], c: &LatencyCounts) {
    let cumulative = c.cumulative_at(&LATENCY_BOUNDS, &LATENCY_BOUNDS);
    w.histogram(
        name,
        labels,
        &LATENCY_BOUNDS,
        &cumulative,
        c.count(),
        c.sum as f64 / NS_PER_S,
    );
}

fn native_config(w: &mut TextWriter, config: &ConfigState<'_>) {
    w.family(
        "sluice_config_snapshot_version",
        "gauge",
        "Version of the routing snapshot being served (one more per applied configuration change).",
    );
    w.sample(
        "sluice_config_snapshot_version",
        &[],
        config.snapshot.version,
    );
    w.family(
        "sluice_config_last_apply_timestamp_seconds",
        "gauge",
        "Unix time of the last configuration apply.",
    );
    let applied = config
        .applied_at
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    w.sample("sluice_config_last_apply_timestamp_seconds", &[], applied);
    w.family(
        "sluice_config_last_apply_duration_seconds",
        "gauge",
        "How long the last configuration apply (translation and swap) took.",
    );
    w.sample(
        "sluice_config_last_apply_duration_seconds",
        &[],
        config.apply_duration.as_secs_f64(),
    );
    w.family(
        "sluice_config_problems",
        "gauge",
        "Problems of the current configuration: rejected objects or fields, and warnings (see /api/v1/problems).",
    );
    w.sample(
        "sluice_config_problems",
        &[("severity", "rejected")],
        config.rejected as u64,
    );
    w.sample(
        "sluice_config_problems",
        &[("severity", "warning")],
        config.warnings as u64,
    );
}

/// Every served certificate's `notAfter`, by SNI name.
fn certificates(config: &ConfigState<'_>) -> Vec<(String, String, String, i64)> {
    let store = &config.snapshot.certificates;
    let mut out = Vec::new();
    let named = store
        .exact
        .iter()
        .map(|(name, set)| (name.clone(), set))
        .chain(
            store
                .wildcard
                .iter()
                .map(|(parent, set)| (format!("*.{parent}"), set)),
        );
    for (host, set) in named {
        for cert in &set.certs {
            if let Some(not_after) = cert.not_after {
                out.push((
                    host.clone(),
                    cert.secret.namespace.clone(),
                    cert.secret.name.clone(),
                    not_after,
                ));
            }
        }
    }
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1 && a.2 == b.2);
    out
}

fn native_certificates(w: &mut TextWriter, config: &ConfigState<'_>) {
    let certs = certificates(config);
    w.family(
        "sluice_ssl_certificate_expiry_timestamp_seconds",
        "gauge",
        "Unix time at which a served certificate expires (its notAfter), by SNI name and Secret.",
    );
    for (host, namespace, secret, not_after) in &certs {
        w.sample(
            "sluice_ssl_certificate_expiry_timestamp_seconds",
            &[("host", host), ("namespace", namespace), ("secret", secret)],
            *not_after as f64,
        );
    }
}

fn native_tengine(w: &mut TextWriter, c: &TengineCounters) {
    w.family(
        "sluice_checksum_success_total",
        "counter",
        "IngressCheckSum / SecretCheckSum verifications that passed.",
    );
    w.sample(
        "sluice_checksum_success_total",
        &[("kind", "ingress")],
        c.ing_checksum_success,
    );
    w.sample(
        "sluice_checksum_success_total",
        &[("kind", "secret")],
        c.secret_checksum_success,
    );
    w.family(
        "sluice_checksum_errors",
        "gauge",
        "Checksum mismatches since the last successful verification (0 after a success).",
    );
    w.sample(
        "sluice_checksum_errors",
        &[("kind", "ingress")],
        c.ing_checksum_errors,
    );
    w.sample(
        "sluice_checksum_errors",
        &[("kind", "secret")],
        c.secret_checksum_errors,
    );
    w.family(
        "sluice_ssl_certificate_verify_failures_total",
        "counter",
        "TLS Secrets whose certificate failed X.509 parsing or validation.",
    );
    w.sample(
        "sluice_ssl_certificate_verify_failures_total",
        &[],
        c.sslcert_verify_fail,
    );
    w.family(
        "sluice_referrer_rejections_total",
        "counter",
        "Ingresses (kind=ingress) and canaries (kind=canary) dropped by the ingress-referrer / canary-referrer check.",
    );
    w.sample(
        "sluice_referrer_rejections_total",
        &[("kind", "ingress")],
        c.ing_referrer_verify_fail,
    );
    w.sample(
        "sluice_referrer_rejections_total",
        &[("kind", "canary")],
        c.canary_referrer_verify_fail,
    );
}

/// ingress-nginx's families. Labels are written sorted by name, as client_golang does.
struct Compat<'a> {
    class: &'a str,
    namespace: &'a str,
    pod: &'a str,
    ingress_class: &'a str,
}

const P: &str = "nginx_ingress_controller_";

impl<'a> Compat<'a> {
    fn new(options: &'a MetricsOptions) -> Self {
        Compat {
            class: &options.controller_class,
            namespace: &options.controller_namespace,
            pod: &options.controller_pod,
            ingress_class: &options.ingress_class,
        }
    }

    fn constant(&self) -> [(&'static str, &'a str); 3] {
        [
            ("controller_class", self.class),
            ("controller_namespace", self.namespace),
            ("controller_pod", self.pod),
        ]
    }

    fn request_labels<'b>(
        &'b self,
        r: &'b RouteReadout,
        key: &SeriesKey,
        status: &'b str,
    ) -> Vec<(&'static str, &'b str)> {
        let mut labels = vec![("canary", if key.canary { "canary" } else { "" })];
        labels.extend(self.constant());
        labels.extend([
            ("host", &*r.key.host),
            ("ingress", &*r.key.ingress),
            ("method", method_text(key)),
            ("namespace", &*r.key.namespace),
            ("path", &*r.key.path),
            ("service", &*r.key.service),
            ("status", status),
        ]);
        labels
    }

    fn requests(&self, w: &mut TextWriter, routes: &[RouteReadout]) {
        // ingress-nginx reports only hosts it serves; the default server is not one.
        let served: Vec<&RouteReadout> = routes
            .iter()
            .filter(|r| !r.series.is_empty() && &*r.key.host != DEFAULT_SERVER)
            .collect();
        let series = || {
            served
                .iter()
                .flat_map(|r| r.series.iter().map(move |s| (*r, s)))
        };

        w.family(
            &format!("{P}requests"),
            "counter",
            "The total number of client requests",
        );
        for (r, s) in series() {
            let status = status_text(s.key.status);
            w.sample(
                &format!("{P}requests"),
                &self.request_labels(r, &s.key, &status),
                s.duration.count(),
            );
        }

        let time = |w: &mut TextWriter,
                    name: &str,
                    help: &str,
                    pick: fn(&crate::route::SeriesReadout) -> &LatencyCounts| {
            w.family(&format!("{P}{name}"), "histogram", help);
            for (r, s) in series() {
                let c = pick(s);
                if c.count() == 0 {
                    continue;
                }
                let status = status_text(s.key.status);
                let cumulative = c.cumulative_at(&LATENCY_BOUNDS, &COMPAT_TIME_BOUNDS);
                w.histogram(
                    &format!("{P}{name}"),
                    &self.request_labels(r, &s.key, &status),
                    &COMPAT_TIME_BOUNDS,
                    &cumulative,
                    c.count(),
                    c.sum as f64 / NS_PER_S,
                );
            }
        };
        time(
            w,
            "request_duration_seconds",
            "The request processing time in milliseconds",
            |s| &s.duration,
        );
        time(
            w,
            "response_duration_seconds",
            "The time spent on receiving the response from the upstream server",
            |s| &s.upstream,
        );

        let size = |w: &mut TextWriter,
                    name: &str,
                    help: &str,
                    bounds: &[f64],
                    pick: fn(&crate::route::SeriesReadout) -> &SizeCounts| {
            w.family(&format!("{P}{name}"), "histogram", help);
            for (r, s) in series() {
                let c = pick(s);
                let status = status_text(s.key.status);
                let cumulative = c.cumulative_at(&SIZE_BOUNDS, bounds);
                w.histogram(
                    &format!("{P}{name}"),
                    &self.request_labels(r, &s.key, &status),
                    bounds,
                    &cumulative,
                    c.count(),
                    c.sum as f64,
                );
            }
        };
        size(
            w,
            "request_size",
            "The request length (including request line, header, and request body)",
            &COMPAT_LENGTH_BOUNDS,
            |s| &s.request_size,
        );
        size(
            w,
            "response_size",
            "The response length (including request line, header, and request body)",
            &COMPAT_LENGTH_BOUNDS,
            |s| &s.response_size,
        );
        size(
            w,
            "bytes_sent",
            "DEPRECATED The number of bytes sent to a client",
            &COMPAT_SIZE_BOUNDS,
            |s| &s.response_size,
        );

        // A summary per Ingress / Service / canary; its quantiles are estimated from the
        // upstream histogram (ingress-nginx keeps a streaming summary).
        let mut latency: BTreeMap<(&str, &str, &str, bool), LatencyCounts> = BTreeMap::new();
        for (r, s) in series() {
            latency
                .entry((
                    &r.key.ingress,
                    &r.key.namespace,
                    &r.key.service,
                    s.key.canary,
                ))
                .or_default()
                .merge(&s.upstream);
        }
        let name = format!("{P}ingress_upstream_latency_seconds");
        w.family(
            &name,
            "summary",
            "DEPRECATED Upstream service latency per Ingress",
        );
        for ((ingress, namespace, service, canary), c) in latency {
            if c.count() == 0 {
                continue;
            }
            let mut labels = vec![("canary", if canary { "canary" } else { "" })];
            labels.extend(self.constant());
            labels.extend([
                ("ingress", ingress),
                ("namespace", namespace),
                ("service", service),
            ]);
            for q in ["0.5", "0.9", "0.99"] {
                let value = c
                    .quantile(&LATENCY_BOUNDS, q.parse().unwrap_or(0.5))
                    .unwrap_or(f64::NAN);
                let mut with_q = labels.clone();
                with_q.push(("quantile", q));
                w.sample(&name, &with_q, value);
            }
            w.sample(&format!("{name}_sum"), &labels, c.sum as f64 / NS_PER_S);
            w.sample(&format!("{name}_count"), &labels, c.count());
        }
    }

    fn config(&self, w: &mut TextWriter, config: &ConfigState<'_>) {
        let constant = self.constant();
        w.family(
            &format!("{P}config_hash"),
            "gauge",
            "Running configuration hash actually set",
        );
        w.sample(
            &format!("{P}config_hash"),
            &constant,
            config.snapshot.version as f64,
        );
        w.family(
            &format!("{P}config_last_reload_successful"),
            "gauge",
            "Whether the last configuration reload attempt was successful",
        );
        w.sample(
            &format!("{P}config_last_reload_successful"),
            &constant,
            1u64,
        );
        w.family(
            &format!("{P}config_last_reload_successful_timestamp_seconds"),
            "gauge",
            "Timestamp of the last successful configuration reload.",
        );
        let applied = config
            .applied_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        w.sample(
            &format!("{P}config_last_reload_successful_timestamp_seconds"),
            &constant,
            applied,
        );

        w.family(
            &format!("{P}ssl_expire_time_seconds"),
            "gauge",
            "Number of seconds since 1970 to the SSL Certificate expire.",
        );
        for (host, namespace, _, not_after) in certificates(config) {
            w.sample(
                &format!("{P}ssl_expire_time_seconds"),
                &[
                    ("class", self.ingress_class),
                    ("host", &host),
                    ("namespace", &namespace),
                ],
                not_after as f64,
            );
        }
    }

    fn tengine(&self, w: &mut TextWriter, c: &TengineCounters) {
        let constant = self.constant();
        for (name, kind, help, value) in [
            (
                "ing_checksum_success",
                "counter",
                "Ingress checksum verifications that passed",
                c.ing_checksum_success,
            ),
            (
                "ing_checksum_errors",
                "gauge",
                "Ingress checksum mismatches since the last success",
                c.ing_checksum_errors,
            ),
            (
                "secret_checksum_success",
                "counter",
                "Secret checksum verifications that passed",
                c.secret_checksum_success,
            ),
            (
                "secret_checksum_errors",
                "gauge",
                "Secret checksum mismatches since the last success",
                c.secret_checksum_errors,
            ),
            (
                "sslcert_verify_fail",
                "counter",
                "Secrets whose certificate failed X.509 validation",
                c.sslcert_verify_fail,
            ),
            (
                "ing_referrer_verify_fail",
                "counter",
                "Ingresses dropped by ingress-referrer",
                c.ing_referrer_verify_fail,
            ),
            (
                "canary_referrer_verify_fail",
                "counter",
                "Canaries dropped by canary-referrer",
                c.canary_referrer_verify_fail,
            ),
            (
                "canary_num_limit_exceeded",
                "counter",
                "Canaries over the limit",
                c.canary_num_limit_exceeded,
            ),
        ] {
            w.family(&format!("{P}{name}"), kind, help);
            w.sample(&format!("{P}{name}"), &constant, value);
        }
    }
}
