//! Canary Ingresses: attachment to their primary, evaluation order, validation, weight totals
//! and orphans.

mod common;

use common::{problems_of, rejected, show, translate_fixtures};
use sluice_model::{
    ActionValue, Canary, CanaryRoute, CanaryRule, HeaderAction, ModOp, Problem, QueryAction,
    RouteTarget, Severity, Snapshot, ValueMatch, Variable,
};
use std::sync::Arc;

fn canaries_of(snapshot: &Snapshot, host: &str, path: &str) -> Arc<CanaryRoute> {
    let route = snapshot
        .hosts
        .lookup(host)
        .find(path)
        .unwrap_or_else(|| panic!("no route for {host}{path}"));
    match &route.target {
        RouteTarget::Canaries(c) => c.clone(),
        RouteTarget::Backend(b) => panic!("{host}{path} has no canaries (backend {})", b.key),
    }
}

/// `(canary Ingress name, rule kind)` in evaluation order.
fn order(set: &CanaryRoute) -> Vec<(String, &'static str)> {
    set.canaries
        .iter()
        .map(|c: &Canary| {
            let kind = match c.rule {
                CanaryRule::Header { .. } => "header",
                CanaryRule::Cookie { .. } => "cookie",
                CanaryRule::Query { .. } => "query",
                CanaryRule::Weight { .. } => "weight",
            };
            (c.target.ingress.name.clone(), kind)
        })
        .collect()
}

fn pairs(list: &[(&str, &'static str)]) -> Vec<(String, &'static str)> {
    list.iter().map(|(n, k)| (n.to_string(), *k)).collect()
}

#[test]
fn canaries_are_ordered_by_kind_then_age_and_share_the_primary_route() {
    let t = translate_fixtures(&["canary.yaml"]);
    let s = &t.snapshot;
    let set = canaries_of(s, "canary.test", "/anything");
    assert_eq!(
        order(&set),
        pairs(&[
            ("header-old", "header"),
            ("header-new", "header"),
            ("cookie", "cookie"),
            ("query", "query"),
            ("weight-old", "weight"),
            ("header-old", "weight"),
        ]),
        "{}",
        show(&t.problems)
    );
    assert_eq!(set.weight_total, 1000);
    assert_eq!(set.primary.key.service, "main");
    // Header rules: the older one matches `always`, the newer one its pattern.
    match &set.canaries[0].rule {
        CanaryRule::Header { name, matcher } => {
            assert_eq!(name, "x-canary");
            assert!(matches!(
                matcher,
                ValueMatch::Always {
                    never_means_primary: true
                }
            ));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        &set.canaries[1].rule,
        CanaryRule::Header {
            matcher: ValueMatch::Pattern(_),
            ..
        }
    ));
    assert!(matches!(
        &set.canaries[2].rule,
        CanaryRule::Cookie {
            matcher: ValueMatch::Modulo {
                divisor: 10,
                op: ModOp::Lt,
                remainder: 3
            },
            ..
        }
    ));
    match &set.canaries[3].rule {
        CanaryRule::Query {
            name,
            matcher: ValueMatch::List(values),
        } => {
            assert_eq!(name, "cq");
            assert_eq!(&values[..], ["a".to_string(), "b".to_string()]);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        set.canaries[4].rule,
        CanaryRule::Weight { weight: 300 }
    ));
    assert!(matches!(
        set.canaries[5].rule,
        CanaryRule::Weight { weight: 200 }
    ));
    // The header and weight rules of one canary share its target.
    assert!(Arc::ptr_eq(
        &set.canaries[0].target,
        &set.canaries[5].target
    ));

    // Canary backends are slots of the snapshot, so endpoint updates reach them.
    for c in set.canaries.iter() {
        let shared = s
            .backends
            .get(&c.target.backend.key)
            .expect("canary backend in snapshot.backends");
        assert!(Arc::ptr_eq(shared, &c.target.backend));
    }

    // The primary's policy applies; the canary's own timeout is not used.
    let route = s.hosts.lookup("canary.test").find("/").unwrap();
    assert_eq!(route.policy.read_timeout.as_secs(), 7);

    // Only header-new names /api (Exact).
    let api = canaries_of(s, "canary.test", "/api");
    assert_eq!(order(&api), pairs(&[("header-new", "header")]));
    assert_eq!(api.primary.key.service, "main-api");
}

#[test]
fn actions_are_parsed_with_variables() {
    let t = translate_fixtures(&["canary.yaml"]);
    let set = canaries_of(&t.snapshot, "canary.test", "/");
    let actions = &set.canaries[0].target.actions;
    let h = |name: &str, value: ActionValue| HeaderAction {
        name: name.into(),
        value,
    };
    let s = |v: &str| ActionValue::Static(v.into());
    assert_eq!(
        actions.request_add_header,
        vec![
            h("x-a", s("1")),
            h("x-b", ActionValue::Variable(Variable::RemoteAddr))
        ]
    );
    assert_eq!(
        actions.request_append_header,
        vec![h("x-list", ActionValue::Variable(Variable::Host))]
    );
    assert_eq!(
        actions.request_add_query,
        vec![
            QueryAction {
                name: "k".into(),
                value: s("v")
            },
            QueryAction {
                name: "rid".into(),
                value: ActionValue::Variable(Variable::RequestId)
            }
        ]
    );
    assert_eq!(
        actions.response_add_header,
        vec![h("x-r", ActionValue::Variable(Variable::Scheme))]
    );
    assert_eq!(actions.response_append_header, vec![h("x-ra", s("two"))]);
}

#[test]
fn a_priority_list_on_the_primary_orders_canaries_explicitly() {
    let t = translate_fixtures(&["canary.yaml"]);
    let set = canaries_of(&t.snapshot, "priority.test", "/");
    assert_eq!(
        order(&set),
        pairs(&[("w", "weight"), ("hdr", "header"), ("ck", "cookie")])
    );
    let listed = problems_of(&t.problems, "listed");
    assert_eq!(listed.len(), 1, "{}", show(&t.problems));
    assert_eq!(listed[0].severity, Severity::Warning);
    assert!(listed[0].reason.contains("shop/missing"), "{}", listed[0]);
    assert!(rejected(&t.problems).is_empty(), "{}", show(&t.problems));
}

#[test]
fn each_invalid_canary_is_rejected_alone_with_field_and_reason() {
    let t = translate_fixtures(&["canary-invalid.yaml"]);
    let cases = [
        ("too-many-values", "canary-by-header-value", "at most 20"),
        ("empty-value", "canary-by-cookie-value", "empty value"),
        ("divisor-low", "canary-mod-divisor", "from 2 to 100"),
        ("divisor-high", "canary-mod-divisor", "from 2 to 100"),
        (
            "remainder-high",
            "canary-mod-remainder",
            "divisor minus one",
        ),
        (
            "bad-operator",
            "canary-mod-relational-operator",
            "==, >, >=, <, <=",
        ),
        (
            "mod-without-key",
            "canary-mod-divisor",
            "needs canary-by-header",
        ),
        (
            "value-without-key",
            "canary-by-query-value",
            "needs canary-by-query",
        ),
        ("bad-header-name", "canary-by-header", "not a header name"),
        (
            "bad-pattern",
            "canary-by-header-pattern",
            "not a valid regex",
        ),
        ("three-headers", "canary-request-add-header", "at most 2"),
        ("no-colon", "canary-response-add-header", "not `name:value`"),
        (
            "unknown-var",
            "canary-request-append-header",
            "$remote_addr",
        ),
        (
            "reserved-header",
            "canary-request-add-header",
            "managed by the proxy",
        ),
        ("bad-query", "canary-request-add-query", "not `name=value`"),
        ("bad-weight", "canary-weight", "not a weight"),
    ];
    for (name, annotation, says) in cases {
        let problems = problems_of(&t.problems, name);
        let field = format!("metadata.annotations[\"nginx.ingress.kubernetes.io/{annotation}\"]");
        let hit: Vec<&&Problem> = problems
            .iter()
            .filter(|p| p.severity == Severity::Rejected && p.field.as_deref() == Some(&field))
            .collect();
        assert_eq!(hit.len(), 1, "{name}: {}", show(&t.problems));
        assert!(hit[0].reason.contains(says), "{name}: {}", hit[0]);
        assert!(
            hit[0].reason.contains("this canary is not used"),
            "{name}: {}",
            hit[0]
        );
        assert!(
            hit[0].to_string().starts_with("canary-invalid.yaml:"),
            "{}",
            hit[0]
        );
    }
    let set = canaries_of(&t.snapshot, "invalid.test", "/");
    assert_eq!(order(&set), pairs(&[("fine", "header")]));
    assert!(problems_of(&t.problems, "fine").is_empty());
    assert!(problems_of(&t.problems, "primary").is_empty());
}

#[test]
fn weights_above_the_total_reject_the_canaries_that_overflow() {
    let t = translate_fixtures(&["canary-weights.yaml"]);
    let s = &t.snapshot;
    // 60 + 30 fit in 100; 20 and 15 would not; 10 still fits.
    let set = canaries_of(s, "w100.test", "/");
    assert_eq!(
        order(&set),
        pairs(&[("sixty", "weight"), ("thirty", "weight"), ("ten", "weight")])
    );
    assert_eq!(set.weight_total, 100);
    for name in ["twenty", "fifteen"] {
        let p = problems_of(&t.problems, name);
        assert_eq!(p.len(), 1, "{}", show(&t.problems));
        assert_eq!(p[0].severity, Severity::Rejected);
        assert_eq!(p[0].field.as_deref(), Some("spec.rules[0].http.paths[0]"));
        assert!(
            p[0].reason.contains("exceeds the weight total 100"),
            "{}",
            p[0]
        );
        assert!(p[0].reason.contains("Ingress w/sixty (60)"), "{}", p[0]);
    }
    // One canary alone above the total (the primary's out-of-range 50 falls back to 100).
    let p = problems_of(&t.problems, "too-big");
    assert_eq!(p.len(), 1, "{}", show(&t.problems));
    assert!(
        p[0].reason
            .contains("canary-weight 150 exceeds the weight total 100")
    );
    assert!(matches!(
        s.hosts.lookup("w100b.test").find("/").unwrap().target,
        RouteTarget::Backend(_)
    ));
    // canary-weight-total on the primary applies to every path of it.
    for path in ["/", "/other"] {
        let set = canaries_of(s, "w10k.test", path);
        assert_eq!(set.weight_total, 10_000);
        assert_eq!(order(&set), pairs(&[("half", "weight")]));
    }
    // The primary with an out-of-range total gets a warning and the default total.
    let small = problems_of(&t.problems, "small-primary");
    assert_eq!(small.len(), 1, "{}", show(&t.problems));
    assert_eq!(small[0].severity, Severity::Warning);
    assert!(small[0].reason.contains("from 100 to 10000"));
}

#[test]
fn canaries_without_a_matching_primary_are_dropped_and_reported() {
    let t = translate_fixtures(&["canary-orphans.yaml"]);
    let s = &t.snapshot;
    assert!(s.hosts.lookup("nobody.test").find("/x").is_none());
    for (name, field) in [
        ("no-host", "spec.rules[0].http.paths[0]"),
        ("other-type", "spec.rules[0].http.paths[0]"),
        ("other-path", "spec.rules[0].http.paths[0]"),
    ] {
        let p = problems_of(&t.problems, name);
        assert_eq!(p.len(), 1, "{name}: {}", show(&t.problems));
        assert_eq!(p[0].severity, Severity::Rejected);
        assert_eq!(p[0].field.as_deref(), Some(field));
        assert!(p[0].reason.contains("no primary"), "{}", p[0]);
    }
    // other-path's second path matches the primary exactly.
    let set = canaries_of(s, "orphan.test", "/x");
    assert_eq!(order(&set), pairs(&[("other-path", "header")]));
    // canary-* annotations without canary: "true" are ignored, with a warning.
    let nc = problems_of(&t.problems, "not-canary");
    assert_eq!(nc.len(), 1, "{}", show(&t.problems));
    assert_eq!(nc[0].severity, Severity::Warning);
    assert!(nc[0].reason.contains("only apply to canary Ingresses"));
    assert!(matches!(
        s.hosts.lookup("orphan2.test").find("/").unwrap().target,
        RouteTarget::Backend(_)
    ));
    // A canary without any rule is named as receiving no traffic.
    let nothing = problems_of(&t.problems, "nothing");
    assert_eq!(nothing.len(), 1, "{}", show(&t.problems));
    assert!(nothing[0].reason.contains("receives no traffic"));
}

#[test]
fn missing_canary_services_are_reported_on_the_canary() {
    let t = translate_fixtures(&["canary.yaml"]);
    // The fixture defines no Services at all.
    let problems = sluice_translate::backend_problems(&t.snapshot);
    let on_canary = problems_of(&problems, "weight-old");
    assert_eq!(on_canary.len(), 1, "{}", show(&problems));
    assert!(
        on_canary[0]
            .reason
            .contains("Service shop/weight-old does not exist"),
        "{}",
        on_canary[0]
    );
}
