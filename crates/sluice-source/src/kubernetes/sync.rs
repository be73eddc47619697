//! The single owner of the Kubernetes-mode object store: applies watch events, tracks which
//! kinds have been listed completely, and publishes the store in debounced batches.

use crate::SourceUpdate;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sluice_model::{ObjectKind, ObjectRef, Origin, Problem, Severity};
use sluice_store::{KindRevisions, NamespacedName, ObjectStore, OrdMap, Stored, StoredObject};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// A burst of events (a rollout moving many endpoints, a relist) is published once, after this
/// much quiet...
const QUIET: Duration = Duration::from_millis(50);
/// ...or at the latest this long after its first event, so a steady stream still gets applied.
const MAX_DELAY: Duration = Duration::from_millis(300);

/// What a watcher saw.
#[derive(Debug)]
pub(super) enum Change {
    /// A (re)list of the kind starts: the objects listed next replace the kind's contents.
    Relisting(ObjectKind),
    Listed(StoredObject),
    /// The list is complete: objects of the kind that it did not contain are gone.
    RelistDone(ObjectKind),
    Applied(StoredObject),
    Deleted(StoredObject),
    /// An optional kind the API server does not serve: it has no objects.
    Absent(ObjectKind),
}

#[derive(Debug)]
pub(super) struct SyncState {
    /// Shared with the update last published: changed in place while nobody else holds it,
    /// copied on the first change after a publish (instead of a copy per publish).
    store: Arc<ObjectStore>,
    /// Every watched kind; the first publish waits until each one has been listed.
    expected: BTreeSet<ObjectKind>,
    listed: BTreeSet<ObjectKind>,
    /// Objects of a list in progress, applied together when it completes.
    relisting: BTreeMap<ObjectKind, Vec<StoredObject>>,
    refuse_empty: bool,
    /// The store as last served (not counting a refused empty one).
    served: Option<Arc<ObjectStore>>,
    sent_revisions: Option<KindRevisions>,
    /// An Ingress's status changed since the last publish (that moves no revision).
    status_changed: bool,
    refusing: bool,
}

impl SyncState {
    pub fn new(expected: BTreeSet<ObjectKind>, refuse_empty: bool) -> Self {
        SyncState {
            store: Arc::default(),
            expected,
            listed: BTreeSet::new(),
            relisting: BTreeMap::new(),
            refuse_empty,
            served: None,
            sent_revisions: None,
            status_changed: false,
            refusing: false,
        }
    }

    /// True once every watched kind has been listed completely at least once.
    pub fn is_synced(&self) -> bool {
        self.expected.is_subset(&self.listed)
    }

    pub fn store(&self) -> &ObjectStore {
        &self.store
    }

    pub fn apply(&mut self, change: Change) {
        match change {
            Change::Relisting(kind) => {
                self.relisting.insert(kind, Vec::new());
            }
            Change::Listed(object) => match self.relisting.get_mut(&object.kind()) {
                Some(buffer) => buffer.push(object),
                // A list always starts with Relisting; without one, apply the object as is.
                None => self.upsert(object),
            },
            Change::RelistDone(kind) => {
                let listed = self.relisting.remove(&kind).unwrap_or_default();
                self.replace_kind(kind, listed);
                self.listed.insert(kind);
            }
            Change::Applied(object) => self.upsert(object),
            Change::Deleted(object) => {
                let kind = object.kind();
                Arc::make_mut(&mut self.store).remove(kind, &ObjectStore::key_of(&object));
            }
            Change::Absent(kind) => {
                self.replace_kind(kind, Vec::new());
                self.listed.insert(kind);
            }
        }
    }

    /// Makes `listed` the complete contents of `kind`: upserts what changed, removes what the
    /// list no longer has. Done only with a complete list, so a broken relist never empties a
    /// kind.
    fn replace_kind(&mut self, kind: ObjectKind, listed: Vec<StoredObject>) {
        let mut gone: BTreeSet<NamespacedName> = keys_of(&self.store, kind).into_iter().collect();
        for object in listed {
            gone.remove(&ObjectStore::key_of(&object));
            self.upsert(object);
        }
        for key in gone {
            Arc::make_mut(&mut self.store).remove(kind, &key);
        }
    }

    /// Stores `object` unless the store already has this exact version of it (a relist after a
    /// reconnect returns mostly unchanged objects; they must not trigger a rebuild).
    fn upsert(&mut self, object: StoredObject) {
        let key = ObjectStore::key_of(&object);
        let version = object.resource_version();
        if version.is_some() && resource_version(&self.store, object.kind(), &key) == version {
            return;
        }
        // Translation never reads an Ingress's status, and the leader writes the status of every
        // Ingress after it applies: such a write must not rebuild every route on every replica.
        // The store keeps the new object (the leader compares the status it would write with it)
        // without moving the Ingress revision.
        let object = match object {
            StoredObject::Ingress(new)
                if self
                    .store
                    .ingresses
                    .get(&key)
                    .is_some_and(|old| only_status_differs(&old.object, &new)) =>
            {
                Arc::make_mut(&mut self.store).ingresses.insert(
                    key,
                    Stored {
                        object: Arc::new(new),
                        origin: Origin::ApiServer,
                    },
                );
                self.status_changed = true;
                return;
            }
            other => other,
        };
        Arc::make_mut(&mut self.store).upsert(object, Origin::ApiServer);
    }

    /// The update to publish now, if anything changed since the last one.
    pub fn next_update(&mut self) -> Option<SourceUpdate> {
        if !self.is_synced() {
            return None;
        }
        let revisions = self.store.revisions();
        if self.sent_revisions == Some(revisions) && !self.status_changed {
            return None;
        }
        self.sent_revisions = Some(revisions);
        self.status_changed = false;
        if self.refuse_empty
            && self.store.ingresses.is_empty()
            && let Some(served) = &self.served
            && !served.ingresses.is_empty()
        {
            if self.refusing {
                return None;
            }
            self.refusing = true;
            let problem = refused_empty(served.ingresses.len());
            tracing::warn!("{problem}");
            return Some(SourceUpdate {
                store: served.clone(),
                problems: vec![problem],
            });
        }
        if self.refusing {
            tracing::info!(
                ingresses = self.store.ingresses.len(),
                "the API server lists Ingresses again; applying the current configuration"
            );
            self.refusing = false;
        }
        let store = self.store.clone();
        self.served = Some(store.clone());
        Some(SourceUpdate {
            store,
            problems: Vec::new(),
        })
    }
}

/// True when two versions of an Ingress differ in nothing translation reads.
fn only_status_differs(old: &Ingress, new: &Ingress) -> bool {
    old.spec == new.spec
        && old.metadata.labels == new.metadata.labels
        && old.metadata.annotations == new.metadata.annotations
        && old.metadata.deletion_timestamp == new.metadata.deletion_timestamp
        && old.metadata.creation_timestamp == new.metadata.creation_timestamp
        && old.metadata.uid == new.metadata.uid
}

fn refused_empty(served: usize) -> Problem {
    Problem {
        object: Some(ObjectRef::new(ObjectKind::Ingress, "", "*")),
        origin: Some(Origin::ApiServer),
        field: None,
        severity: Severity::Warning,
        reason: format!(
            "the API server now lists no Ingresses at all, after {served} were served; keeping \
             the last configuration (--refuse-empty-config). If removing every Ingress was \
             intended, restart Sluice or run it with --refuse-empty-config=false"
        ),
    }
}

/// Applies changes until the receiver of `tx` is dropped (or every watcher ended), publishing
/// once every kind has been listed and then after each burst of changes.
pub(super) async fn run(
    mut state: SyncState,
    mut changes: mpsc::Receiver<Change>,
    tx: watch::Sender<SourceUpdate>,
) {
    let started = Instant::now();
    let mut first = true;
    // (quiet deadline, latest deadline) of the burst being collected.
    let mut pending: Option<(Instant, Instant)> = None;
    loop {
        let wake = pending.map(|(quiet, latest)| quiet.min(latest));
        tokio::select! {
            change = changes.recv() => {
                let Some(change) = change else { return };
                state.apply(change);
                if state.is_synced() {
                    let now = Instant::now();
                    let latest = pending.map_or(now + MAX_DELAY, |(_, latest)| latest);
                    pending = Some((now + QUIET, latest));
                }
            }
            () = sleep_until(wake) => {
                pending = None;
                let Some(update) = state.next_update() else { continue };
                if first {
                    first = false;
                    let store = state.store();
                    tracing::info!(
                        ingresses = store.ingresses.len(),
                        ingress_classes = store.ingress_classes.len(),
                        services = store.services.len(),
                        endpoint_slices = store.endpoint_slices.len(),
                        secrets = store.secrets.len(),
                        config_maps = store.config_maps.len(),
                        elapsed = ?started.elapsed(),
                        "initial sync with the API server complete"
                    );
                }
                if tx.send(update).is_err() {
                    return;
                }
            }
            () = tx.closed() => return,
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn keys_of(store: &ObjectStore, kind: ObjectKind) -> Vec<NamespacedName> {
    fn keys<T: Clone>(map: &OrdMap<NamespacedName, T>) -> Vec<NamespacedName> {
        map.keys().cloned().collect()
    }
    match kind {
        ObjectKind::Ingress => keys(&store.ingresses),
        ObjectKind::IngressClass => store
            .ingress_classes
            .keys()
            .map(|name| NamespacedName::new("", name.clone()))
            .collect(),
        ObjectKind::Service => keys(&store.services),
        ObjectKind::EndpointSlice => keys(&store.endpoint_slices),
        ObjectKind::Endpoints => keys(&store.endpoints),
        ObjectKind::Secret => keys(&store.secrets),
        ObjectKind::ConfigMap => keys(&store.config_maps),
        ObjectKind::IngressCheckSum => keys(&store.ingress_checksums),
        ObjectKind::SecretCheckSum => keys(&store.secret_checksums),
    }
}

fn resource_version<'a>(
    store: &'a ObjectStore,
    kind: ObjectKind,
    key: &NamespacedName,
) -> Option<&'a str> {
    fn of(meta: &ObjectMeta) -> Option<&str> {
        meta.resource_version.as_deref()
    }
    match kind {
        ObjectKind::Ingress => of(&store.ingresses.get(key)?.object.metadata),
        ObjectKind::IngressClass => of(&store.ingress_classes.get(&key.name)?.object.metadata),
        ObjectKind::Service => store.services.get(key)?.object.resource_version.as_deref(),
        ObjectKind::EndpointSlice => store
            .endpoint_slices
            .get(key)?
            .object
            .resource_version
            .as_deref(),
        ObjectKind::Endpoints => store.endpoints.get(key)?.object.resource_version.as_deref(),
        ObjectKind::Secret => of(&store.secrets.get(key)?.object.metadata),
        ObjectKind::ConfigMap => of(&store.config_maps.get(key)?.object.metadata),
        ObjectKind::IngressCheckSum => of(&store.ingress_checksums.get(key)?.object.metadata),
        ObjectKind::SecretCheckSum => of(&store.secret_checksums.get(key)?.object.metadata),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(name: &str, version: &str) -> StoredObject {
        StoredObject::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "ns", "resourceVersion": version},
            "spec": {"ports": [{"port": 80}]}
        }))
        .unwrap()
        .unwrap()
    }

    fn ingress(name: &str, version: &str) -> StoredObject {
        StoredObject::from_value(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": "ns", "resourceVersion": version},
            "spec": {}
        }))
        .unwrap()
        .unwrap()
    }

    fn listed(state: &mut SyncState, kind: ObjectKind, objects: Vec<StoredObject>) {
        state.apply(Change::Relisting(kind));
        for object in objects {
            state.apply(Change::Listed(object));
        }
        state.apply(Change::RelistDone(kind));
    }

    fn kinds(list: &[ObjectKind]) -> BTreeSet<ObjectKind> {
        list.iter().copied().collect()
    }

    #[test]
    fn nothing_is_published_before_every_kind_was_listed() {
        let mut state = SyncState::new(kinds(&[ObjectKind::Service, ObjectKind::Ingress]), true);
        listed(&mut state, ObjectKind::Service, vec![service("a", "1")]);
        assert!(state.next_update().is_none());
        listed(&mut state, ObjectKind::Ingress, vec![]);
        let update = state.next_update().expect("synced");
        assert_eq!(update.store.services.len(), 1);
        assert!(state.next_update().is_none(), "nothing changed since");
    }

    #[test]
    fn a_relist_keeps_the_store_until_it_is_complete_then_drops_what_is_gone() {
        let mut state = SyncState::new(kinds(&[ObjectKind::Service]), true);
        listed(
            &mut state,
            ObjectKind::Service,
            vec![service("a", "1"), service("b", "1")],
        );
        state.next_update().expect("first");
        state.apply(Change::Relisting(ObjectKind::Service));
        state.apply(Change::Listed(service("a", "1")));
        assert_eq!(state.store().services.len(), 2, "b stays during the relist");
        assert!(state.next_update().is_none());
        state.apply(Change::RelistDone(ObjectKind::Service));
        let update = state.next_update().expect("b is gone");
        assert_eq!(
            update
                .store
                .services
                .keys()
                .map(|k| k.name.as_str())
                .collect::<Vec<_>>(),
            ["a"]
        );
    }

    #[test]
    fn an_unchanged_relist_publishes_nothing() {
        let mut state = SyncState::new(kinds(&[ObjectKind::Service]), true);
        listed(&mut state, ObjectKind::Service, vec![service("a", "7")]);
        state.next_update().expect("first");
        listed(&mut state, ObjectKind::Service, vec![service("a", "7")]);
        assert!(state.next_update().is_none());
        state.apply(Change::Applied(service("a", "8")));
        assert!(state.next_update().is_some());
    }

    #[test]
    fn an_empty_ingress_list_after_a_served_one_is_refused_until_ingresses_return() {
        let mut state = SyncState::new(kinds(&[ObjectKind::Ingress]), true);
        listed(&mut state, ObjectKind::Ingress, vec![ingress("web", "1")]);
        state.next_update().expect("first");
        listed(&mut state, ObjectKind::Ingress, vec![]);
        let refused = state.next_update().expect("a problem is reported");
        assert_eq!(refused.store.ingresses.len(), 1, "the served store is kept");
        assert_eq!(refused.problems.len(), 1);
        assert!(
            refused.problems[0].reason.contains("--refuse-empty-config"),
            "{}",
            refused.problems[0]
        );
        state.apply(Change::Applied(service("s", "1")));
        assert!(state.next_update().is_none(), "still refusing");
        state.apply(Change::Applied(ingress("api", "2")));
        let update = state.next_update().expect("ingresses are back");
        assert!(update.problems.is_empty());
        assert_eq!(update.store.ingresses.len(), 1);
        assert_eq!(update.store.services.len(), 1);
    }

    #[test]
    fn an_empty_list_is_applied_when_refusal_is_off_or_nothing_was_served() {
        let mut state = SyncState::new(kinds(&[ObjectKind::Ingress]), true);
        listed(&mut state, ObjectKind::Ingress, vec![]);
        assert!(
            state
                .next_update()
                .expect("first")
                .store
                .ingresses
                .is_empty()
        );

        let mut state = SyncState::new(kinds(&[ObjectKind::Ingress]), false);
        listed(&mut state, ObjectKind::Ingress, vec![ingress("web", "1")]);
        state.next_update().expect("first");
        state.apply(Change::Deleted(ingress("web", "1")));
        let update = state.next_update().expect("applied");
        assert!(update.store.ingresses.is_empty());
        assert!(update.problems.is_empty());
    }

    #[test]
    fn a_status_write_is_published_without_moving_the_ingress_revision() {
        let mut state = SyncState::new(kinds(&[ObjectKind::Ingress]), true);
        listed(&mut state, ObjectKind::Ingress, vec![ingress("web", "1")]);
        let first = state.next_update().expect("first");
        let mut with_status = ingress("web", "2");
        if let StoredObject::Ingress(ing) = &mut with_status {
            ing.status =
                serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}))
                    .unwrap();
        }
        state.apply(Change::Applied(with_status));
        let update = state.next_update().expect("the new status is published");
        assert_eq!(update.store.revisions(), first.store.revisions());
        let key = NamespacedName::new("ns", "web");
        assert!(update.store.ingresses[&key].object.status.is_some());
        assert!(state.next_update().is_none());

        let mut annotated = ingress("web", "3");
        if let StoredObject::Ingress(ing) = &mut annotated {
            ing.metadata.annotations = Some([("a".to_string(), "b".to_string())].into());
        }
        state.apply(Change::Applied(annotated));
        let update = state.next_update().expect("an annotation change");
        assert_ne!(update.store.revisions(), first.store.revisions());
    }

    #[test]
    fn an_absent_optional_kind_counts_as_listed() {
        let mut state = SyncState::new(
            kinds(&[ObjectKind::Service, ObjectKind::IngressCheckSum]),
            true,
        );
        listed(&mut state, ObjectKind::Service, vec![]);
        assert!(!state.is_synced());
        state.apply(Change::Absent(ObjectKind::IngressCheckSum));
        assert!(state.is_synced());
    }
}
