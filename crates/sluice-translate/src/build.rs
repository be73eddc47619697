//! The translation proper: Ingresses in precedence order, merged into hosts, routes, backends
//! and certificates.

use crate::annotations::{IngressAnnotations, parse_annotations};
use crate::canary::{self, CanaryIngress, PrimarySites};
use crate::memo::{CertMemo, SlotPool};
use crate::names::{PathError, compile_path, normalize_host};
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};
use sluice_model::{
    BackendKey, BackendSlot, CanaryRoute, CertSet, GlobalOptions, ObjectKind, ObjectRef, Origin,
    PathKind, PathMatch, Problem, Route, RoutePolicy, RouteTarget, ServerCert, ServicePortRef,
    TlsVersions, VirtualHost,
};
use sluice_store::{NamespacedName, ObjectStore, Stored};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// What every group of a translation shares: the store, the command line and the ConfigMap.
pub(crate) struct Shared<'a> {
    pub store: &'a ObjectStore,
    pub globals: &'a GlobalOptions,
    pub referrers: &'a crate::referrer::ReferrerLists,
    /// Policies handed out so far: Ingresses nearly always share a handful of them, so their
    /// routes share one `Arc` each instead of one per Ingress.
    pub policies: PolicyPool,
}

/// A few distinct policies, shared by equality. Bounded, so Ingresses that all differ cost a
/// short scan each, not a growing one.
#[derive(Default)]
pub(crate) struct PolicyPool(std::cell::RefCell<Vec<Arc<RoutePolicy>>>);

impl PolicyPool {
    const KEPT: usize = 16;

    fn share(&self, policy: &RoutePolicy) -> Arc<RoutePolicy> {
        let mut kept = self.0.borrow_mut();
        if let Some(found) = kept.iter().find(|p| ***p == *policy) {
            return found.clone();
        }
        let made = Arc::new(policy.clone());
        if kept.len() < Self::KEPT {
            kept.push(made.clone());
        }
        made
    }
}

/// One group's share of the snapshot: everything its Ingresses produce. Groups never share a
/// host, a TLS host or an `ssl-protocols` host (see `translator`), so outputs simply add up.
#[derive(Debug, Default)]
pub(crate) struct GroupOutput {
    pub hosts: Vec<Arc<VirtualHost>>,
    /// By TLS host spelling (`foo.com` or `*.foo.com`).
    pub certs: Vec<(String, Arc<CertSet>)>,
    pub protocols: Vec<(String, TlsVersions)>,
    /// The slots its routes use (each slot holds its key).
    pub backends: Vec<Arc<BackendSlot>>,
    /// Secrets looked up, found or not: a change to one of them changes this output.
    pub secrets: Vec<NamespacedName>,
    pub problems: Vec<Problem>,
}

/// Translates the Ingresses of one group, given in precedence order (see [`precedence`]).
pub(crate) fn translate_group(
    shared: &Shared<'_>,
    members: &[(&NamespacedName, &Stored<Ingress>)],
    certs: &mut CertMemo,
    slots: &mut SlotPool,
) -> GroupOutput {
    let mut problems = Vec::new();
    let mut accepted = Vec::new();
    for (key, stored) in members {
        if let Err((field, why)) =
            crate::referrer::referrer_accepts(&stored.object.metadata, shared.referrers)
        {
            problems.push(
                Problem::rejected(key.object_ref(ObjectKind::Ingress), why)
                    .at_field(format!("metadata.annotations[\"{field}\"]"))
                    .from_origin(Some(stored.origin.clone())),
            );
            continue;
        }
        if let Some(ctx) = accept(key, stored, shared, &mut problems) {
            accepted.push(ctx);
        }
    }
    // Canaries are never routes of their own: they attach to primaries once all are known.
    let (canaries, accepted): (Vec<_>, Vec<_>) =
        accepted.into_iter().partition(|ctx| ctx.annotations.canary);

    let mut builder = Builder {
        store: shared.store,
        regex_hosts: if shared.globals.regex_host_wide {
            regex_hosts(&accepted)
        } else {
            BTreeSet::new()
        },
        hosts: BTreeMap::new(),
        tls_hosts: BTreeSet::new(),
        certs: BTreeMap::new(),
        cert_memo: certs,
        used_secrets: BTreeSet::new(),
        slots,
        used_backends: BTreeMap::new(),
        canary_sites: PrimarySites::default(),
        protocols: BTreeMap::new(),
        problems,
    };
    for ctx in &accepted {
        builder.add_ingress(ctx);
    }
    builder.add_canaries(&canaries);
    builder.finish()
}

/// Precedence of two Ingresses. With creationTimestamp: oldest first, equal timestamps in
/// descending `namespace/name` order (ingress-nginx sorts that way, so the same objects win here as
/// there). Without one (typical of manifest files): after all timestamped ones, in ascending
/// `namespace/name` order, so the alphabetically first file-defined Ingress wins (spec section 11).
pub(crate) fn precedence(
    (key_a, a): &(&NamespacedName, &Stored<Ingress>),
    (key_b, b): &(&NamespacedName, &Stored<Ingress>),
) -> std::cmp::Ordering {
    match (
        &a.object.metadata.creation_timestamp,
        &b.object.metadata.creation_timestamp,
    ) {
        (Some(ta), Some(tb)) => ta.cmp(tb).then_with(|| key_b.cmp(key_a)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => key_a.cmp(key_b),
    }
}

/// An Ingress whose annotations are all acceptable, with what they ask for.
struct IngressCtx<'a> {
    ingress: &'a Ingress,
    namespace: &'a str,
    object: Arc<ObjectRef>,
    origin: &'a Origin,
    annotations: IngressAnnotations,
    policy: Arc<RoutePolicy>,
}

impl IngressCtx<'_> {
    fn problem(&self, problem: Problem, field: impl Into<String>) -> Problem {
        problem
            .at_field(field)
            .from_origin(Some(self.origin.clone()))
    }

    fn rejected(&self, field: impl Into<String>, reason: impl Into<String>) -> Problem {
        self.problem(Problem::rejected((*self.object).clone(), reason), field)
    }

    fn warning(&self, field: impl Into<String>, reason: impl Into<String>) -> Problem {
        self.problem(Problem::warning((*self.object).clone(), reason), field)
    }
}

/// Parses the annotations; a malformed one rejects the whole Ingress, since it cannot be served
/// as the user meant.
fn accept<'a>(
    key: &'a NamespacedName,
    stored: &'a Stored<Ingress>,
    shared: &Shared<'_>,
    problems: &mut Vec<Problem>,
) -> Option<IngressCtx<'a>> {
    let object = key.object_ref(ObjectKind::Ingress);
    match parse_annotations(stored.object.metadata.annotations.as_ref(), shared.globals) {
        Err(errors) => {
            for e in errors {
                problems.push(
                    Problem::rejected(
                        object.clone(),
                        format!(
                            "{}; the Ingress is not served until this is fixed",
                            e.reason
                        ),
                    )
                    .at_field(format!("metadata.annotations[\"{}\"]", e.key))
                    .from_origin(Some(stored.origin.clone())),
                );
            }
            None
        }
        Ok(annotations) => Some(IngressCtx {
            ingress: &stored.object,
            namespace: &key.namespace,
            object: Arc::new(object),
            origin: &stored.origin,
            policy: shared.policies.share(&annotations.policy),
            annotations,
        }),
    }
}

/// Hosts on which some Ingress turns regex on (only used with `regex-host-wide`).
fn regex_hosts(accepted: &[IngressCtx<'_>]) -> BTreeSet<String> {
    accepted
        .iter()
        .filter(|ctx| ctx.annotations.regex)
        .flat_map(|ctx| rules_of(ctx.ingress))
        .filter_map(|rule| rule.host.as_deref())
        .filter_map(|h| normalize_host(h).ok())
        .collect()
}

fn rules_of(ingress: &Ingress) -> &[k8s_openapi::api::networking::v1::IngressRule] {
    ingress
        .spec
        .as_ref()
        .and_then(|s| s.rules.as_deref())
        .unwrap_or(&[])
}

/// One host while it is being assembled.
struct HostBuilder {
    /// The first (oldest) Ingress naming the host: its defaultBackend is the host's fallback.
    owner: Arc<ObjectRef>,
    routes: Vec<Route>,
    /// Which Ingress serves each (pathType, path): the oldest wins.
    claimed: HashMap<(PathClaim, String), Arc<ObjectRef>>,
    fallback: Option<Route>,
}

/// The path type half of a (pathType, path) claim on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum PathClaim {
    Exact,
    Prefix,
    Regex,
}

impl PathClaim {
    fn of(matcher: &PathMatch) -> Self {
        match matcher.kind() {
            PathKind::Exact => PathClaim::Exact,
            PathKind::Prefix => PathClaim::Prefix,
            PathKind::Regex => PathClaim::Regex,
        }
    }
}

struct Builder<'a> {
    store: &'a ObjectStore,
    regex_hosts: BTreeSet<String>,
    /// By name; `""` is the default server.
    hosts: BTreeMap<String, HostBuilder>,
    tls_hosts: BTreeSet<String>,
    /// By TLS host spelling (`foo.com` or `*.foo.com`).
    certs: BTreeMap<String, Vec<ServerCert>>,
    /// Secrets are parsed once, however many Ingresses (and translations) name them.
    cert_memo: &'a mut CertMemo,
    used_secrets: BTreeSet<NamespacedName>,
    /// One slot per backend across the whole snapshot, whichever group names it.
    slots: &'a mut SlotPool,
    used_backends: BTreeMap<BackendKey, Arc<BackendSlot>>,
    /// Primary routes by host, pathType and path, for canaries to find.
    canary_sites: PrimarySites,
    /// `ssl-protocols` by host, from the first Ingress of the host that sets it, with that
    /// Ingress.
    protocols: BTreeMap<String, (TlsVersions, Arc<ObjectRef>)>,
    problems: Vec<Problem>,
}

impl Builder<'_> {
    fn add_ingress(&mut self, ctx: &IngressCtx<'_>) {
        let rules = rules_of(ctx.ingress);
        let spec = ctx.ingress.spec.as_ref();
        let default_backend = spec.and_then(|s| s.default_backend.as_ref());
        if rules.is_empty() && default_backend.is_none() {
            let p = ctx.rejected(
                "spec",
                "the Ingress has neither rules nor a defaultBackend, so it serves nothing; add \
                 spec.rules or spec.defaultBackend",
            );
            self.problems.push(p);
        }

        // Hosts this Ingress names, in rule order, without duplicates.
        let mut named_hosts: Vec<String> = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            let host = match rule.host.as_deref().filter(|h| !h.is_empty()) {
                None => String::new(),
                Some(h) => match normalize_host(h) {
                    Ok(h) => h,
                    Err(why) => {
                        let p = ctx.rejected(
                            format!("spec.rules[{i}].host"),
                            format!("{why}; this rule is not served"),
                        );
                        self.problems.push(p);
                        continue;
                    }
                },
            };
            self.hosts
                .entry(host.clone())
                .or_insert_with(|| HostBuilder {
                    owner: ctx.object.clone(),
                    routes: Vec::new(),
                    claimed: HashMap::new(),
                    fallback: None,
                });
            if !named_hosts.contains(&host) {
                named_hosts.push(host.clone());
            }
            let paths = rule
                .http
                .as_ref()
                .map(|h| h.paths.as_slice())
                .unwrap_or(&[]);
            for (j, path) in paths.iter().enumerate() {
                self.add_path(
                    ctx,
                    &host,
                    &format!("spec.rules[{i}].http.paths[{j}]"),
                    path,
                );
            }
        }

        if let Some(backend) = default_backend {
            self.add_default_backend(ctx, backend, rules.is_empty(), &named_hosts);
        }
        self.add_tls(ctx);
        if let Some(versions) = ctx.annotations.ssl_protocols {
            self.add_protocols(ctx, &named_hosts, versions);
        }
    }

    /// The first Ingress (in precedence order) that sets `ssl-protocols` for a host decides it;
    /// canaries never do (they are not primaries).
    fn add_protocols(&mut self, ctx: &IngressCtx<'_>, hosts: &[String], versions: TlsVersions) {
        for host in hosts.iter().filter(|h| !h.is_empty()) {
            match self.protocols.get(host) {
                None => {
                    self.protocols
                        .insert(host.clone(), (versions, ctx.object.clone()));
                }
                Some((winner, owner)) if *winner != versions => {
                    let p = ctx.warning(
                        format!(
                            "metadata.annotations[\"{}ssl-protocols\"]",
                            crate::annotations::PREFIX
                        ),
                        format!(
                            "host {host} already takes its ssl-protocols from {owner}, which \
                             takes precedence; this value is ignored for that host"
                        ),
                    );
                    self.problems.push(p);
                }
                Some(_) => {}
            }
        }
    }

    fn add_path(
        &mut self,
        ctx: &IngressCtx<'_>,
        host: &str,
        field: &str,
        path: &k8s_openapi::api::networking::v1::HTTPIngressPath,
    ) {
        // ingress-nginx serves an omitted path as `/`.
        let text = path
            .path
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or("/");
        let regex = ctx.annotations.regex || self.regex_hosts.contains(host);
        let matcher = match compile_path(text, &path.path_type, regex) {
            Ok(m) => m,
            Err(PathError::Path(why)) => {
                let p = ctx.rejected(
                    format!("{field}.path"),
                    format!("{why}; this path is not served"),
                );
                self.problems.push(p);
                return;
            }
            Err(PathError::PathType(why)) => {
                let p = ctx.rejected(
                    format!("{field}.pathType"),
                    format!("{why}; this path is not served"),
                );
                self.problems.push(p);
                return;
            }
        };
        let backend = match backend_key(ctx.namespace, &path.backend) {
            Ok(key) => key,
            Err((suffix, why)) => {
                let p = ctx.rejected(
                    format!("{field}.backend{suffix}"),
                    format!("{why}; this path is not served"),
                );
                self.problems.push(p);
                return;
            }
        };
        let Some(entry) = self.hosts.get_mut(host) else {
            return;
        };
        let claim = (PathClaim::of(&matcher), matcher.as_str().to_string());
        if let Some(winner) = entry.claimed.get(&claim) {
            let shown = if host.is_empty() { "(any host)" } else { host };
            let p = ctx.warning(
                format!("{field}.path"),
                format!(
                    "host {shown} path {} ({:?}) is already served by {winner}, which takes \
                     precedence (older creationTimestamp; at equal times the greater \
                     namespace/name); this path is ignored; remove it from one of the two Ingresses",
                    matcher.as_str(),
                    matcher.kind()
                ),
            );
            self.problems.push(p);
            return;
        }
        entry.claimed.insert(claim, ctx.object.clone());
        let slot = self.slot(backend);
        let Some(entry) = self.hosts.get_mut(host) else {
            return;
        };
        entry.routes.push(route(ctx, matcher, slot));
        self.canary_sites.record(
            host,
            &path.path_type,
            text,
            entry.routes.len() - 1,
            &ctx.object,
            ctx.origin,
            ctx.ingress.metadata.annotations.as_ref(),
        );
    }

    /// Gives each primary route the canaries that name its host, path and pathType.
    fn add_canaries(&mut self, canaries: &[IngressCtx<'_>]) {
        let inputs: Vec<CanaryIngress<'_>> = canaries
            .iter()
            .map(|ctx| CanaryIngress {
                ingress: ctx.ingress,
                namespace: ctx.namespace,
                object: ctx.object.clone(),
                origin: ctx.origin,
            })
            .collect();
        let (store, slots, used) = (self.store, &mut *self.slots, &mut self.used_backends);
        let attached = canary::attach(
            std::mem::take(&mut self.canary_sites),
            &inputs,
            backend_key,
            |key| {
                let slot = slots.slot(store, key);
                used.insert(slot.key.clone(), slot.clone());
                slot
            },
            &mut self.problems,
        );
        for a in attached {
            let Some(route) = self
                .hosts
                .get_mut(&a.host)
                .and_then(|h| h.routes.get_mut(a.route_index))
            else {
                continue;
            };
            route.target = RouteTarget::Canaries(Arc::new(CanaryRoute {
                primary: route.backend().clone(),
                canaries: a.canaries,
                weight_total: a.weight_total,
            }));
        }
    }

    fn add_default_backend(
        &mut self,
        ctx: &IngressCtx<'_>,
        backend: &IngressBackend,
        catch_all: bool,
        named_hosts: &[String],
    ) {
        let field = "spec.defaultBackend";
        let backend = match backend_key(ctx.namespace, backend) {
            Ok(key) => key,
            Err((suffix, why)) => {
                let p = ctx.rejected(
                    format!("{field}{suffix}"),
                    format!("{why}; the default backend is not used"),
                );
                self.problems.push(p);
                return;
            }
        };
        if catch_all {
            let existing = self
                .hosts
                .entry(String::new())
                .or_insert_with(|| HostBuilder {
                    owner: ctx.object.clone(),
                    routes: Vec::new(),
                    claimed: HashMap::new(),
                    fallback: None,
                })
                .fallback
                .as_ref()
                .map(|f| f.ingress.clone());
            if let Some(existing) = existing {
                let p = ctx.warning(
                    field,
                    format!(
                        "the catch-all backend is already provided by {existing}, which takes \
                         precedence (older creationTimestamp; at equal times the greater \
                         namespace/name); this defaultBackend is ignored; keep only one Ingress \
                         without rules"
                    ),
                );
                self.problems.push(p);
            } else {
                let slot = self.slot(backend);
                if let Some(default) = self.hosts.get_mut("") {
                    default.fallback = Some(route(ctx, PathMatch::prefix("/"), slot));
                }
            }
            return;
        }
        // With rules, the defaultBackend is the fallback of this Ingress's own hosts, and only of
        // those it is the first to name (ingress-nginx's server-block owner).
        for host in named_hosts.iter().filter(|h| !h.is_empty()) {
            let Some(entry) = self.hosts.get_mut(host) else {
                continue;
            };
            if entry.owner == ctx.object {
                if entry.fallback.is_none() {
                    let slot = self.slot(backend.clone());
                    if let Some(entry) = self.hosts.get_mut(host) {
                        entry.fallback = Some(route(ctx, PathMatch::prefix("/"), slot));
                    }
                }
            } else {
                let owner = entry.owner.clone();
                let p = ctx.warning(
                    field,
                    format!(
                        "not used for host {host}: {owner} takes precedence on that host (older \
                         creationTimestamp; at equal times the greater namespace/name), so its \
                         defaultBackend (or none) applies; move the defaultBackend there"
                    ),
                );
                self.problems.push(p);
            }
        }
    }

    fn add_tls(&mut self, ctx: &IngressCtx<'_>) {
        let entries = ctx
            .ingress
            .spec
            .as_ref()
            .and_then(|s| s.tls.as_deref())
            .unwrap_or(&[]);
        for (i, tls) in entries.iter().enumerate() {
            let mut hosts = Vec::new();
            for (k, host) in tls.hosts.as_deref().unwrap_or(&[]).iter().enumerate() {
                match normalize_host(host) {
                    Ok(h) => hosts.push(h),
                    Err(why) => {
                        let p = ctx.rejected(format!("spec.tls[{i}].hosts[{k}]"), why);
                        self.problems.push(p);
                    }
                }
            }
            if hosts.is_empty() {
                let p = ctx.warning(
                    format!("spec.tls[{i}].hosts"),
                    "this TLS entry names no (valid) host, so no host uses its certificate; list \
                     the hosts it is for",
                );
                self.problems.push(p);
                continue;
            }
            self.tls_hosts.extend(hosts.iter().cloned());
            let field = format!("spec.tls[{i}].secretName");
            let Some(secret_name) = tls.secret_name.as_deref().filter(|s| !s.is_empty()) else {
                let p = ctx.rejected(
                    field,
                    "no secretName: these hosts are served with the default certificate; name a \
                     kubernetes.io/tls Secret in the Ingress's namespace",
                );
                self.problems.push(p);
                continue;
            };
            let secret_key = NamespacedName::new(ctx.namespace, secret_name);
            match self.server_cert(&secret_key) {
                Ok(cert) => {
                    for host in &hosts {
                        self.add_cert(ctx, &field, host, &cert);
                    }
                }
                Err(why) => {
                    let p = ctx.rejected(
                        field,
                        format!(
                            "Secret {secret_key}: {why}. Until then {} served with the default \
                             certificate",
                            if hosts.len() == 1 {
                                format!("{} is", hosts[0])
                            } else {
                                format!("{} are", hosts.join(", "))
                            }
                        ),
                    );
                    self.problems.push(p);
                }
            }
        }
    }

    /// One certificate per key algorithm per host: several Secrets give a dual ECDSA + RSA host;
    /// for the same algorithm the oldest Ingress (or earlier entry) wins.
    fn add_cert(&mut self, ctx: &IngressCtx<'_>, field: &str, host: &str, cert: &ServerCert) {
        let list = self.certs.entry(host.to_string()).or_default();
        if list.iter().any(|c| c.secret == cert.secret) {
            return;
        }
        if let Some(existing) = list.iter().find(|c| c.algorithm == cert.algorithm) {
            let p = ctx.warning(
                field,
                format!(
                    "host {host} already has a {:?} certificate from Secret {}/{} (named earlier \
                     or by an older Ingress); this one is ignored for that host",
                    cert.algorithm, existing.secret.namespace, existing.secret.name
                ),
            );
            self.problems.push(p);
            return;
        }
        list.push(cert.clone());
    }

    fn server_cert(&mut self, key: &NamespacedName) -> Result<ServerCert, String> {
        self.used_secrets.insert(key.clone());
        self.cert_memo.server_cert(self.store, key)
    }

    fn slot(&mut self, key: BackendKey) -> Arc<BackendSlot> {
        let slot = self.slots.slot(self.store, key);
        self.used_backends.insert(slot.key.clone(), slot.clone());
        slot
    }

    fn finish(self) -> GroupOutput {
        let mut hosts = Vec::with_capacity(self.hosts.len());
        for (name, host) in self.hosts {
            let mut routes = host.routes;
            routes.sort_by(|a, b| a.path.match_order(&b.path));
            hosts.push(Arc::new(VirtualHost {
                tls: is_tls_host(&self.tls_hosts, &name),
                name,
                routes,
                fallback: host.fallback,
            }));
        }
        GroupOutput {
            hosts,
            certs: self
                .certs
                .into_iter()
                .map(|(name, certs)| (name, Arc::new(CertSet::new(certs))))
                .collect(),
            protocols: self
                .protocols
                .into_iter()
                .map(|(host, (versions, _))| (host, versions))
                .collect(),
            backends: self.used_backends.into_values().collect(),
            secrets: self.used_secrets.into_iter().collect(),
            problems: self.problems,
        }
    }
}

/// Listed in some `spec.tls`, directly or (for an exact host) through a one-label wildcard, as
/// the certificate lookup by SNI would find it.
fn is_tls_host(tls_hosts: &BTreeSet<String>, name: &str) -> bool {
    if name.is_empty() {
        return false;
    }
    if tls_hosts.contains(name) {
        return true;
    }
    match name.split_once('.') {
        Some((first, parent)) if first != "*" => tls_hosts.contains(&format!("*.{parent}")),
        _ => false,
    }
}

/// The backend an Ingress names. The error is a field suffix and a reason.
fn backend_key(
    namespace: &str,
    backend: &IngressBackend,
) -> Result<BackendKey, (&'static str, String)> {
    if backend.resource.is_some() {
        return Err((
            ".resource",
            "resource backends are not supported; point the path at a Service with \
                 backend.service"
                .to_string(),
        ));
    }
    let Some(service) = backend.service.as_ref().filter(|s| !s.name.is_empty()) else {
        return Err((
            "",
            "the backend names no Service; set backend.service.name and backend.service.port"
                .to_string(),
        ));
    };
    let port_ref = service.port.as_ref();
    let port = match (
        port_ref.and_then(|p| p.number),
        port_ref
            .and_then(|p| p.name.as_deref())
            .filter(|n| !n.is_empty()),
    ) {
        (Some(n), None) if (1..=65535).contains(&n) => ServicePortRef::Number(n),
        (None, Some(name)) => ServicePortRef::Name(name.to_string()),
        (Some(n), None) => {
            return Err((
                ".service.port.number",
                format!("{n} is not a port number; use 1 to 65535"),
            ));
        }
        _ => {
            return Err((
                ".service.port",
                "set exactly one of service.port.number and service.port.name".to_string(),
            ));
        }
    };
    Ok(BackendKey {
        namespace: namespace.to_string(),
        service: service.name.clone(),
        port,
    })
}

fn route(ctx: &IngressCtx<'_>, path: PathMatch, slot: Arc<BackendSlot>) -> Route {
    Route {
        path,
        target: RouteTarget::Backend(slot),
        policy: ctx.policy.clone(),
        ingress: ctx.object.clone(),
    }
}
