//! Tengine-Ingress's origin tags: an Ingress may carry `ingress-referrer` (a canary also
//! `canary-referrer`); when the global ConfigMap lists allowed tags under the key of the same
//! name (comma-separated), a tag not in the list drops the Ingress. An Ingress without the
//! annotation is always served, and an empty (or absent) list turns that check off (Sluice's
//! fix of Tengine-Ingress rejecting everything tagged when the list is empty).

use crate::TranslateOptions;
use crate::annotations::PREFIX;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sluice_store::ObjectStore;

pub const INGRESS_REFERRER: &str = "ingress-referrer";
pub const CANARY_REFERRER: &str = "canary-referrer";

/// The allowed tags from the global options ConfigMap; empty lists turn the checks off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReferrerLists {
    pub ingress: Vec<String>,
    pub canary: Vec<String>,
}

impl ReferrerLists {
    pub fn of(store: &ObjectStore, opts: &TranslateOptions) -> ReferrerLists {
        let data = opts
            .configmap
            .as_ref()
            .and_then(|key| store.config_maps.get(key))
            .and_then(|cm| cm.object.data.as_ref());
        let list = |key: &str| -> Vec<String> {
            data.and_then(|d| d.get(key))
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        ReferrerLists {
            ingress: list(INGRESS_REFERRER),
            canary: list(CANARY_REFERRER),
        }
    }
}

/// `Err((annotation, reason))` when a tag of this Ingress is not in the ConfigMap's list.
pub fn referrer_accepts(meta: &ObjectMeta, lists: &ReferrerLists) -> Result<(), (String, String)> {
    let annotation = |name: &str| {
        meta.annotations
            .as_ref()
            .and_then(|a| a.get(&format!("{PREFIX}{name}")))
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    };
    let canary = annotation("canary").is_some_and(|v| v == "true");
    let checks = [
        (INGRESS_REFERRER, &lists.ingress, true),
        (CANARY_REFERRER, &lists.canary, canary),
    ];
    for (name, allowed, applies) in checks {
        let Some(tag) = annotation(name) else {
            continue;
        };
        if applies && !allowed.is_empty() && !allowed.iter().any(|a| a == tag) {
            return Err((
                format!("{PREFIX}{name}"),
                format!(
                    "referrer `{tag}` is not in the ConfigMap's `{name}` list ({}); the Ingress \
                     is not served until the tag or the list is fixed",
                    allowed.join(",")
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn meta(annotations: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            annotations: Some(
                annotations
                    .iter()
                    .map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..ObjectMeta::default()
        }
    }

    fn lists(ingress: &[&str], canary: &[&str]) -> ReferrerLists {
        ReferrerLists {
            ingress: ingress.iter().map(|s| s.to_string()).collect(),
            canary: canary.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn tags_must_be_listed_unless_the_list_is_empty() {
        let tagged = meta(&[("ingress-referrer", "portal")]);
        assert!(referrer_accepts(&tagged, &lists(&["portal", "ops"], &[])).is_ok());
        assert!(referrer_accepts(&tagged, &lists(&["ops"], &[])).is_err());
        assert!(referrer_accepts(&tagged, &lists(&[], &[])).is_ok());
        assert!(referrer_accepts(&meta(&[]), &lists(&["ops"], &[])).is_ok());
    }

    #[test]
    fn canary_tag_only_matters_on_canaries() {
        let tag = ("canary-referrer", "gray");
        let l = lists(&[], &["blue"]);
        assert!(referrer_accepts(&meta(&[tag]), &l).is_ok());
        assert!(referrer_accepts(&meta(&[tag, ("canary", "true")]), &l).is_err());
    }
}
