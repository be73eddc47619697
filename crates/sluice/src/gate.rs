//! The gate between the object store and translation: which version of each Ingress and Secret
//! this instance serves.
//!
//! Two Tengine-Ingress mechanisms decide it (tengine-extensions.md sections 3, 10 and 11):
//! - The checksum gates: while the MD5 of the local Ingress (resp. Secret) IDs differs from the
//!   newest IngressCheckSum (resp. SecretCheckSum) object's, every Ingress (resp. Secret) change
//!   (add, update, delete) is held and the last accepted versions keep being served. Endpoint
//!   changes are never held: they do not go through here. No checksum object: nothing is held.
//! - Gray rollout: an object with `*-rollout: "true"` whose index does not include this
//!   instance's ordinal keeps the version this instance already served; one it never served is
//!   served in its newest version, with a warning. Deletes are never held by a rollout.
//!
//! The served versions are kept under `--state-dir` so that a restarted instance keeps serving
//! what it served before. Translation itself stays pure: it gets a store whose Ingresses and
//! Secrets are the served versions and everything else is live.

use crate::served_state::ServedState;
use sluice_admin::{ChecksumGates, GateCounters, GateDiff, GateState, GateView};
use sluice_model::{ObjectKind, Origin, Problem};
use sluice_store::k8s_openapi::api::core::v1::Secret;
use sluice_store::k8s_openapi::api::networking::v1::Ingress;
use sluice_store::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sluice_store::{CheckSumSpec, DiffItem, NamespacedName, ObjectStore, OrdMap, Stored};
use sluice_translate::{
    ReferrerLists, Rollout, RolloutFamily, TranslateOptions, checksum_of, ingress_ids, is_ours,
    referrer_accepts, secret_ids, sorted_ids,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// Identity and persistence of this instance for the gates.
#[derive(Debug, Clone, Default)]
pub struct GateOptions {
    /// StatefulSet ordinal for gray rollout; `None` when unknown.
    pub instance_ordinal: Option<i64>,
    /// Where the served versions are kept across restarts.
    pub state_dir: Option<PathBuf>,
}

impl GateOptions {
    /// `--instance-ordinal`, else the trailing `-<number>` of `POD_NAME` (a StatefulSet pod).
    pub fn ordinal_from(flag: Option<u32>) -> Option<i64> {
        flag.map(i64::from).or_else(|| {
            let pod = std::env::var("POD_NAME").ok()?;
            let (_, digits) = pod.rsplit_once('-')?;
            (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
                .then(|| digits.parse().ok())
                .flatten()
        })
    }
}

/// What the gate hands on for one apply.
pub struct Gated {
    /// Live store with the served Ingresses and Secrets in place of the newest ones; `None` when
    /// the served ones are the newest ones (nothing held), so the live store is used as it is.
    held_view: Option<ObjectStore>,
    pub problems: Vec<Problem>,
    pub report: ChecksumGates,
}

impl Gated {
    /// The store to translate: `live` with the served versions in place.
    pub fn view<'a>(&'a self, live: &'a ObjectStore) -> &'a ObjectStore {
        self.held_view.as_ref().unwrap_or(live)
    }
}

/// An object kind the gate serves versions of.
trait Gateable: Clone + PartialEq {
    const KIND: ObjectKind;
    const FAMILY: RolloutFamily;
    fn meta(&self) -> &ObjectMeta;
}

impl Gateable for Ingress {
    const KIND: ObjectKind = ObjectKind::Ingress;
    const FAMILY: RolloutFamily = RolloutFamily::Ingress;
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
}

impl Gateable for Secret {
    const KIND: ObjectKind = ObjectKind::Secret;
    const FAMILY: RolloutFamily = RolloutFamily::Secret;
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
}

pub struct Gates {
    translate: TranslateOptions,
    ordinal: Option<i64>,
    state: Option<ServedState>,
    ingresses: OrdMap<NamespacedName, Stored<Ingress>>,
    secrets: OrdMap<NamespacedName, Stored<Secret>>,
    /// Malformed rollout annotations of the newest versions, kept while those versions are live
    /// so that they are reported on every apply without re-reading unchanged objects.
    ingress_rollout_errors: BTreeMap<NamespacedName, Problem>,
    secret_rollout_errors: BTreeMap<NamespacedName, Problem>,
    /// The verdict of the previous apply, to log transitions once.
    last_states: (GateState, GateState),
    last_diffs: (Option<GateDiff>, Option<GateDiff>),
}

impl Gates {
    /// Restores the served versions from the state directory, if one is given and holds them.
    pub fn new(translate: TranslateOptions, options: GateOptions) -> Gates {
        let state = options.state_dir.map(ServedState::new);
        let (ingresses, secrets) = match &state {
            Some(state) => match state.load() {
                Ok(Some(restored)) => {
                    tracing::info!(
                        file = %state.path().display(),
                        ingresses = restored.ingresses.len(),
                        secrets = restored.secrets.len(),
                        "restored the Ingress and Secret versions this instance served before its restart"
                    );
                    (restored.ingresses, restored.secrets)
                }
                Ok(None) => Default::default(),
                Err(why) => {
                    tracing::error!(
                        file = %state.path().display(),
                        "{why}; starting without the versions served before the restart (gray \
                         rollouts and checksum gates start from the newest versions)"
                    );
                    Default::default()
                }
            },
            None => Default::default(),
        };
        Gates {
            translate,
            ordinal: options.instance_ordinal,
            state,
            ingresses,
            secrets,
            ingress_rollout_errors: BTreeMap::new(),
            secret_rollout_errors: BTreeMap::new(),
            last_states: (GateState::None, GateState::None),
            last_diffs: (None, None),
        }
    }

    /// Decides the served versions for the live store `live`.
    pub fn pass(&mut self, live: &ObjectStore, counters: &GateCounters) -> Gated {
        let mut problems = Vec::new();
        count_referrer_drops(live, &self.translate, counters);

        let candidates = live
            .ingress_checksums
            .iter()
            .map(|(k, s)| (k, &s.object.metadata, &s.object.spec, &s.origin));
        let ingress_eval = evaluate(ObjectKind::IngressCheckSum, candidates, || {
            sorted_ids(&ingress_ids(live, &self.translate))
        });
        let candidates = live
            .secret_checksums
            .iter()
            .map(|(k, s)| (k, &s.object.metadata, &s.object.spec, &s.origin));
        let secret_eval = evaluate(ObjectKind::SecretCheckSum, candidates, || {
            sorted_ids(&secret_ids(live))
        });

        let mut changed = false;
        let ingress = advance(
            &mut self.ingresses,
            &mut self.ingress_rollout_errors,
            &live.ingresses,
            &ingress_eval,
            self.ordinal,
            &mut problems,
            &mut changed,
        );
        let secret = advance(
            &mut self.secrets,
            &mut self.secret_rollout_errors,
            &live.secrets,
            &secret_eval,
            self.ordinal,
            &mut problems,
            &mut changed,
        );
        let all_newest = ingress.newest_served && secret.newest_served;

        for (eval, secret_gate) in [(&ingress_eval, false), (&secret_eval, true)] {
            if eval.counted {
                counters.record(secret_gate, eval.state == GateState::Pass);
            }
        }
        let ingress_view = self.finish_gate(false, ingress_eval, ingress, &mut problems);
        let secret_view = self.finish_gate(true, secret_eval, secret, &mut problems);

        if changed
            && let Some(state) = &self.state
            && let Err(why) = state.save(&self.ingresses, &self.secrets)
        {
            tracing::error!(
                file = %state.path().display(),
                "{why}; a restart would not keep the versions served now"
            );
        }

        let held_view = (!all_newest).then(|| {
            let mut view = live.clone();
            view.ingresses = self.ingresses.clone();
            view.secrets = self.secrets.clone();
            view
        });
        Gated {
            held_view,
            problems,
            report: ChecksumGates {
                instance_ordinal: self.ordinal,
                ingress: ingress_view,
                secret: secret_view,
            },
        }
    }

    fn finish_gate(
        &mut self,
        secret: bool,
        eval: Evaluation,
        held: Held,
        problems: &mut Vec<Problem>,
    ) -> GateView {
        let (what, objects) = if secret {
            ("Secret", "certificate")
        } else {
            ("Ingress", "Ingress")
        };
        let (last_state, last_diff) = if secret {
            (&mut self.last_states.1, &mut self.last_diffs.1)
        } else {
            (&mut self.last_states.0, &mut self.last_diffs.0)
        };
        if eval.state == GateState::Fail {
            *last_diff = eval.diff.clone();
            let diff = eval.diff.clone().unwrap_or_default();
            let reason = format!(
                "{what} checksum mismatch: the local MD5 {} over {} IDs differs from the newest \
                 {}'s spec.checksum {}; {} {objects} change(s) are held and the last accepted \
                 versions stay served until the checksums match (missing here: [{}]; not \
                 expected: [{}]); endpoint updates still apply",
                eval.local,
                eval.ids,
                eval.kind,
                eval.expected.as_deref().unwrap_or("(none)"),
                held.by_gate,
                diff.missing.join(","),
                diff.unexpected.join(","),
            );
            let mut problem = match &eval.object {
                Some(key) => Problem::warning(key.object_ref(eval.kind), reason),
                None => Problem::file(Origin::ApiServer, reason),
            };
            problem = problem
                .at_field("spec.checksum")
                .from_origin(eval.origin.clone());
            problems.push(problem);
        } else if *last_state == GateState::Fail {
            tracing::info!(
                checksum = %eval.local,
                "{what} checksum matches again; held {objects} changes are applied"
            );
        }
        *last_state = eval.state;
        GateView {
            state: eval.state,
            local_checksum: eval.local,
            local_ids: eval.ids,
            expected: eval.expected,
            checksum_object: eval.object.map(|k| k.to_string()),
            held_changes: held.by_gate,
            rollout_held: held.by_rollout,
            last_diff: last_diff.clone(),
        }
    }
}

/// One gate's verdict.
struct Evaluation {
    kind: ObjectKind,
    state: GateState,
    /// Whether it counts for the success/error metrics (a checksum object was compared with).
    counted: bool,
    local: String,
    ids: usize,
    expected: Option<String>,
    object: Option<NamespacedName>,
    origin: Option<Origin>,
    diff: Option<GateDiff>,
}

fn evaluate<'a>(
    kind: ObjectKind,
    candidates: impl Iterator<
        Item = (
            &'a NamespacedName,
            &'a ObjectMeta,
            &'a CheckSumSpec,
            &'a Origin,
        ),
    >,
    ids: impl FnOnce() -> Vec<String>,
) -> Evaluation {
    let newest = candidates.max_by(|a, b| newer(a.0, a.1, b.0, b.1));
    // Without a checksum object there is no gate, and the IDs (thousands of strings to format,
    // sort and hash) are not worth computing.
    let Some((key, _, spec, origin)) = newest else {
        return Evaluation {
            kind,
            state: GateState::None,
            counted: false,
            local: String::new(),
            ids: 0,
            expected: None,
            object: None,
            origin: None,
            diff: None,
        };
    };
    let ids = ids();
    let local = checksum_of(&ids);
    let expected = spec
        .checksum
        .as_deref()
        .map(|c| c.trim().to_ascii_lowercase());
    // Tengine-Ingress treats "checksum objects but no local IDs" as not ready yet and applies
    // ungated; doing the same keeps a fresh cluster from serving nothing.
    let state = if ids.is_empty() || expected.as_deref() == Some(local.as_str()) {
        GateState::Pass
    } else {
        GateState::Fail
    };
    let diff = (state == GateState::Fail).then(|| {
        let theirs: BTreeSet<&str> = spec.ids.iter().flatten().map(String::as_str).collect();
        let ours: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
        GateDiff {
            missing: theirs.difference(&ours).map(|s| s.to_string()).collect(),
            unexpected: ours.difference(&theirs).map(|s| s.to_string()).collect(),
        }
    });
    Evaluation {
        kind,
        state,
        counted: !ids.is_empty(),
        local,
        ids: ids.len(),
        expected,
        object: Some(key.clone()),
        origin: Some(origin.clone()),
        diff,
    }
}

/// Orders checksum objects oldest to newest: by creationTimestamp, with objects that have none
/// after all that have one (spec section 11), then by namespace/name. At equal timestamps the
/// alphabetically first name is the newest, as in Tengine-Ingress's descending sort.
fn newer(
    ka: &NamespacedName,
    a: &ObjectMeta,
    kb: &NamespacedName,
    b: &ObjectMeta,
) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (&a.creation_timestamp, &b.creation_timestamp) {
        (Some(ta), Some(tb)) => ta.cmp(tb).then_with(|| kb.cmp(ka)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => ka.cmp(kb),
    }
}

#[derive(Debug, Default)]
struct Held {
    by_gate: usize,
    by_rollout: usize,
    /// Every served object is the live one (same key set, nothing held).
    newest_served: bool,
}

/// Moves the served versions towards the live ones as far as the gate and the rollouts allow.
/// Only objects that are not already served as they are live are looked at, so an apply after
/// one change costs one pass of pointer comparisons over the rest.
fn advance<T: Gateable>(
    served: &mut OrdMap<NamespacedName, Stored<T>>,
    rollout_errors: &mut BTreeMap<NamespacedName, Problem>,
    live: &OrdMap<NamespacedName, Stored<T>>,
    eval: &Evaluation,
    ordinal: Option<i64>,
    problems: &mut Vec<Problem>,
    changed: &mut bool,
) -> Held {
    let mut held = Held::default();
    let (gone, candidates) = differences(served, live);
    if eval.state == GateState::Fail {
        held.by_gate = gone.len()
            + candidates
                .iter()
                .filter(|k| served.get(*k).is_none_or(|s| s.object != live[*k].object))
                .count();
        return held;
    }
    for key in &gone {
        served.remove(key);
        rollout_errors.remove(key);
        *changed = true;
    }
    for key in &candidates {
        let newest = &live[key];
        let object = key.object_ref(T::KIND);
        rollout_errors.remove(key);
        let applies = match Rollout::of(newest.object.meta(), T::FAMILY) {
            Ok(rollout) => rollout.applies_to(ordinal).then_some(()).ok_or(rollout),
            Err((field, why)) => {
                rollout_errors.insert(
                    key.clone(),
                    Problem::rejected(
                        object.clone(),
                        format!("{why}; the newest version is served as if rollout were off"),
                    )
                    .at_field(format!("metadata.annotations[\"{field}\"]"))
                    .from_origin(Some(newest.origin.clone())),
                );
                Ok(())
            }
        };
        match (applies, served.get(key)) {
            // The same content saved again: keep serving the version already served.
            (_, Some(old)) if old.object == newest.object => {}
            (Ok(()), _) => {
                served.insert(key.clone(), newest.clone());
                *changed = true;
            }
            (Err(rollout), Some(_)) => {
                held.by_rollout += 1;
                tracing::debug!(
                    %object,
                    index_id = rollout.index_id,
                    ?ordinal,
                    update_revision = rollout.update_revision.as_deref().unwrap_or(""),
                    "gray rollout has not reached this instance; serving the version it had"
                );
            }
            (Err(rollout), None) => {
                problems.push(
                    Problem::warning(
                        object,
                        format!(
                            "gray rollout (index-id {}) has not reached this instance (ordinal \
                             {}), but it never served an earlier version, so it serves the \
                             newest one (Tengine-Ingress would leave it out)",
                            rollout.index_id,
                            ordinal.map_or("unknown".to_string(), |k| k.to_string()),
                        ),
                    )
                    .from_origin(Some(newest.origin.clone())),
                );
                served.insert(key.clone(), newest.clone());
                *changed = true;
            }
        }
    }
    problems.extend(rollout_errors.values().cloned());
    held.newest_served = held.by_rollout == 0;
    if held.newest_served {
        // Share structure with the live map, so that the next comparison is quick.
        *served = live.clone();
    }
    held
}

/// Keys served but no longer live, and live keys whose object is not the very one served. Once
/// everything is served as it is live the served map is a clone of the live one, so this skips
/// what the two still share.
fn differences<T>(
    served: &OrdMap<NamespacedName, Stored<T>>,
    live: &OrdMap<NamespacedName, Stored<T>>,
) -> (Vec<NamespacedName>, Vec<NamespacedName>) {
    let (mut gone, mut candidates) = (Vec::new(), Vec::new());
    for item in served.diff(live) {
        match item {
            DiffItem::Remove(key, _) => gone.push(key.clone()),
            DiffItem::Add(key, _) | DiffItem::Update { new: (key, _), .. } => {
                candidates.push(key.clone())
            }
        }
    }
    (gone, candidates)
}

/// Counts the Ingresses dropped by the referrer checks (Tengine-Ingress's counters).
fn count_referrer_drops(live: &ObjectStore, opts: &TranslateOptions, counters: &GateCounters) {
    use std::sync::atomic::Ordering;
    let lists = ReferrerLists::of(live, opts);
    if lists.ingress.is_empty() && lists.canary.is_empty() {
        return;
    }
    for stored in live.ingresses.values() {
        if !is_ours(&stored.object, live, opts) {
            continue;
        }
        if let Err((annotation, _)) = referrer_accepts(&stored.object.metadata, &lists) {
            let counter = if annotation.ends_with("canary-referrer") {
                &counters.canary_referrer_verify_fail
            } else {
                &counters.ing_referrer_verify_fail
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use sluice_store::StoredObject;

    fn store_of(objects: Vec<Value>) -> ObjectStore {
        let mut store = ObjectStore::new();
        for v in objects {
            let object = StoredObject::from_value(v).unwrap().unwrap();
            store.upsert(object, Origin::ApiServer);
        }
        store
    }

    fn ingress(name: &str, version: &str) -> Value {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": "ns",
                "annotations": {"nginx.ingress.kubernetes.io/version": version}},
            "spec": {"ingressClassName": "sluice"}})
    }

    fn checksum(name: &str, created: Option<&str>, sum: &str) -> Value {
        let mut v = json!({"apiVersion": "tengine.taobao.org/v1", "kind": "IngressCheckSum",
            "metadata": {"name": name, "namespace": "ns"}, "spec": {"checksum": sum}});
        if let Some(t) = created {
            v["metadata"]["creationTimestamp"] = json!(t);
        }
        v
    }

    fn gates() -> Gates {
        Gates::new(TranslateOptions::default(), GateOptions::default())
    }

    // md5("7-1")
    const SUM_7_1: &str = "6b4b0ab7ae7d1ff0d9b1bb0d1f6a2b7c";

    fn real_sum(ids: &[&str]) -> String {
        checksum_of(&ids.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn the_newest_checksum_object_decides_not_any_matching_one() {
        let good = real_sum(&["7-1"]);
        assert_ne!(good, SUM_7_1, "the constant is only a wrong checksum");
        let counters = GateCounters::default();
        let store = store_of(vec![
            ingress("web-7", "1"),
            checksum("old", Some("2024-01-01T00:00:00Z"), &good),
            checksum("new", Some("2024-02-01T00:00:00Z"), SUM_7_1),
        ]);
        let gated = gates().pass(&store, &counters);
        assert_eq!(gated.report.ingress.state, GateState::Fail);
        assert_eq!(
            gated.report.ingress.checksum_object.as_deref(),
            Some("ns/new")
        );
        assert!(
            gated.view(&store).ingresses.is_empty(),
            "nothing was accepted yet"
        );
        assert_eq!(
            counters
                .ing_checksum_errors
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );

        // Without a timestamp an object counts as newer than every timestamped one.
        let store = store_of(vec![
            ingress("web-7", "1"),
            checksum("old", Some("2024-02-01T00:00:00Z"), SUM_7_1),
            checksum("manifest", None, &good),
        ]);
        let gated = gates().pass(&store, &counters);
        assert_eq!(gated.report.ingress.state, GateState::Pass);
        assert_eq!(gated.view(&store).ingresses.len(), 1);
        assert_eq!(
            counters
                .ing_checksum_errors
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
    }

    #[test]
    fn no_checksum_object_gates_nothing() {
        let counters = GateCounters::default();
        let store = store_of(vec![ingress("web-7", "1")]);
        let gated = gates().pass(&store, &counters);
        assert_eq!(gated.report.ingress.state, GateState::None);
        assert_eq!(gated.report.secret.state, GateState::None);
        assert_eq!(gated.view(&store).ingresses.len(), 1);
    }
}
