//! Several Ingresses sharing hosts and paths, and their defaultBackends.

mod common;

use common::{problems_of, service_for, show, translate_fixtures};
use sluice_model::Severity;

fn svc(s: &str) -> Option<String> {
    Some(s.to_string())
}

#[test]
fn same_host_path_and_type_oldest_wins_and_the_loser_is_warned() {
    let t = translate_fixtures(&["merge.yaml"]);
    let s = &t.snapshot;
    assert_eq!(service_for(s, "merge.test", "/api/v1"), svc("older-api"));
    // Exact and Prefix of the same path both survive; Exact wins on the exact path.
    assert_eq!(service_for(s, "merge.test", "/api"), svc("newer-exact"));
    // Paths nobody else claims are merged into the host.
    assert_eq!(service_for(s, "merge.test", "/new"), svc("newer-new"));

    let newer = problems_of(&t.problems, "newer");
    let conflict: Vec<_> = newer
        .iter()
        .filter(|p| p.field.as_deref() == Some("spec.rules[0].http.paths[0].path"))
        .collect();
    assert_eq!(conflict.len(), 1, "{}", show(&t.problems));
    assert_eq!(conflict[0].severity, Severity::Warning);
    assert!(
        conflict[0].reason.contains("Ingress team-b/older"),
        "{}",
        conflict[0].reason
    );
    assert!(
        problems_of(&t.problems, "older").is_empty(),
        "{}",
        show(&t.problems)
    );
}

#[test]
fn default_backend_is_the_fallback_of_hosts_the_ingress_names_first() {
    let t = translate_fixtures(&["merge.yaml"]);
    let s = &t.snapshot;
    // merge.test was named first by `older`: its defaultBackend is the fallback there.
    assert_eq!(service_for(s, "merge.test", "/other"), svc("older-default"));
    // newer-only.test is `newer`'s own host.
    assert_eq!(
        service_for(s, "newer-only.test", "/other"),
        svc("newer-default")
    );
    let fallback = s.hosts.lookup("newer-only.test").fallback.as_ref().unwrap();
    assert_eq!(fallback.path.as_str(), "/");
    // `newer`'s defaultBackend is reported as not used for merge.test.
    let warned = problems_of(&t.problems, "newer")
        .into_iter()
        .filter(|p| p.field.as_deref() == Some("spec.defaultBackend"))
        .collect::<Vec<_>>();
    assert_eq!(warned.len(), 1, "{}", show(&t.problems));
    assert!(
        warned[0].reason.contains("merge.test"),
        "{}",
        warned[0].reason
    );
}

#[test]
fn oldest_ingress_without_rules_is_the_catch_all() {
    let t = translate_fixtures(&["merge.yaml"]);
    let s = &t.snapshot;
    assert_eq!(service_for(s, "unknown.test", "/"), svc("catch-old"));
    assert_eq!(
        service_for(s, "unknown.test", "/deep/path"),
        svc("catch-old")
    );
    let loser = problems_of(&t.problems, "catch-all-new");
    assert_eq!(loser.len(), 1, "{}", show(&t.problems));
    assert_eq!(loser[0].severity, Severity::Warning);
    assert!(
        loser[0].reason.contains("default/catch-all-old"),
        "{}",
        loser[0].reason
    );
}

#[test]
fn equal_timestamps_are_ordered_by_namespace_and_name_descending() {
    let t = translate_fixtures(&["merge.yaml"]);
    assert_eq!(service_for(&t.snapshot, "tie.test", "/"), svc("tie-b"));
    let loser = problems_of(&t.problems, "tie-a");
    assert_eq!(loser.len(), 1, "{}", show(&t.problems));
    assert!(loser[0].reason.contains("tie/tie-b"));
}

#[test]
fn ingresses_without_timestamp_come_after_and_in_name_order() {
    let t = translate_fixtures(&["merge.yaml"]);
    assert_eq!(
        service_for(&t.snapshot, "untimed.test", "/"),
        svc("untimed-a")
    );
    assert_eq!(
        problems_of(&t.problems, "untimed-b").len(),
        1,
        "{}",
        show(&t.problems)
    );
    // A timestamped Ingress wins over one without, whatever their names.
    assert_eq!(service_for(&t.snapshot, "mixed.test", "/"), svc("mixed-z"));
    assert_eq!(
        problems_of(&t.problems, "mixed-a").len(),
        1,
        "{}",
        show(&t.problems)
    );
}

#[test]
fn backends_list_only_what_routes_use() {
    let t = translate_fixtures(&["merge.yaml"]);
    let services: Vec<_> = t
        .snapshot
        .backends
        .keys()
        .map(|k| k.service.as_str())
        .collect();
    for unused in ["newer-api", "catch-new", "tie-a"] {
        assert!(!services.contains(&unused), "{unused} in {services:?}");
    }
    for used in [
        "older-api",
        "newer-exact",
        "newer-default",
        "older-default",
        "catch-old",
    ] {
        assert!(services.contains(&used), "{used} missing from {services:?}");
    }
}
