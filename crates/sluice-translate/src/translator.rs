//! Translation of store after store, redoing only what a change can affect.
//!
//! Ingresses interact only through the names they share: two Ingresses naming the same host
//! merge (precedence, path claims, the owner's defaultBackend, `ssl-protocols`, canaries,
//! `regex-host-wide`), two listing the same TLS host share its certificates, and a TLS entry for
//! `*.foo.com` makes every `x.foo.com` host a TLS host. Ingresses are therefore split into
//! groups closed under those relations, and each group is translated on its own by the same
//! code, in the same precedence order, as a translation of everything would. A change marks
//! dirty the groups of the Ingresses it touches and of the names they name (old and new), and
//! of the Secrets it changes; only those are translated again and the rest of the snapshot is
//! reused. The ConfigMap or an IngressClass changing redoes everything.
//!
//! Strong names (hosts as written in rules, `""` for the default server, TLS hosts) join every
//! group naming them. A rule host `x.foo.com` also has the weak name `*.foo.com`: it joins the
//! group holding `*.foo.com` as a strong name, if any, but weak names alone do not join groups
//! (otherwise every host under one domain would be one group).

use crate::build::{GroupOutput, PolicyPool, Shared, precedence, translate_group};
use crate::class::is_ours;
use crate::globals::global_options;
use crate::memo::{CertMemo, SlotPool};
use crate::names::normalize_host;
use crate::referrer::ReferrerLists;
use crate::{TranslateOptions, Translation};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use sluice_model::{
    BackendSlot, CertSet, CertStore, HostChanges, HostTable, ObjectKind, Problem, SharedMap,
    Snapshot, TlsVersions, VirtualHost,
};
use sluice_store::{NamespacedName, ObjectStore, Stored, changed_keys};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

type GroupId = u64;

/// Keeps what the previous translation made so that the next one can reuse it. Its results are
/// always the same as [`crate::translate`]'s on the same store, apart from the order of problems
/// of different groups.
pub struct Translator {
    opts: TranslateOptions,
    /// What every group depends on; any change redoes everything.
    globals_seen: Option<GlobalInputs>,
    /// The store translated last (a cheap clone: persistent maps). The next one is compared with
    /// it, the unchanged parts shared and skipped: its Ingresses and Secrets decide what to
    /// translate again, its Services and endpoints which reused slots to fill again.
    seen: Option<ObjectStore>,
    members: BTreeMap<NamespacedName, Member>,
    /// Strong name -> the group naming it.
    owners: HashMap<String, GroupId>,
    /// Weak name `*.foo.com` -> Ingresses with a host under `foo.com`.
    weak: HashMap<String, BTreeSet<NamespacedName>>,
    groups: HashMap<GroupId, Group>,
    next_group: GroupId,
    secret_users: HashMap<NamespacedName, BTreeSet<GroupId>>,
    certs: CertMemo,
    slots: SlotPool,
    hosts: HostTable,
    exact_certs: SharedMap<String, Arc<CertSet>>,
    wildcard_certs: SharedMap<String, Arc<CertSet>>,
    protocols: SharedMap<String, TlsVersions>,
    /// By the least `namespace/name` of the group, so problems come out in a stable order.
    problems: BTreeMap<NamespacedName, Vec<Problem>>,
    /// What the translation under way took out of and put into `hosts`.
    host_changes: HostChanges,
}

struct Member {
    /// `None` when the Ingress is not ours.
    names: Option<Names>,
    group: Option<GroupId>,
}

#[derive(Default)]
struct Names {
    strong: Vec<String>,
    weak: Vec<String>,
}

/// What is kept of a group between translations: 20,000 of them live as long as the
/// translator, so it holds no copies it can do without (a slot holds its key; the least
/// member, which keys the group's problems, is found again on removal).
struct Group {
    /// Ascending (as `regroup` makes them).
    members: Box<[NamespacedName]>,
    strong: Box<[String]>,
    hosts: Box<[Arc<VirtualHost>]>,
    backends: Box<[Arc<BackendSlot>]>,
    /// Most groups name no certificate, `ssl-protocols` or Secret.
    tls: Option<Box<GroupTls>>,
}

struct GroupTls {
    certs: Vec<(String, Arc<CertSet>)>,
    protocols: Vec<(String, TlsVersions)>,
    secrets: Vec<NamespacedName>,
}

impl Group {
    fn secrets(&self) -> &[NamespacedName] {
        self.tls.as_ref().map_or(&[], |t| &t.secrets)
    }

    fn certs(&self) -> &[(String, Arc<CertSet>)] {
        self.tls.as_ref().map_or(&[], |t| &t.certs)
    }

    fn protocols(&self) -> &[(String, TlsVersions)] {
        self.tls.as_ref().map_or(&[], |t| &t.protocols)
    }
}

#[derive(Clone)]
struct GlobalInputs {
    configmap: Option<Stored<ConfigMap>>,
    classes: Vec<(String, Stored<IngressClass>)>,
}

impl GlobalInputs {
    fn of(store: &ObjectStore, opts: &TranslateOptions) -> Self {
        GlobalInputs {
            configmap: opts
                .configmap
                .as_ref()
                .and_then(|key| store.config_maps.get(key))
                .cloned(),
            classes: store
                .ingress_classes
                .iter()
                .map(|(name, stored)| (name.clone(), stored.clone()))
                .collect(),
        }
    }

    fn same(&self, other: &GlobalInputs) -> bool {
        fn same_stored<T>(a: &Stored<T>, b: &Stored<T>) -> bool {
            Arc::ptr_eq(&a.object, &b.object) && a.origin == b.origin
        }
        let configmap = match (&self.configmap, &other.configmap) {
            (None, None) => true,
            (Some(a), Some(b)) => same_stored(a, b),
            _ => false,
        };
        configmap
            && self.classes.len() == other.classes.len()
            && self
                .classes
                .iter()
                .zip(&other.classes)
                .all(|((na, a), (nb, b))| na == nb && same_stored(a, b))
    }
}

impl Translator {
    pub fn new(opts: TranslateOptions) -> Self {
        Translator {
            opts,
            globals_seen: None,
            seen: None,
            members: BTreeMap::new(),
            owners: HashMap::new(),
            weak: HashMap::new(),
            groups: HashMap::new(),
            next_group: 0,
            secret_users: HashMap::new(),
            certs: CertMemo::default(),
            slots: SlotPool::default(),
            hosts: HostTable::default(),
            exact_certs: SharedMap::new(),
            wildcard_certs: SharedMap::new(),
            protocols: SharedMap::new(),
            problems: BTreeMap::new(),
            host_changes: HostChanges::default(),
        }
        .with_default_host_added()
    }

    /// A new table's default server is new to readers too.
    fn with_default_host_added(mut self) -> Self {
        self.host_changes.added.push(self.hosts.default.clone());
        self
    }

    fn replace_default_host(&mut self, vhost: Arc<VirtualHost>) {
        let old = std::mem::replace(&mut self.hosts.default, vhost.clone());
        self.host_changes.removed.push(old);
        self.host_changes.added.push(vhost);
    }

    /// The snapshot of `store`. `snapshot.version` is left 0; the caller numbers snapshots.
    pub fn translate(&mut self, store: &ObjectStore) -> Translation {
        let mut problems = Vec::new();
        let globals = global_options(store, self.opts.configmap.as_ref(), &mut problems);
        let referrers = ReferrerLists::of(store, &self.opts);
        let inputs = GlobalInputs::of(store, &self.opts);
        if !self.globals_seen.as_ref().is_some_and(|s| s.same(&inputs)) {
            self.forget_groups();
            self.globals_seen = Some(inputs);
        }
        let before = self.seen.replace(store.clone());
        if let Some(before) = &before {
            // Reused slots were filled from an older store.
            let changed = crate::endpoints::services_changed(before, store);
            self.slots.refresh_services(store, &changed);
        }

        let (dirty, mut redo) = self.take_changes(&before.unwrap_or_default(), store);
        let old_backends = self.remove_groups(&dirty, &mut redo);
        let shared = Shared {
            store,
            globals: &globals,
            referrers: &referrers,
            policies: PolicyPool::default(),
        };
        for members in self.regroup(&redo) {
            self.add_group(&shared, store, members);
        }
        for backends in &old_backends {
            self.slots.release(backends);
        }
        self.slots.sweep();

        let (default_cert, default_problem) = self.default_certificate(store);
        let users = &self.secret_users;
        let default_key = self.opts.default_ssl_certificate.as_ref();
        self.certs
            .retain(|key| users.contains_key(key) || Some(key) == default_key);

        let mut all_problems = problems;
        for group_problems in self.problems.values() {
            all_problems.extend(group_problems.iter().cloned());
        }
        all_problems.extend(default_problem);
        Translation {
            snapshot: Snapshot {
                version: 0,
                hosts: self.hosts.clone(),
                certificates: CertStore {
                    exact: self.exact_certs.clone(),
                    wildcard: self.wildcard_certs.clone(),
                    default: default_cert,
                    protocols: self.protocols.clone(),
                },
                backends: self.slots.snapshot_map(),
                options: Arc::new(globals),
            },
            problems: all_problems,
            host_changes: std::mem::take(&mut self.host_changes),
        }
    }

    fn forget_groups(&mut self) {
        let certs = std::mem::take(&mut self.certs);
        let mut changes = std::mem::take(&mut self.host_changes);
        changes.removed.extend(self.hosts.iter().cloned());
        *self = Translator {
            certs,
            ..Translator::new(self.opts.clone())
        };
        // What readers saw before is what the old table held, not what a fresh one would.
        changes.added.append(&mut self.host_changes.added);
        self.host_changes = changes;
    }

    /// Records every Ingress that changed since the last translation and returns the groups it
    /// makes dirty, with the changed Ingresses that are ours (to be grouped again).
    fn take_changes(
        &mut self,
        before: &ObjectStore,
        store: &ObjectStore,
    ) -> (BTreeSet<GroupId>, BTreeSet<NamespacedName>) {
        let changed = changed_keys(&before.ingresses, &store.ingresses);
        let mut dirty = BTreeSet::new();
        let mut redo = BTreeSet::new();
        for key in changed {
            if let Some(old) = self.members.remove(&key) {
                dirty.extend(old.group);
                if let Some(names) = old.names {
                    self.forget_weak(&key, &names);
                }
            }
            let Some(stored) = store.ingresses.get(&key) else {
                continue;
            };
            let names =
                is_ours(&stored.object, store, &self.opts).then(|| names_of(&key, &stored.object));
            if let Some(names) = &names {
                for strong in &names.strong {
                    dirty.extend(self.owners.get(strong));
                    // A new `*.foo.com` reaches every host under foo.com.
                    for other in self.weak.get(strong).into_iter().flatten() {
                        dirty.extend(self.members.get(other).and_then(|m| m.group));
                    }
                }
                for weak in &names.weak {
                    dirty.extend(self.owners.get(weak));
                    self.weak
                        .entry(weak.clone())
                        .or_default()
                        .insert(key.clone());
                }
                redo.insert(key.clone());
            }
            self.members.insert(key, Member { names, group: None });
        }
        for secret in changed_keys(&before.secrets, &store.secrets) {
            dirty.extend(self.secret_users.get(&secret).into_iter().flatten());
        }
        (dirty, redo)
    }

    fn forget_weak(&mut self, key: &NamespacedName, names: &Names) {
        for weak in &names.weak {
            if let Some(set) = self.weak.get_mut(weak) {
                set.remove(key);
                if set.is_empty() {
                    self.weak.remove(weak);
                }
            }
        }
    }

    /// Takes the dirty groups out of the snapshot; their members join `redo`. Returns the
    /// backends they held, to be released once the new groups hold theirs (so a slot that stays
    /// in use keeps its `Arc`).
    fn remove_groups(
        &mut self,
        dirty: &BTreeSet<GroupId>,
        redo: &mut BTreeSet<NamespacedName>,
    ) -> Vec<Box<[Arc<BackendSlot>]>> {
        let mut released = Vec::new();
        for id in dirty {
            let Some(group) = self.groups.remove(id) else {
                continue;
            };
            for strong in &group.strong {
                if self.owners.get(strong) == Some(id) {
                    self.owners.remove(strong);
                }
            }
            for secret in group.secrets() {
                if let Some(users) = self.secret_users.get_mut(secret) {
                    users.remove(id);
                    if users.is_empty() {
                        self.secret_users.remove(secret);
                    }
                }
            }
            for key in &group.members {
                if let Some(member) = self.members.get_mut(key)
                    && member.group == Some(*id)
                {
                    member.group = None;
                    redo.insert(key.clone());
                }
            }
            if let Some(order) = group.members.iter().min() {
                self.problems.remove(order);
            }
            for vhost in &group.hosts {
                if vhost.name.is_empty() {
                    self.replace_default_host(Arc::new(VirtualHost::default()));
                } else {
                    let removed = self.hosts.remove(&vhost.name);
                    self.host_changes.removed.extend(removed);
                }
            }
            for (name, _) in group.certs() {
                match name.strip_prefix("*.") {
                    Some(parent) => self.wildcard_certs.remove(parent),
                    None => self.exact_certs.remove(name),
                };
            }
            for (host, _) in group.protocols() {
                self.protocols.remove(host);
            }
            released.push(group.backends);
        }
        released
    }

    /// Splits `redo` into groups: Ingresses sharing a strong name, or one's weak name being
    /// another's strong name, are in one group.
    fn regroup(&self, redo: &BTreeSet<NamespacedName>) -> Vec<Vec<NamespacedName>> {
        let keys: Vec<&NamespacedName> = redo.iter().collect();
        let names: Vec<&Names> = keys
            .iter()
            .map(|k| {
                self.members
                    .get(*k)
                    .and_then(|m| m.names.as_ref())
                    .unwrap_or(&EMPTY_NAMES)
            })
            .collect();
        let mut sets = DisjointSets::new(keys.len());
        let mut first_strong: HashMap<&str, usize> = HashMap::new();
        for (i, n) in names.iter().enumerate() {
            for strong in &n.strong {
                match first_strong.get(strong.as_str()) {
                    Some(&j) => sets.union(i, j),
                    None => {
                        first_strong.insert(strong.as_str(), i);
                    }
                }
            }
        }
        for (i, n) in names.iter().enumerate() {
            for weak in &n.weak {
                if let Some(&j) = first_strong.get(weak.as_str()) {
                    sets.union(i, j);
                }
            }
        }
        let mut groups: BTreeMap<usize, Vec<NamespacedName>> = BTreeMap::new();
        for (i, key) in keys.iter().enumerate() {
            groups.entry(sets.find(i)).or_default().push((*key).clone());
        }
        groups.into_values().collect()
    }

    fn add_group(&mut self, shared: &Shared<'_>, store: &ObjectStore, keys: Vec<NamespacedName>) {
        let mut members: Vec<(&NamespacedName, &Stored<Ingress>)> = keys
            .iter()
            .filter_map(|k| store.ingresses.get_key_value(k))
            .collect();
        members.sort_by(precedence);
        let mut output = translate_group(shared, &members, &mut self.certs, &mut self.slots);

        let id = self.next_group;
        self.next_group += 1;
        let mut strong: Vec<String> = keys
            .iter()
            .filter_map(|k| self.members.get(k))
            .filter_map(|m| m.names.as_ref())
            .flat_map(|n| n.strong.iter().cloned())
            .collect();
        strong.sort();
        strong.dedup();
        for name in &strong {
            self.owners.insert(name.clone(), id);
        }
        for key in &keys {
            if let Some(member) = self.members.get_mut(key) {
                member.group = Some(id);
            }
        }
        for secret in &output.secrets {
            self.secret_users
                .entry(secret.clone())
                .or_default()
                .insert(id);
        }
        self.slots.hold(&output.backends);
        for vhost in &output.hosts {
            if vhost.name.is_empty() {
                self.replace_default_host(vhost.clone());
            } else {
                self.hosts.insert(vhost.clone());
                self.host_changes.added.push(vhost.clone());
            }
        }
        for (name, set) in &output.certs {
            match name.strip_prefix("*.") {
                Some(parent) => self.wildcard_certs.insert(parent.to_string(), set.clone()),
                None => self.exact_certs.insert(name.clone(), set.clone()),
            };
        }
        for (host, versions) in &output.protocols {
            self.protocols.insert(host.clone(), *versions);
        }
        let problems = std::mem::take(&mut output.problems);
        // `keys` comes from `regroup`, which never makes an empty group.
        if let Some(order) = keys.iter().min()
            && !problems.is_empty()
        {
            self.problems.insert(order.clone(), problems);
        }
        let GroupOutput {
            hosts,
            certs,
            protocols,
            backends,
            secrets,
            ..
        } = output;
        let tls = (!certs.is_empty() || !protocols.is_empty() || !secrets.is_empty()).then(|| {
            Box::new(GroupTls {
                certs,
                protocols,
                secrets,
            })
        });
        self.groups.insert(
            id,
            Group {
                members: keys.into_boxed_slice(),
                strong: strong.into_boxed_slice(),
                hosts: hosts.into_boxed_slice(),
                backends: backends.into_boxed_slice(),
                tls,
            },
        );
    }

    /// The `--default-ssl-certificate`, or why it cannot be used.
    fn default_certificate(
        &mut self,
        store: &ObjectStore,
    ) -> (Option<Arc<CertSet>>, Option<Problem>) {
        let Some(key) = self.opts.default_ssl_certificate.clone() else {
            return (None, None);
        };
        match self.certs.server_cert(store, &key) {
            Ok(cert) => (Some(Arc::new(CertSet::new(vec![cert]))), None),
            Err(why) => {
                let problem = Problem::rejected(
                    key.object_ref(ObjectKind::Secret),
                    format!(
                        "the --default-ssl-certificate Secret cannot be used: {why}; the \
                         generated self-signed certificate is served instead"
                    ),
                )
                .from_origin(store.secrets.get(&key).map(|s| s.origin.clone()));
                (None, Some(problem))
            }
        }
    }
}

static EMPTY_NAMES: Names = Names {
    strong: Vec::new(),
    weak: Vec::new(),
};

/// The names an Ingress's result depends on (see the module comment).
fn names_of(key: &NamespacedName, ingress: &Ingress) -> Names {
    let mut names = Names::default();
    let spec = ingress.spec.as_ref();
    let rules = spec.and_then(|s| s.rules.as_deref()).unwrap_or(&[]);
    if rules.is_empty() {
        // The catch-all (or nothing at all, which is reported): the default server.
        names.strong.push(String::new());
    }
    for rule in rules {
        match rule.host.as_deref().filter(|h| !h.is_empty()) {
            None => names.strong.push(String::new()),
            Some(host) => {
                if let Ok(host) = normalize_host(host) {
                    if let Some((first, parent)) = host.split_once('.')
                        && first != "*"
                    {
                        names.weak.push(format!("*.{parent}"));
                    }
                    names.strong.push(host);
                }
            }
        }
    }
    for tls in spec.and_then(|s| s.tls.as_deref()).unwrap_or(&[]) {
        for host in tls.hosts.as_deref().unwrap_or(&[]) {
            if let Ok(host) = normalize_host(host) {
                names.strong.push(host);
            }
        }
    }
    if names.strong.is_empty() {
        // Nothing valid to share: alone, but still translated for its problems.
        names.strong.push(format!("\0{key}"));
    }
    for list in [&mut names.strong, &mut names.weak] {
        list.sort();
        list.dedup();
    }
    names
}

/// Union-find over `0..n`.
struct DisjointSets {
    parent: Vec<usize>,
}

impl DisjointSets {
    fn new(n: usize) -> Self {
        DisjointSets {
            parent: (0..n).collect(),
        }
    }

    fn find(&mut self, mut i: usize) -> usize {
        while self.parent[i] != i {
            self.parent[i] = self.parent[self.parent[i]];
            i = self.parent[i];
        }
        i
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.parent[ra.max(rb)] = ra.min(rb);
        }
    }
}
