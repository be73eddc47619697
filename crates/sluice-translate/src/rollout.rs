//! Gray rollout per Ingress (`ingress-rollout*`) and per Secret (`secret-rollout*`):
//! Tengine-Ingress's rule for whether the instance with a given ordinal applies an object's
//! newest version (tengine-extensions.md section 3.2).

use crate::annotations::PREFIX;
use crate::values::parse_bool;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Which annotation family: `ingress-rollout*` or `secret-rollout*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutFamily {
    Ingress,
    Secret,
}

impl RolloutFamily {
    fn prefix(self) -> &'static str {
        match self {
            RolloutFamily::Ingress => "ingress-rollout",
            RolloutFamily::Secret => "secret-rollout",
        }
    }
}

/// What an object's rollout annotations say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rollout {
    pub enabled: bool,
    /// 0: not started, -1: done, N > 0: ordinals below N apply the newest version.
    pub index_id: i64,
    pub current_revision: Option<String>,
    pub update_revision: Option<String>,
}

impl Rollout {
    /// Reads the annotations; a malformed value is an error naming the annotation (callers then
    /// apply the newest version, as with rollout off, and report it).
    pub fn of(meta: &ObjectMeta, family: RolloutFamily) -> Result<Rollout, (String, String)> {
        let get = |suffix: &str| {
            let key = format!("{PREFIX}{}{suffix}", family.prefix());
            let value = meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(&key))
                .map(|v| v.trim().to_string());
            (key, value)
        };
        let mut rollout = Rollout::default();
        if let (key, Some(v)) = get("") {
            rollout.enabled = parse_bool(&v).map_err(|why| (key, why))?;
        }
        if let (key, Some(v)) = get("-index-id")
            && !v.is_empty()
        {
            rollout.index_id = v.parse::<i64>().ok().filter(|n| *n >= -1).ok_or_else(|| {
                (
                    key,
                    format!(
                        "`{v}` is not a rollout index; use -1 (all instances), 0 (none) or N \
                         (instances with ordinal below N)"
                    ),
                )
            })?;
        }
        rollout.current_revision = get("-current-revision").1.filter(|v| !v.is_empty());
        rollout.update_revision = get("-update-revision").1.filter(|v| !v.is_empty());
        Ok(rollout)
    }

    /// Whether the instance with `ordinal` (None: unknown) applies the newest version.
    pub fn applies_to(&self, ordinal: Option<i64>) -> bool {
        if !self.enabled || self.index_id == -1 {
            return true;
        }
        matches!(ordinal, Some(k) if self.index_id > 0 && 0 <= k && k < self.index_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            annotations: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn index_selects_ordinals_below_it() {
        let at = |index: &str| {
            Rollout::of(
                &meta(&[
                    ("ingress-rollout", "true"),
                    ("ingress-rollout-index-id", index),
                ]),
                RolloutFamily::Ingress,
            )
            .unwrap()
        };
        assert!(!at("0").applies_to(Some(0)));
        assert!(at("1").applies_to(Some(0)));
        assert!(!at("1").applies_to(Some(1)));
        assert!(at("2").applies_to(Some(1)));
        assert!(!at("2").applies_to(None));
        assert!(at("-1").applies_to(Some(7)));
        assert!(at("-1").applies_to(None));
    }

    #[test]
    fn off_or_other_family_applies_everywhere() {
        assert!(Rollout::default().applies_to(None));
        let secret_only = meta(&[("secret-rollout", "true")]);
        let r = Rollout::of(&secret_only, RolloutFamily::Ingress).unwrap();
        assert!(r.applies_to(Some(3)));
        let r = Rollout::of(&secret_only, RolloutFamily::Secret).unwrap();
        assert!(!r.applies_to(Some(3)));
    }

    #[test]
    fn malformed_values_name_the_annotation() {
        let err =
            Rollout::of(&meta(&[("ingress-rollout", "yes")]), RolloutFamily::Ingress).unwrap_err();
        assert!(err.0.ends_with("ingress-rollout"));
        assert!(
            Rollout::of(
                &meta(&[("secret-rollout-index-id", "-2")]),
                RolloutFamily::Secret
            )
            .is_err()
        );
    }
}
