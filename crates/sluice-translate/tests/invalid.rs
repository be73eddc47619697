//! Quarantine: a bad path, annotation or object is rejected alone and reported.

mod common;

use common::{problems_of, service_for, show, store_of, translate_fixtures};
use sluice_model::{PathKind, Severity};
use sluice_store::NamespacedName;
use sluice_translate::{TranslateOptions, translate};
use std::time::Duration;

fn svc(s: &str) -> Option<String> {
    Some(s.to_string())
}

#[test]
fn a_bad_path_is_rejected_alone() {
    let t = translate_fixtures(&["invalid.yaml"]);
    let s = &t.snapshot;
    assert_eq!(service_for(s, "paths.test", "/good/x"), svc("good"));
    assert_eq!(service_for(s, "paths.test", "/foo"), None);
    let p = problems_of(&t.problems, "bad-path");
    let fields: Vec<_> = p.iter().map(|p| p.field.as_deref().unwrap_or("")).collect();
    assert_eq!(
        fields,
        [
            "spec.rules[0].http.paths[0].path",
            "spec.rules[0].http.paths[2].pathType",
            "spec.rules[0].http.paths[3].backend.resource",
            "spec.rules[0].http.paths[4].backend.service.port",
        ],
        "{}",
        show(&t.problems)
    );
    assert!(p.iter().all(|p| p.severity == Severity::Rejected));
    assert!(
        p[0].reason.contains("must start with `/`"),
        "{}",
        p[0].reason
    );
    assert!(p[2].reason.contains("resource backends are not supported"));
    let origin = p[0].origin.as_ref().unwrap().to_string();
    assert_eq!(origin, "invalid.yaml:2");
}

#[test]
fn regex_is_per_ingress_and_a_bad_regex_rejects_its_path_only() {
    let t = translate_fixtures(&["invalid.yaml"]);
    let s = &t.snapshot;
    let p = problems_of(&t.problems, "bad-regex");
    assert_eq!(p.len(), 1, "{}", show(&t.problems));
    assert_eq!(
        p[0].field.as_deref(),
        Some("spec.rules[0].http.paths[0].path")
    );
    assert!(p[0].reason.contains("not a valid regex"), "{}", p[0].reason);
    // Case-insensitive, anchored at the start.
    assert_eq!(service_for(s, "regex.test", "/V2/users/7"), svc("users"));
    // Exact keeps its meaning under use-regex.
    assert_eq!(service_for(s, "regex.test", "/exact"), svc("exact"));
    assert_eq!(service_for(s, "regex.test", "/exact/more"), None);
    // The neighbour Ingress on the same host is not turned into a regex.
    assert_eq!(service_for(s, "regex.test", "/plain/x"), svc("plain"));
    assert_eq!(service_for(s, "regex.test", "/plainer"), None);
    assert_eq!(service_for(s, "regex.test", "/PLAIN"), None);
}

#[test]
fn regex_host_wide_restores_ingress_nginx_behaviour() {
    let store = store_of(&["invalid.yaml", "options.yaml"]);
    let opts = TranslateOptions {
        configmap: Some(NamespacedName::new("sluice-system", "sluice-options")),
        ..TranslateOptions::default()
    };
    let t = translate(&store, &opts);
    let vhost = t.snapshot.hosts.lookup("regex.test");
    let plain = vhost
        .routes
        .iter()
        .find(|r| r.path.as_str() == "/plain")
        .unwrap();
    assert_eq!(plain.path.kind(), PathKind::Regex);
    assert_eq!(
        service_for(&t.snapshot, "regex.test", "/PLAINER"),
        svc("plain")
    );
}

#[test]
fn a_malformed_annotation_rejects_the_whole_ingress_and_says_the_allowed_form() {
    let t = translate_fixtures(&["invalid.yaml"]);
    assert_eq!(service_for(&t.snapshot, "timeout.test", "/"), None);
    let p = problems_of(&t.problems, "bad-timeout");
    assert_eq!(p.len(), 2, "{}", show(&t.problems));
    assert_eq!(
        p[0].field.as_deref(),
        Some("metadata.annotations[\"nginx.ingress.kubernetes.io/proxy-read-timeout\"]")
    );
    assert!(p[0].reason.contains("whole seconds"), "{}", p[0].reason);
    assert_eq!(
        p[1].field.as_deref(),
        Some("metadata.annotations[\"nginx.ingress.kubernetes.io/ssl-redirect\"]")
    );
    assert!(
        p[1].reason.contains("\"true\" or \"false\""),
        "{}",
        p[1].reason
    );
    // Others are unaffected.
    assert_eq!(service_for(&t.snapshot, "tuned.test", "/"), svc("tuned"));
}

#[test]
fn snippets_are_refused() {
    let t = translate_fixtures(&["invalid.yaml"]);
    assert_eq!(service_for(&t.snapshot, "snippet.test", "/"), None);
    let p = problems_of(&t.problems, "snippet");
    assert_eq!(p.len(), 1, "{}", show(&t.problems));
    assert_eq!(p[0].severity, Severity::Rejected);
    assert!(p[0].reason.contains("snippets are not supported"));
}

#[test]
fn annotations_shape_the_route_policy() {
    let t = translate_fixtures(&["invalid.yaml"]);
    let vhost = t.snapshot.hosts.lookup("tuned.test");
    let policy = &vhost.find("/").unwrap().policy;
    assert_eq!(policy.read_timeout, Duration::from_secs(120));
    assert_eq!(policy.connect_timeout, Duration::from_secs(3));
    assert_eq!(policy.send_timeout, Duration::from_secs(60));
    assert!(!policy.ssl_redirect);
    assert!(policy.force_ssl_redirect);
    // The canary joins the primary's route (no route of its own) and keeps the primary's policy.
    assert_eq!(vhost.routes.len(), 1);
    assert!(matches!(
        vhost.routes[0].target,
        sluice_model::RouteTarget::Canaries(_)
    ));
    assert!(problems_of(&t.problems, "canary").is_empty());
    assert!(problems_of(&t.problems, "tuned").is_empty());
}

#[test]
fn configmap_options_apply_and_a_bad_value_keeps_its_default() {
    let store = store_of(&["invalid.yaml", "options.yaml"]);
    let opts = TranslateOptions {
        configmap: Some(NamespacedName::new("sluice-system", "sluice-options")),
        ..TranslateOptions::default()
    };
    let t = translate(&store, &opts);
    let o = &t.snapshot.options;
    assert!(!o.ssl_redirect);
    assert_eq!(o.http_redirect_code, 301);
    assert_eq!(o.hsts_max_age, 600);
    assert!(!o.hsts_include_subdomains);
    assert!(o.hsts_preload);
    assert_eq!(o.proxy_connect_timeout, Duration::from_secs(2));
    assert_eq!(o.proxy_read_timeout, Duration::from_secs(30));
    assert_eq!(o.proxy_send_timeout, Duration::from_secs(60));
    assert!(o.regex_host_wide);
    let p = problems_of(&t.problems, "sluice-options");
    assert_eq!(p.len(), 1, "{}", show(&t.problems));
    assert_eq!(p[0].field.as_deref(), Some("data[\"proxy-send-timeout\"]"));
    assert!(p[0].reason.contains("default is used"), "{}", p[0].reason);
    assert_eq!(p[0].origin.as_ref().unwrap().to_string(), "options.yaml:2");
    // Globals flow into routes without annotations, annotations override them.
    let plain = t
        .snapshot
        .hosts
        .lookup("regex.test")
        .find("/plain")
        .unwrap();
    assert_eq!(plain.policy.connect_timeout, Duration::from_secs(2));
    assert_eq!(plain.policy.redirect_code, 301);
    assert!(!plain.policy.ssl_redirect);
    let tuned = t.snapshot.hosts.lookup("tuned.test").find("/").unwrap();
    assert_eq!(tuned.policy.connect_timeout, Duration::from_secs(3));
}

#[test]
fn a_missing_configmap_is_a_warning_and_defaults_apply() {
    let store = store_of(&["invalid.yaml"]);
    let opts = TranslateOptions {
        configmap: Some(NamespacedName::new("sluice-system", "absent")),
        ..TranslateOptions::default()
    };
    let t = translate(&store, &opts);
    let p = problems_of(&t.problems, "absent");
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].severity, Severity::Warning);
    assert_eq!(*t.snapshot.options, sluice_model::GlobalOptions::default());
}

#[test]
fn ingresses_that_serve_nothing_or_certificates_for_no_host_are_reported() {
    let t = translate_fixtures(&["invalid.yaml"]);
    let empty = problems_of(&t.problems, "empty");
    assert_eq!(empty.len(), 1, "{}", show(&t.problems));
    assert_eq!(empty[0].severity, Severity::Rejected);
    assert!(
        empty[0]
            .reason
            .contains("neither rules nor a defaultBackend")
    );
    let tls = problems_of(&t.problems, "tls-without-hosts");
    assert_eq!(tls.len(), 1, "{}", show(&t.problems));
    assert_eq!(tls[0].severity, Severity::Warning);
    assert_eq!(tls[0].field.as_deref(), Some("spec.tls[0].hosts"));
    assert_eq!(
        service_for(&t.snapshot, "tls-without-hosts.test", "/"),
        svc("web")
    );
    assert!(!t.snapshot.hosts.lookup("tls-without-hosts.test").tls);
}
