//! The apply loop: each source update becomes the next snapshot (or, when only endpoints moved,
//! new endpoints in the current snapshot's backend slots), swapped atomically. Ingresses and
//! Secrets pass the checksum gates and gray rollout first (see `gate`).

use crate::gate::{GateOptions, Gates};
use sluice_admin::{ApplyReport, ChecksumGates, RuntimeState};
use sluice_model::{BackendKey, BackendSlot, Problem};
use sluice_source::SourceUpdate;
use sluice_store::{KindRevisions, ObjectStore};
use sluice_translate::{
    TranslateOptions, Translator, any_backend_unavailable, backend_problems, refresh_endpoints,
    refresh_services, services_changed,
};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tokio::sync::watch;

pub struct Applier {
    /// Keeps the previous translation so that a change redoes only what it touches.
    translator: Translator,
    state: Arc<RuntimeState>,
    version: u64,
    applied_revisions: Option<KindRevisions>,
    translation_problems: Vec<Problem>,
    gates: Gates,
    gate_problems: Vec<Problem>,
    gate_report: Arc<ChecksumGates>,
    reported: HashSet<String>,
    /// Whether some backend was unavailable, for which backend map and endpoint revisions:
    /// checking 40,000 slots on every apply is most of an apply that changed one Ingress.
    availability: Option<(BackendMap, (u64, u64, u64), bool)>,
    /// The store applied last, to tell which Services an endpoint-only update moved.
    applied_store: Option<Arc<ObjectStore>>,
}

type BackendMap = Arc<std::collections::BTreeMap<BackendKey, Arc<BackendSlot>>>;

impl Applier {
    /// `gates`: this instance's rollout ordinal and `--state-dir`.
    pub fn with_gates(
        options: TranslateOptions,
        state: Arc<RuntimeState>,
        gates: GateOptions,
    ) -> Self {
        Applier {
            gates: Gates::new(options.clone(), gates),
            translator: Translator::new(options),
            state,
            version: 0,
            applied_revisions: None,
            translation_problems: Vec::new(),
            gate_problems: Vec::new(),
            gate_report: Arc::default(),
            reported: HashSet::new(),
            availability: None,
            applied_store: None,
        }
    }

    pub fn apply(&mut self, update: &SourceUpdate) {
        let started = Instant::now();
        let revisions = update.store.revisions();
        let endpoints_only = self
            .applied_revisions
            .is_some_and(|applied| revisions.only_endpoints_changed_since(&applied));
        if endpoints_only {
            let snapshot = self.state.snapshot.load();
            match &self.applied_store {
                // Only the slots of the Services whose endpoints moved: a rollout moving one
                // Service's pods does not resolve 40,000 backends again.
                Some(before) => refresh_services(
                    &update.store,
                    &snapshot.backends,
                    &services_changed(before, &update.store),
                ),
                None => refresh_endpoints(&update.store, &snapshot),
            }
            tracing::debug!(elapsed = ?started.elapsed(), "endpoints refreshed");
        } else {
            let gated = self.gates.pass(&update.store, &self.state.gate_counters);
            let translation = self.translator.translate(gated.view(&update.store));
            self.gate_problems = gated.problems;
            self.gate_report = Arc::new(gated.report);
            self.version += 1;
            let mut snapshot = translation.snapshot;
            snapshot.version = self.version;
            let snapshot = Arc::new(snapshot);
            self.state.snapshot.store(snapshot.clone());
            self.state
                .metrics
                .refresh_changed(&snapshot, &translation.host_changes);
            self.translation_problems = translation.problems;
            tracing::info!(
                version = self.version,
                // Sizes only: counting routes would visit every host (see /api/v1/snapshot).
                hosts = snapshot.hosts.len(),
                backends = snapshot.backends.len(),
                certificates = snapshot.certificates.len(),
                problems = update.problems.len()
                    + self.gate_problems.len()
                    + self.translation_problems.len(),
                ingress_gate = ?self.gate_report.ingress.state,
                secret_gate = ?self.gate_report.secret.state,
                elapsed = ?started.elapsed(),
                "configuration applied"
            );
        }
        self.applied_revisions = Some(revisions);
        self.applied_store = Some(update.store.clone());

        let mut problems: Vec<Problem> = update
            .problems
            .iter()
            .chain(&self.gate_problems)
            .chain(&self.translation_problems)
            .cloned()
            .collect();
        let snapshot = self.state.snapshot.load_full();
        let endpoints = (
            revisions.service,
            revisions.endpoint_slice,
            revisions.endpoints,
        );
        let unavailable = match &self.availability {
            Some((backends, seen, unavailable))
                if Arc::ptr_eq(backends, &snapshot.backends) && *seen == endpoints =>
            {
                *unavailable
            }
            _ => {
                let unavailable = any_backend_unavailable(&snapshot);
                self.availability = Some((snapshot.backends.clone(), endpoints, unavailable));
                unavailable
            }
        };
        if unavailable {
            problems.extend(backend_problems(&snapshot));
        }
        self.log_new_problems(&problems);
        self.state.report.store(Arc::new(ApplyReport {
            applied_at: SystemTime::now(),
            duration: started.elapsed(),
            problems,
            gates: self.gate_report.clone(),
        }));
    }

    /// Each problem is logged once when it appears, not on every apply.
    fn log_new_problems(&mut self, problems: &[Problem]) {
        let current: HashSet<String> = problems.iter().map(Problem::to_string).collect();
        for line in current.difference(&self.reported) {
            tracing::warn!("{line}");
        }
        self.reported = current;
    }

    /// Applies every update the source publishes until the source goes away.
    pub async fn run(mut self, mut updates: watch::Receiver<SourceUpdate>) {
        while updates.changed().await.is_ok() {
            let update = updates.borrow_and_update().clone();
            self.apply(&update);
        }
    }
}
