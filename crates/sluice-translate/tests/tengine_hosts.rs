//! Tengine-Ingress host options in translation: `ssl-protocols` (first Ingress of a host that
//! sets it wins), `disable-robots` on the route policy, and the referrer lists.

mod common;

use common::{load_yaml, problems_of, show};
use sluice_model::{Severity, TlsVersions};
use sluice_store::{NamespacedName, ObjectStore};
use sluice_translate::{TranslateOptions, translate};

const OBJECTS: &str = r#"apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: first
  namespace: t
  creationTimestamp: "2024-01-01T00:00:00Z"
  annotations:
    nginx.ingress.kubernetes.io/ssl-protocols: "TLSv1.3"
    nginx.ingress.kubernetes.io/disable-robots: "true"
spec:
  ingressClassName: sluice
  rules:
  - host: shared.test
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {service: {name: web, port: {number: 80}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: second
  namespace: t
  creationTimestamp: "2024-02-01T00:00:00Z"
  annotations:
    nginx.ingress.kubernetes.io/ssl-protocols: "TLSv1.2"
spec:
  ingressClassName: sluice
  rules:
  - host: shared.test
    http:
      paths:
      - path: /api
        pathType: Prefix
        backend: {service: {name: web, port: {number: 80}}}
  - host: own.test
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {service: {name: web, port: {number: 80}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: tagged
  namespace: t
  annotations:
    nginx.ingress.kubernetes.io/ingress-referrer: "rogue"
spec:
  ingressClassName: sluice
  rules:
  - host: tagged.test
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {service: {name: web, port: {number: 80}}}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: options
  namespace: t
data:
  ingress-referrer: "portal"
"#;

#[test]
fn host_options_and_referrers() {
    let mut store = ObjectStore::new();
    load_yaml(&mut store, "tengine.yaml", OBJECTS);
    let opts = TranslateOptions {
        configmap: Some(NamespacedName::new("t", "options")),
        ..TranslateOptions::default()
    };
    let t = translate(&store, &opts);
    let certs = &t.snapshot.certificates;
    let only13 = TlsVersions {
        tls12: false,
        tls13: true,
    };
    let only12 = TlsVersions {
        tls12: true,
        tls13: false,
    };
    assert_eq!(certs.protocols_for(Some("shared.test")), Some(only13));
    assert_eq!(certs.protocols_for(Some("own.test")), Some(only12));
    assert_eq!(certs.protocols_for(Some("other.test")), None);
    let second = problems_of(&t.problems, "second");
    assert_eq!(second.len(), 1, "{}", show(&t.problems));
    assert_eq!(second[0].severity, Severity::Warning);
    assert!(
        second[0].reason.contains("Ingress t/first"),
        "{}",
        second[0].reason
    );

    let shared = t.snapshot.hosts.lookup("shared.test");
    let robots = shared.find("/robots.txt").expect("route for /robots.txt");
    assert!(robots.policy.disable_robots);
    assert!(
        !shared
            .find("/api")
            .expect("api route")
            .policy
            .disable_robots
    );

    assert_eq!(t.snapshot.hosts.lookup("tagged.test").name, "");
    let tagged = problems_of(&t.problems, "tagged");
    assert_eq!(tagged.len(), 1, "{}", show(&t.problems));
    assert_eq!(tagged[0].severity, Severity::Rejected);
    assert!(tagged[0].reason.contains("`rogue`"), "{}", tagged[0].reason);
}
