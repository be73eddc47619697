//! Which Ingresses are Sluice's.

mod common;

use common::{load_fixture, service_for, show, store_of};
use sluice_store::ObjectStore;
use sluice_translate::{TranslateOptions, translate};

fn served(store: &ObjectStore, opts: &TranslateOptions) -> Vec<String> {
    let t = translate(store, opts);
    assert!(t.problems.is_empty(), "{}", show(&t.problems));
    "abcdefg"
        .chars()
        .map(|c| format!("{c}.class.test"))
        .filter(|h| service_for(&t.snapshot, h, "/").is_some())
        .collect()
}

#[test]
fn class_name_class_object_and_legacy_annotation_select_ingresses() {
    let store = store_of(&["classes.yaml"]);
    assert_eq!(
        served(&store, &TranslateOptions::default()),
        ["a.class.test", "b.class.test", "c.class.test"]
    );
}

#[test]
fn class_less_ingresses_only_with_the_flag() {
    let store = store_of(&["classes.yaml"]);
    let opts = TranslateOptions {
        watch_ingress_without_class: true,
        ..TranslateOptions::default()
    };
    assert_eq!(
        served(&store, &opts),
        [
            "a.class.test",
            "b.class.test",
            "c.class.test",
            "g.class.test"
        ]
    );
}

#[test]
fn our_default_ingress_class_adopts_class_less_ingresses() {
    let mut store = store_of(&["classes.yaml"]);
    load_fixture(&mut store, "default-class.yaml");
    assert_eq!(
        served(&store, &TranslateOptions::default()),
        [
            "a.class.test",
            "b.class.test",
            "c.class.test",
            "g.class.test"
        ]
    );
}

#[test]
fn class_names_follow_the_options() {
    let store = store_of(&["classes.yaml"]);
    let opts = TranslateOptions {
        ingress_class: "nginx".into(),
        controller_class: "k8s.io/ingress-nginx".into(),
        ..TranslateOptions::default()
    };
    // `e` names the nginx IngressClass, `d` the legacy annotation; `b` names "sluice", which is
    // no longer ours.
    assert_eq!(served(&store, &opts), ["d.class.test", "e.class.test"]);
}

#[test]
fn an_ingress_class_of_another_controller_wins_over_the_bare_name() {
    let store = store_of(&["classes.yaml"]);
    let opts = TranslateOptions {
        ingress_class: "taken".into(),
        ..TranslateOptions::default()
    };
    let mut with_taken = store.clone();
    common::load_yaml(
        &mut with_taken,
        "inline.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: t}\nspec:\n  \
         ingressClassName: taken\n  rules:\n  - host: t.class.test\n    http:\n      paths:\n      \
         - {path: /, pathType: Prefix, backend: {service: {name: t, port: {number: 80}}}}\n",
    );
    let t = translate(&with_taken, &opts);
    assert_eq!(service_for(&t.snapshot, "t.class.test", "/"), None);
}
