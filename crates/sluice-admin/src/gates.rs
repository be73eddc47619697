//! The state of the IngressCheckSum/SecretCheckSum gates and the gray rollout, as the apply loop
//! last decided it: shown in `/api/v1/snapshot` and counted for the metrics of
//! tengine-extensions.md section 7.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};

/// `pass`: the local checksum equals the newest checksum object's; `fail`: it does not, and
/// changes are held; `none`: there is no checksum object, so nothing is gated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GateState {
    Pass,
    Fail,
    #[default]
    None,
}

/// What differs between the local IDs and the newest checksum object's `spec.ids`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GateDiff {
    /// In the checksum object, not here.
    pub missing: Vec<String>,
    /// Here, not in the checksum object.
    pub unexpected: Vec<String>,
}

/// One gate (Ingress or Secret).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GateView {
    pub state: GateState,
    /// MD5 of the local IDs.
    pub local_checksum: String,
    /// How many local IDs it was computed over.
    pub local_ids: usize,
    /// `spec.checksum` of the newest checksum object, when there is one.
    pub expected: Option<String>,
    /// `namespace/name` of that object.
    pub checksum_object: Option<String>,
    /// Objects whose newest version is not served because this gate fails (added, changed or
    /// deleted since the last pass).
    pub held_changes: usize,
    /// Objects whose newest version is not served because this instance is not yet in their
    /// gray rollout.
    pub rollout_held: usize,
    /// The difference seen at the last failure (kept after a pass, for the record).
    pub last_diff: Option<GateDiff>,
}

/// Both gates and this instance's rollout identity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChecksumGates {
    /// The StatefulSet ordinal used for gray rollout (`--instance-ordinal` or `POD_NAME`);
    /// `None` when unknown (then only finished or disabled rollouts apply).
    pub instance_ordinal: Option<i64>,
    pub ingress: GateView,
    pub secret: GateView,
}

/// Tengine-Ingress's counters and gauges (names without the `nginx_ingress_controller_` prefix).
#[derive(Debug, Default)]
pub struct GateCounters {
    /// Counter: Ingress checksum evaluations that passed.
    pub ing_checksum_success: AtomicU64,
    /// Gauge: failed Ingress checksum evaluations since the last pass (0 after a pass).
    pub ing_checksum_errors: AtomicU64,
    pub secret_checksum_success: AtomicU64,
    pub secret_checksum_errors: AtomicU64,
    /// Counter: Ingresses dropped by `ingress-referrer` (counted once per apply that drops them).
    pub ing_referrer_verify_fail: AtomicU64,
    /// Counter: canaries dropped by `canary-referrer`.
    pub canary_referrer_verify_fail: AtomicU64,
}

impl GateCounters {
    /// Records one evaluation of a gate that had a checksum object to compare with.
    pub fn record(&self, secret: bool, passed: bool) {
        let (success, errors) = if secret {
            (&self.secret_checksum_success, &self.secret_checksum_errors)
        } else {
            (&self.ing_checksum_success, &self.ing_checksum_errors)
        };
        if passed {
            success.fetch_add(1, Ordering::Relaxed);
            errors.store(0, Ordering::Relaxed);
        } else {
            errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `(metric name, kind, value)` for every counter and gauge, for an exporter.
    pub fn samples(&self) -> [(&'static str, &'static str, u64); 6] {
        let v = |a: &AtomicU64| a.load(Ordering::Relaxed);
        [
            (
                "ing_checksum_success",
                "counter",
                v(&self.ing_checksum_success),
            ),
            ("ing_checksum_errors", "gauge", v(&self.ing_checksum_errors)),
            (
                "secret_checksum_success",
                "counter",
                v(&self.secret_checksum_success),
            ),
            (
                "secret_checksum_errors",
                "gauge",
                v(&self.secret_checksum_errors),
            ),
            (
                "ing_referrer_verify_fail",
                "counter",
                v(&self.ing_referrer_verify_fail),
            ),
            (
                "canary_referrer_verify_fail",
                "counter",
                v(&self.canary_referrer_verify_fail),
            ),
        ]
    }
}
