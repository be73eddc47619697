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

/// The checksum / rollout / referrer counters of tengine-extensions.md section 7, once the
/// checksum gates publish them in [`RuntimeState`]; until then they are not exported.
fn tengine_counters(_state: &RuntimeState) -> Option<TengineCounters> {
    None
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
