//! Which Ingresses are ours: IngressClass, the legacy annotation, and class-less ones.

use crate::TranslateOptions;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use sluice_store::ObjectStore;

const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// Decides as ingress-nginx does: the legacy annotation, when present, decides alone; then
/// `spec.ingressClassName`; a class-less Ingress is ours when asked to watch those or when one of
/// our IngressClasses is the cluster default (the manifest source has no admission to stamp it).
pub fn is_ours(ingress: &Ingress, store: &ObjectStore, opts: &TranslateOptions) -> bool {
    if let Some(class) = ingress
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION))
    {
        return *class == opts.ingress_class;
    }
    match ingress
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
    {
        Some(name) => match store.ingress_classes.get(name) {
            Some(class) => controlled_by_us(&class.object, opts),
            // No IngressClass object (common in a manifest directory): the name alone decides.
            None => name == opts.ingress_class,
        },
        None => {
            opts.watch_ingress_without_class
                || store.ingress_classes.values().any(|c| {
                    controlled_by_us(&c.object, opts)
                        && c.object
                            .metadata
                            .annotations
                            .as_ref()
                            .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                            .is_some_and(|v| v == "true")
                })
        }
    }
}

fn controlled_by_us(class: &IngressClass, opts: &TranslateOptions) -> bool {
    class
        .spec
        .as_ref()
        .and_then(|s| s.controller.as_deref())
        .is_some_and(|c| c == opts.controller_class)
}
