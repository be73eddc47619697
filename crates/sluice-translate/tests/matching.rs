//! The Kubernetes Ingress v1 matching table, host by host, through the snapshot's own lookup.

mod common;

use common::{service_for, show, translate_fixtures};

fn svc(s: &str) -> Option<String> {
    Some(s.to_string())
}

#[test]
fn every_example_of_the_kubernetes_matching_table() {
    let t = translate_fixtures(&["matching.yaml"]);
    let s = &t.snapshot;
    let cases: &[(&str, &str, Option<String>)] = &[
        // Prefix `/` matches all.
        ("root.test", "/", svc("root")),
        ("root.test", "/anything/at/all", svc("root")),
        // Exact `/foo`: `/foo` yes, `/bar` no, `/foo/` no.
        ("exact.test", "/foo", svc("foo")),
        ("exact.test", "/bar", None),
        ("exact.test", "/foo/", None),
        // Exact `/foo/` vs `/foo`: no.
        ("exact-slash.test", "/foo", None),
        ("exact-slash.test", "/foo/", svc("foo-slash")),
        // Prefix `/foo` and `/foo/` both match `/foo` and `/foo/`.
        ("prefix-foo.test", "/foo", svc("foo")),
        ("prefix-foo.test", "/foo/", svc("foo")),
        ("prefix-foo-slash.test", "/foo", svc("foo-slash")),
        ("prefix-foo-slash.test", "/foo/", svc("foo-slash")),
        // Prefix `/aaa/bb` vs `/aaa/bbb`: no.
        ("bb.test", "/aaa/bbb", None),
        // Prefix `/aaa/bbb`: `/aaa/bbb`, `/aaa/bbb/`, `/aaa/bbb/ccc` yes, `/aaa/bbbxyz` no.
        ("bbb.test", "/aaa/bbb", svc("bbb")),
        ("bbb.test", "/aaa/bbb/", svc("bbb")),
        ("bbb.test", "/aaa/bbb/ccc", svc("bbb")),
        ("bbb.test", "/aaa/bbbxyz", None),
        // Prefix `/`, `/aaa` with `/aaa/ccc` -> `/aaa`.
        ("two.test", "/aaa/ccc", svc("aaa")),
        // Prefix `/`, `/aaa`, `/aaa/bbb`: `/aaa/bbb` -> `/aaa/bbb`, `/ccc` -> `/`.
        ("three.test", "/aaa/bbb", svc("bbb")),
        ("three.test", "/ccc", svc("root")),
        // Prefix `/aaa` with `/ccc` -> the default backend.
        ("aaa-default.test", "/ccc", svc("fallback")),
        ("aaa-default.test", "/aaa", svc("aaa")),
        // Prefix `/foo` + Exact `/foo` with `/foo` -> Exact.
        ("mixed.test", "/foo", svc("exact-foo")),
        ("mixed.test", "/foo/x", svc("prefix-foo")),
        // Unknown hosts go to the default server, which has nothing here.
        ("unknown.test", "/", None),
    ];
    for (host, path, want) in cases {
        assert_eq!(
            &service_for(s, host, path),
            want,
            "{host}{path}\nproblems:\n{}",
            show(&t.problems)
        );
    }
}

#[test]
fn wildcard_hosts_match_exactly_one_label() {
    let t = translate_fixtures(&["matching.yaml"]);
    let s = &t.snapshot;
    assert_eq!(service_for(s, "bar.wild.test", "/"), svc("wild"));
    assert_eq!(service_for(s, "baz.bar.wild.test", "/"), None);
    assert_eq!(service_for(s, "wild.test", "/"), svc("parent"));
    assert!(s.hosts.wildcard.contains_key("wild.test"));
}

#[test]
fn bad_hosts_reject_their_rule_only_and_hosts_are_lower_cased() {
    let t = translate_fixtures(&["matching.yaml"]);
    let bad: Vec<_> = t
        .problems
        .iter()
        .filter(|p| p.object.as_ref().is_some_and(|o| o.name == "bad-hosts"))
        .collect();
    assert_eq!(bad.len(), 2, "{}", show(&t.problems));
    assert_eq!(bad[0].field.as_deref(), Some("spec.rules[0].host"));
    assert!(bad[0].reason.contains("bare `*`"), "{}", bad[0].reason);
    assert_eq!(bad[1].field.as_deref(), Some("spec.rules[1].host"));
    assert!(
        bad[1].reason.contains("whole first label"),
        "{}",
        bad[1].reason
    );
    assert!(
        bad.iter().all(|p| p.origin.is_some()),
        "problems carry the origin"
    );
    assert_eq!(
        service_for(&t.snapshot, "upper.case.test", "/"),
        svc("upper")
    );
    // Nothing else in the fixture is a problem.
    assert_eq!(t.problems.len(), 2, "{}", show(&t.problems));
}

#[test]
fn routes_are_in_match_order() {
    let t = translate_fixtures(&["matching.yaml"]);
    let three = t.snapshot.hosts.lookup("three.test");
    let order: Vec<_> = three.routes.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(order, ["/aaa/bbb", "/aaa", "/"]);
    let mixed = t.snapshot.hosts.lookup("mixed.test");
    let kinds: Vec<_> = mixed.routes.iter().map(|r| r.path.kind()).collect();
    assert_eq!(
        kinds,
        [
            sluice_model::PathKind::Exact,
            sluice_model::PathKind::Prefix
        ]
    );
}

#[test]
fn translation_is_deterministic() {
    let a = translate_fixtures(&["matching.yaml"]);
    let b = translate_fixtures(&["matching.yaml"]);
    assert_eq!(a.problems, b.problems);
    let keys =
        |t: &sluice_translate::Translation| t.snapshot.backends.keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&a), keys(&b));
    assert_eq!(a.snapshot.counts(), b.snapshot.counts());
}
