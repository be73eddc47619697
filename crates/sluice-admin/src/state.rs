//! What the apply loop publishes for the admin API to read.

use crate::gates::{ChecksumGates, GateCounters};
use arc_swap::ArcSwap;
use sluice_metrics::Metrics;
use sluice_model::{Problem, Snapshot};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

/// The outcome of the last configuration apply.
#[derive(Debug, Clone)]
pub struct ApplyReport {
    pub applied_at: SystemTime,
    /// How long translation and the swap took.
    pub duration: Duration,
    /// Source problems (unreadable files) followed by translation problems.
    pub problems: Vec<Problem>,
    /// The checksum gates and rollout as decided for this apply.
    pub gates: Arc<ChecksumGates>,
}

impl Default for ApplyReport {
    fn default() -> Self {
        ApplyReport {
            applied_at: SystemTime::UNIX_EPOCH,
            duration: Duration::ZERO,
            problems: Vec::new(),
            gates: Arc::default(),
        }
    }
}

/// Shared between the apply loop (writer), the data plane (snapshot reader) and the admin API.
#[derive(Debug)]
pub struct RuntimeState {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub report: ArcSwap<ApplyReport>,
    /// Checksum and referrer counters (tengine-extensions.md section 7), for /metrics.
    pub gate_counters: GateCounters,
    /// Request statistics and the access log; the apply loop refreshes it after every swap.
    pub metrics: Arc<Metrics>,
    ready: AtomicBool,
    shutting_down: AtomicBool,
}

impl RuntimeState {
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>) -> Self {
        RuntimeState {
            snapshot,
            report: ArcSwap::from_pointee(ApplyReport::default()),
            gate_counters: GateCounters::default(),
            metrics: Arc::default(),
            ready: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
        }
    }

    /// Uses `metrics` (with its options and access log) instead of a default one.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Called once the first snapshot built from a complete source is live.
    pub fn mark_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// From now on `/healthz` answers 500 so load balancers drain this instance.
    pub fn mark_shutting_down(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }
}
