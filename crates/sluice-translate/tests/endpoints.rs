//! Backend resolution through Services, EndpointSlices and Endpoints.

mod common;

use common::{endpoints_for, load_yaml, show, store_of};
use sluice_model::{BackendKey, Endpoints, ServicePortRef, Unavailable, Upstream};
use sluice_translate::{
    TranslateOptions, refresh_endpoints, refresh_services, resolve_endpoints, services_changed,
    translate,
};

fn sockets(list: &[&str]) -> Endpoints {
    Endpoints::Ready(
        list.iter()
            .map(|a| Upstream::Socket(a.parse().unwrap()))
            .collect(),
    )
}

#[test]
fn ports_addresses_and_readiness_follow_kubernetes() {
    let t = translate(&store_of(&["endpoints.yaml"]), &TranslateOptions::default());
    assert!(t.problems.is_empty(), "{}", show(&t.problems));
    let s = &t.snapshot;
    let web_http = sockets(&["10.0.0.1:8080", "10.0.0.3:8080", "10.0.0.5:8080"]);
    assert_eq!(endpoints_for(s, "shop.test", "/by-name"), web_http);
    assert_eq!(endpoints_for(s, "shop.test", "/by-number"), web_http);
    assert_eq!(
        endpoints_for(s, "shop.test", "/metrics"),
        sockets(&["10.0.0.1:9100", "10.0.0.3:9100", "10.0.0.5:9100"])
    );
    assert_eq!(
        endpoints_for(s, "shop.test", "/external"),
        Endpoints::Ready(vec![Upstream::Dns {
            host: "api.example.org".into(),
            port: 443
        }])
    );
    assert_eq!(
        endpoints_for(s, "shop.test", "/external-named"),
        Endpoints::Ready(vec![Upstream::Dns {
            host: "api.example.org".into(),
            port: 8443
        }])
    );
    assert_eq!(
        endpoints_for(s, "shop.test", "/legacy"),
        sockets(&["10.1.0.1:8080", "10.1.0.2:8080"])
    );
    assert_eq!(
        endpoints_for(s, "shop.test", "/unnamed"),
        sockets(&["[fd00::1]:8080"])
    );
    assert_eq!(
        endpoints_for(s, "shop.test", "/single"),
        sockets(&["10.3.0.1:8080"])
    );
}

#[test]
fn unavailable_backends_say_why_and_only_for_their_path() {
    let t = translate(&store_of(&["endpoints.yaml"]), &TranslateOptions::default());
    let s = &t.snapshot;
    assert_eq!(
        endpoints_for(s, "shop.test", "/missing"),
        Endpoints::Unavailable(Unavailable::NoService)
    );
    assert_eq!(
        endpoints_for(s, "shop.test", "/bad-port"),
        Endpoints::Unavailable(Unavailable::NoServicePort)
    );
    assert_eq!(
        endpoints_for(s, "shop.test", "/unready"),
        Endpoints::Unavailable(Unavailable::NoReadyEndpoints)
    );
    // The missing Service does not disturb its neighbours.
    assert!(matches!(
        endpoints_for(s, "shop.test", "/by-name"),
        Endpoints::Ready(_)
    ));
}

#[test]
fn routes_share_one_slot_per_backend_key() {
    let t = translate(&store_of(&["endpoints.yaml"]), &TranslateOptions::default());
    let s = &t.snapshot;
    // web:http and web:80 are distinct keys (as the Ingress names them) but resolve alike.
    assert_eq!(s.backends.len(), 11);
    let vhost = s.hosts.lookup("shop.test");
    let slot = vhost.find("/by-name").unwrap().backend();
    let key = BackendKey {
        namespace: "shop".into(),
        service: "web".into(),
        port: ServicePortRef::Name("http".into()),
    };
    assert!(std::sync::Arc::ptr_eq(slot, &s.backends[&key]));
}

#[test]
fn refresh_endpoints_updates_slots_in_place() {
    let mut store = store_of(&["endpoints.yaml"]);
    let t = translate(&store, &TranslateOptions::default());
    let key = BackendKey {
        namespace: "shop".into(),
        service: "unready".into(),
        port: ServicePortRef::Number(80),
    };
    load_yaml(
        &mut store,
        "update.yaml",
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: unready-1\n  \
         namespace: shop\n  labels: {kubernetes.io/service-name: unready}\naddressType: IPv4\n\
         ports:\n- {port: 8080}\nendpoints:\n- addresses: [10.2.0.1]\n  conditions: {ready: true}\n",
    );
    assert_eq!(resolve_endpoints(&store, &key), sockets(&["10.2.0.1:8080"]));
    refresh_endpoints(&store, &t.snapshot);
    assert_eq!(
        endpoints_for(&t.snapshot, "shop.test", "/unready"),
        sockets(&["10.2.0.1:8080"])
    );
    assert_eq!(
        t.snapshot.backends[&key].pick(),
        Ok(Upstream::Socket("10.2.0.1:8080".parse().unwrap()))
    );
}

#[test]
fn only_the_services_whose_endpoints_moved_are_refreshed() {
    let before = store_of(&["endpoints.yaml"]);
    let t = translate(&before, &TranslateOptions::default());
    let mut after = before.clone();
    load_yaml(
        &mut after,
        "update.yaml",
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: unready-1\n  \
         namespace: shop\n  labels: {kubernetes.io/service-name: unready}\naddressType: IPv4\n\
         ports:\n- {port: 8080}\nendpoints:\n- addresses: [10.2.0.1]\n  conditions: {ready: true}\n",
    );
    let changed = services_changed(&before, &after);
    assert_eq!(
        changed.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        ["shop/unready"]
    );
    // A slot of another Service, set by hand, shows whether it was resolved again.
    let web = BackendKey {
        namespace: "shop".into(),
        service: "web".into(),
        port: ServicePortRef::Number(80),
    };
    t.snapshot.backends[&web].set_endpoints(Endpoints::Unavailable(Unavailable::NoService));
    refresh_services(&after, &t.snapshot.backends, &changed);
    assert_eq!(
        endpoints_for(&t.snapshot, "shop.test", "/unready"),
        sockets(&["10.2.0.1:8080"])
    );
    assert_eq!(
        *t.snapshot.backends[&web].endpoints(),
        Endpoints::Unavailable(Unavailable::NoService),
        "web's endpoints did not move, so its slot was not touched"
    );
    // Removing the slice moves them back.
    let mut removed = after.clone();
    removed.remove(
        sluice_model::ObjectKind::EndpointSlice,
        &sluice_store::NamespacedName::new("shop", "unready-1"),
    );
    assert_eq!(services_changed(&after, &removed), changed);
}
