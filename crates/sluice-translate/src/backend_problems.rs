//! Routes whose Service is missing answer 503; say so where users look for problems. Computed from
//! the snapshot, not the store, so it stays true after endpoint-only updates too.

use sluice_model::{BackendSlot, Endpoints, Problem, RouteTarget, Snapshot, Unavailable};
use std::collections::BTreeSet;

/// A warning per (Ingress, backend) whose Service or Service port does not exist, canary
/// Ingresses included.
pub fn backend_problems(snapshot: &Snapshot) -> Vec<Problem> {
    // Usually every backend is fine: then there is no need to walk every route.
    if !any_backend_unavailable(snapshot) {
        return Vec::new();
    }
    let mut seen = BTreeSet::new();
    let mut problems = Vec::new();
    let routes = snapshot
        .hosts
        .iter()
        .flat_map(|vhost| vhost.routes.iter().chain(vhost.fallback.as_ref()));
    let backends = routes.flat_map(|route| {
        let canaries = match &route.target {
            RouteTarget::Canaries(set) => &set.canaries[..],
            RouteTarget::Backend(_) => &[],
        };
        std::iter::once((&route.ingress, route.backend())).chain(
            canaries
                .iter()
                .map(|c| (&c.target.ingress, &c.target.backend)),
        )
    });
    for (ingress, slot) in backends {
        let Some(reason) = unavailable_reason(slot) else {
            continue;
        };
        if seen.insert(((**ingress).clone(), slot.key.clone())) {
            problems.push(Problem::warning((**ingress).clone(), reason));
        }
    }
    problems
}

/// Whether some backend of the snapshot has no Service or no such Service port (what
/// [`backend_problems`] reports). Depends only on the backend map and the slots' endpoints.
pub fn any_backend_unavailable(snapshot: &Snapshot) -> bool {
    snapshot
        .backends
        .values()
        .any(|slot| unavailable_reason(slot).is_some())
}

fn unavailable_reason(slot: &BackendSlot) -> Option<String> {
    let key = &slot.key;
    match slot.endpoints().as_ref() {
        Endpoints::Unavailable(Unavailable::NoService) => Some(format!(
            "Service {}/{} does not exist: its paths answer 503 until it is created \
             (check the name in spec.rules[].http.paths[].backend.service)",
            key.namespace, key.service
        )),
        Endpoints::Unavailable(Unavailable::NoServicePort) => Some(format!(
            "Service {}/{} has no port {}: its paths answer 503 (name or number the port as the \
             Service's spec.ports lists it)",
            key.namespace, key.service, key.port
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_model::{
        BackendKey, HostTable, ObjectKind, ObjectRef, PathMatch, Route, RoutePolicy,
        ServicePortRef, Upstream, VirtualHost,
    };
    use std::sync::Arc;

    fn route(service: &str, endpoints: Endpoints) -> Route {
        let key = BackendKey {
            namespace: "shop".into(),
            service: service.into(),
            port: ServicePortRef::Number(80),
        };
        Route {
            path: PathMatch::prefix("/"),
            target: RouteTarget::Backend(Arc::new(BackendSlot::new(key, endpoints))),
            policy: Arc::new(RoutePolicy::default()),
            ingress: Arc::new(ObjectRef::new(ObjectKind::Ingress, "shop", "web")),
        }
    }

    #[test]
    fn missing_services_are_warned_once_and_healthy_ones_not_at_all() {
        let missing = route("gone", Endpoints::Unavailable(Unavailable::NoService));
        let mut hosts = HostTable::default();
        hosts.insert(Arc::new(VirtualHost {
            name: "a.test".into(),
            routes: vec![
                missing.clone(),
                missing,
                route(
                    "ok",
                    Endpoints::Ready(vec![Upstream::Dns {
                        host: "x".into(),
                        port: 80,
                    }]),
                ),
                route(
                    "idle",
                    Endpoints::Unavailable(Unavailable::NoReadyEndpoints),
                ),
            ],
            ..Default::default()
        }));
        // As translation makes it: every slot a route uses is listed.
        let backends = hosts
            .iter()
            .flat_map(|v| v.routes.iter())
            .map(|r| (r.backend().key.clone(), r.backend().clone()))
            .collect();
        let snapshot = Snapshot {
            hosts,
            backends: Arc::new(backends),
            ..Default::default()
        };
        let problems = backend_problems(&snapshot);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0]
                .reason
                .contains("Service shop/gone does not exist")
        );
    }
}
