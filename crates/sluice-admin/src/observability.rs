//! `/metrics`, `/api/v1/stats` and the dashboard at `/`.

use crate::state::RuntimeState;
use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;
use sluice_metrics::{ConfigState, PROMETHEUS_CONTENT_TYPE, TengineCounters};
use sluice_model::Severity;

const DASHBOARD: &str = include_str!("dashboard.html");

pub(crate) fn metrics(state: &RuntimeState) -> Response<Full<Bytes>> {
    let snapshot = state.snapshot.load();
    let report = state.report.load();
    let count = |severity| {
        report
            .problems
            .iter()
            .filter(|p| p.severity == severity)
            .count()
    };
    let config = ConfigState {
        snapshot: &snapshot,
        applied_at: report.applied_at,
        apply_duration: report.duration,
        rejected: count(Severity::Rejected),
        warnings: count(Severity::Warning),
        tengine: tengine_counters(state),
    };
    let body = state.metrics.render_prometheus(&config);
    with_type(
        Response::new(Full::new(Bytes::from(body))),
        PROMETHEUS_CONTENT_TYPE,
    )
}

/// The checksum and referrer counters of tengine-extensions.md section 7, as the apply loop's
/// checksum gates count them. `sslcert_verify_fail` and `canary_num_limit_exceeded` stay 0:
/// Sluice reports those cases as problems instead.
fn tengine_counters(state: &RuntimeState) -> Option<TengineCounters> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let c = &state.gate_counters;
    let v = |a: &AtomicU64| a.load(Ordering::Relaxed);
    Some(TengineCounters {
        ing_checksum_success: v(&c.ing_checksum_success),
        ing_checksum_errors: v(&c.ing_checksum_errors),
        secret_checksum_success: v(&c.secret_checksum_success),
        secret_checksum_errors: v(&c.secret_checksum_errors),
        sslcert_verify_fail: 0,
        ing_referrer_verify_fail: v(&c.ing_referrer_verify_fail),
        canary_referrer_verify_fail: v(&c.canary_referrer_verify_fail),
        canary_num_limit_exceeded: 0,
    })
}

pub(crate) fn stats(state: &RuntimeState, host: Option<&str>) -> Response<Full<Bytes>> {
    crate::server::json(&state.metrics.stats(host))
}

pub(crate) fn dashboard() -> Response<Full<Bytes>> {
    let mut response = with_type(
        Response::new(Full::new(Bytes::from_static(DASHBOARD.as_bytes()))),
        "text/html; charset=utf-8",
    );
    // Everything the page needs is inline; nothing else may load.
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:",
        ),
    );
    response
}

fn with_type(
    mut response: Response<Full<Bytes>>,
    content_type: &'static str,
) -> Response<Full<Bytes>> {
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}
