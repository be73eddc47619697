//! JSON shapes of the admin API. Kept apart from the model so the model stays free of presentation.

use crate::gates::ChecksumGates;
use crate::state::ApplyReport;
use serde::Serialize;
use sluice_model::{Endpoints, HostTable, Route, Snapshot, SnapshotCounts, Upstream};
use std::time::UNIX_EPOCH;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotView {
    pub version: u64,
    /// Unix time in seconds (fractional) of the last apply.
    pub applied_at: f64,
    pub apply_duration_ms: f64,
    pub counts: SnapshotCounts,
    pub problems: usize,
    /// The IngressCheckSum/SecretCheckSum gates and the gray rollout of this instance.
    pub checksum_gate: ChecksumGates,
}

impl SnapshotView {
    pub fn new(snapshot: &Snapshot, report: &ApplyReport) -> Self {
        SnapshotView {
            version: snapshot.version,
            applied_at: report
                .applied_at
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
            apply_duration_ms: report.duration.as_secs_f64() * 1000.0,
            counts: snapshot.counts(),
            problems: report.problems.len(),
            checksum_gate: ChecksumGates::clone(&report.gates),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteView {
    pub host: String,
    pub path: String,
    pub path_type: &'static str,
    /// True for a `spec.defaultBackend` fallback rather than a path rule.
    pub fallback: bool,
    pub backend: String,
    pub ingress: String,
    pub endpoints: Vec<String>,
    /// Set when the backend cannot serve (503).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
    pub ssl_redirect: bool,
    pub force_ssl_redirect: bool,
    /// The canary rules of the route, in evaluation order (first match wins).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub canaries: Vec<CanaryView>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryView {
    pub rule: String,
    pub backend: String,
    pub ingress: String,
}

fn canary_views(route: &Route) -> Vec<CanaryView> {
    let sluice_model::RouteTarget::Canaries(set) = &route.target else {
        return Vec::new();
    };
    set.canaries
        .iter()
        .map(|c| CanaryView {
            rule: c.rule.describe(set.weight_total),
            backend: c.target.backend.key.to_string(),
            ingress: format!("{}/{}", c.target.ingress.namespace, c.target.ingress.name),
        })
        .collect()
}

fn route_view(host: &str, route: &Route, fallback: bool) -> RouteView {
    let slot = route.backend();
    let endpoints = slot.endpoints();
    let (endpoints, unavailable) = match endpoints.as_ref() {
        Endpoints::Ready(list) => (list.iter().map(Upstream::to_string).collect(), None),
        Endpoints::Unavailable(why) => (Vec::new(), Some(why.to_string())),
    };
    RouteView {
        host: host.to_string(),
        path: route.path.as_str().to_string(),
        path_type: match route.path.kind() {
            sluice_model::PathKind::Exact => "Exact",
            sluice_model::PathKind::Prefix => "Prefix",
            sluice_model::PathKind::Regex => "Regex",
        },
        fallback,
        backend: slot.key.to_string(),
        ingress: format!("{}/{}", route.ingress.namespace, route.ingress.name),
        endpoints,
        unavailable,
        ssl_redirect: route.policy.ssl_redirect,
        force_ssl_redirect: route.policy.force_ssl_redirect,
        canaries: canary_views(route),
    }
}

/// The effective routes of `host` in match order (the host a request with that Host header would
/// reach, wildcard and default server included), or of every host when `host` is `None`.
pub fn routes_of(snapshot: &Snapshot, host: Option<&str>) -> Vec<RouteView> {
    let vhosts: Vec<_> = match host {
        Some(h) => vec![snapshot.hosts.lookup(&HostTable::normalize(h)).clone()],
        None => {
            let mut all: Vec<_> = snapshot.hosts.iter().cloned().collect();
            all.sort_by(|a, b| a.name.cmp(&b.name));
            all
        }
    };
    let mut out = Vec::new();
    for vhost in vhosts {
        let name = if vhost.name.is_empty() {
            "_"
        } else {
            vhost.name.as_str()
        };
        out.extend(vhost.routes.iter().map(|r| route_view(name, r, false)));
        if let Some(fallback) = &vhost.fallback {
            out.push(route_view(name, fallback, true));
        }
    }
    out
}
