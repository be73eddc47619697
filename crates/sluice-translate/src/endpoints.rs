//! Backend resolution, Kubernetes' way: Ingress port -> Service port -> EndpointSlice port of the
//! same name -> ready addresses. Legacy v1 Endpoints are read only when a Service has no slices.

use sluice_model::{
    BackendKey, BackendSlot, Endpoints, ServicePortRef, Snapshot, Unavailable, Upstream,
};
use sluice_store::slim::{NamedPort, SlimEndpointSlice, SlimEndpoints, SlimService};
use sluice_store::{DiffItem, NamespacedName, ObjectStore, Stored, changed_keys};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

/// Endpoints of one backend, Kubernetes' way.
pub fn resolve_endpoints(store: &ObjectStore, key: &BackendKey) -> Endpoints {
    let service_key = NamespacedName::new(key.namespace.clone(), key.service.clone());
    let Some(service) = store.services.get(&service_key) else {
        return Endpoints::Unavailable(Unavailable::NoService);
    };
    let service = service.object.as_ref();
    if let Some(host) = service.external_name.as_deref() {
        return match external_port(service, &key.port) {
            Some(port) => Endpoints::Ready(vec![Upstream::Dns {
                host: host.to_string(),
                port,
            }]),
            None => Endpoints::Unavailable(Unavailable::NoServicePort),
        };
    }
    let Some(service_port) = find_service_port(service, &key.port) else {
        return Endpoints::Unavailable(Unavailable::NoServicePort);
    };
    let wanted = WantedPort {
        name: service_port.name_or_empty(),
        only_port: service.ports.len() == 1,
    };

    let mut ready = BTreeSet::new();
    let mut any_slice = false;
    for slice in store.endpoint_slices_of(&service_key) {
        any_slice = true;
        collect_slice(&slice.object, &wanted, &mut ready);
    }
    if !any_slice && let Some(legacy) = store.endpoints.get(&service_key) {
        collect_legacy(&legacy.object, &wanted, &mut ready);
    }
    if ready.is_empty() {
        Endpoints::Unavailable(Unavailable::NoReadyEndpoints)
    } else {
        Endpoints::Ready(ready.into_iter().map(Upstream::Socket).collect())
    }
}

/// The Services whose endpoints can differ between two versions of a store: changed Services,
/// changed legacy Endpoints, and the Services named (before or after) by changed EndpointSlices.
/// Unchanged parts of the persistent maps are skipped, so this costs what changed.
pub fn services_changed(before: &ObjectStore, now: &ObjectStore) -> BTreeSet<NamespacedName> {
    let mut changed: BTreeSet<NamespacedName> = changed_keys(&before.services, &now.services)
        .into_iter()
        .chain(changed_keys(&before.endpoints, &now.endpoints))
        .collect();
    let service_of = |key: &NamespacedName, slice: &Stored<SlimEndpointSlice>| {
        let service = slice.object.service.as_deref()?;
        Some(NamespacedName::new(key.namespace.clone(), service))
    };
    for item in before.endpoint_slices.diff(&now.endpoint_slices) {
        match item {
            DiffItem::Add(key, slice) | DiffItem::Remove(key, slice) => {
                changed.extend(service_of(key, slice));
            }
            DiffItem::Update {
                old: (key, old),
                new: (_, new),
            } => {
                changed.extend(service_of(key, old));
                changed.extend(service_of(key, new));
            }
        }
    }
    changed
}

/// Sets the slots of `services` (every port) from the store.
pub fn refresh_services(
    store: &ObjectStore,
    backends: &BTreeMap<BackendKey, Arc<BackendSlot>>,
    services: &BTreeSet<NamespacedName>,
) {
    for service in services {
        let of_service = backends
            .range(first_key_of(service)..)
            .take_while(|(key, _)| is_of(key, service));
        for (key, slot) in of_service {
            slot.set_endpoints(resolve_endpoints(store, key));
        }
    }
}

/// The least backend key of `service`: in key order all its ports follow it (see [`is_of`]).
pub(crate) fn first_key_of(service: &NamespacedName) -> BackendKey {
    BackendKey {
        namespace: service.namespace.clone(),
        service: service.name.clone(),
        port: ServicePortRef::Number(i32::MIN),
    }
}

pub(crate) fn is_of(key: &BackendKey, service: &NamespacedName) -> bool {
    key.namespace == service.namespace && key.service == service.name
}

/// For an endpoint-only change: sets every slot of `snapshot.backends` from the store.
pub fn refresh_endpoints(store: &ObjectStore, snapshot: &Snapshot) {
    for (key, slot) in snapshot.backends.iter() {
        slot.set_endpoints(resolve_endpoints(store, key));
    }
}

/// An ExternalName Service has no endpoints: the Ingress's port number is used as is, a port
/// name is looked up among the Service's ports.
fn external_port(service: &SlimService, port: &ServicePortRef) -> Option<u16> {
    let number = match port {
        ServicePortRef::Number(n) => *n,
        ServicePortRef::Name(_) => find_service_port(service, port)?.port,
    };
    u16::try_from(number).ok().filter(|p| *p != 0)
}

fn find_service_port<'a>(service: &'a SlimService, port: &ServicePortRef) -> Option<&'a NamedPort> {
    let ports = &service.ports;
    match port {
        ServicePortRef::Number(n) => ports.iter().find(|p| p.port == *n),
        ServicePortRef::Name(name) => ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name.as_str())),
    }
}

/// The Service port whose endpoints are wanted.
struct WantedPort<'a> {
    /// Its name; empty when unnamed.
    name: &'a str,
    /// The Service has just this one port.
    only_port: bool,
}

impl WantedPort<'_> {
    /// Kubernetes pairs ports by name. Hand-written slices and Endpoints often get the name
    /// wrong, so when the choice is unambiguous (the Service has one port, or its port is
    /// unnamed, and the slice has one port) that port is taken.
    fn pick<'p, P>(&self, ports: &'p [P], name_of: impl Fn(&P) -> &str) -> Option<&'p P> {
        ports
            .iter()
            .find(|p| name_of(p) == self.name)
            .or(match ports {
                [only] if self.name.is_empty() || self.only_port => Some(only),
                _ => None,
            })
    }
}

fn collect_slice(
    slice: &SlimEndpointSlice,
    wanted: &WantedPort<'_>,
    out: &mut BTreeSet<SocketAddr>,
) {
    let chosen = wanted.pick(&slice.ports, |p| p.name_or_empty());
    let Some(port) = chosen
        .and_then(|p| p.port)
        .and_then(|p| u16::try_from(p).ok())
    else {
        return;
    };
    out.extend(
        slice
            .ready_addresses
            .iter()
            .map(|ip| SocketAddr::new(*ip, port)),
    );
}

fn collect_legacy(
    endpoints: &SlimEndpoints,
    wanted: &WantedPort<'_>,
    out: &mut BTreeSet<SocketAddr>,
) {
    for subset in &endpoints.subsets {
        let chosen = wanted.pick(&subset.ports, |p| p.name_or_empty());
        let Some(port) = chosen.and_then(|p| u16::try_from(p.port).ok()) else {
            continue;
        };
        out.extend(subset.addresses.iter().map(|ip| SocketAddr::new(*ip, port)));
    }
}
