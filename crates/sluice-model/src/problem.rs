//! What translation refused or had to decide, reported to the user.

use crate::object::{ObjectRef, Origin};
use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The object, or the named part of it, is not served.
    Rejected,
    /// Served, but something was ignored or decided on the user's behalf (e.g. a conflict loser).
    Warning,
}

/// One rejected object, field or conflict, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The object at fault; `None` for a file that could not be read or parsed at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectRef>,
    /// Where the object came from, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// JSON-path-like field, e.g. `spec.rules[0].http.paths[1].path`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub severity: Severity,
    /// What was wrong and what to do.
    pub reason: String,
}

impl Problem {
    pub fn rejected(object: ObjectRef, reason: impl Into<String>) -> Self {
        Problem {
            object: Some(object),
            origin: None,
            field: None,
            severity: Severity::Rejected,
            reason: reason.into(),
        }
    }

    pub fn warning(object: ObjectRef, reason: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Warning,
            ..Problem::rejected(object, reason)
        }
    }

    /// A problem with a whole file (unreadable, not YAML), before any object could be named.
    pub fn file(origin: Origin, reason: impl Into<String>) -> Self {
        Problem {
            object: None,
            origin: Some(origin),
            field: None,
            severity: Severity::Rejected,
            reason: reason.into(),
        }
    }

    pub fn at_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn from_origin(mut self, origin: Option<Origin>) -> Self {
        self.origin = origin;
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(origin) = &self.origin {
            write!(f, "{origin}: ")?;
        }
        let verdict = match self.severity {
            Severity::Rejected => "rejected",
            Severity::Warning => "warning",
        };
        match &self.object {
            Some(object) => write!(f, "{object} {verdict}")?,
            None => write!(f, "file {verdict}")?,
        }
        if let Some(field) = &self.field {
            write!(f, " at {field}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::ObjectKind;

    #[test]
    fn display_names_place_object_field_and_reason() {
        let p = Problem::rejected(
            ObjectRef::new(ObjectKind::Ingress, "shop", "web"),
            "bad path",
        )
        .at_field("spec.rules[0].http.paths[0].path")
        .from_origin(Some(Origin::File {
            path: "dir/a.yaml".into(),
            line: 7,
        }));
        assert_eq!(
            p.to_string(),
            "dir/a.yaml:7: Ingress shop/web rejected at spec.rules[0].http.paths[0].path: bad path"
        );
        let f = Problem::file(
            Origin::File {
                path: "b.yaml".into(),
                line: 3,
            },
            "not YAML",
        );
        assert_eq!(f.to_string(), "b.yaml:3: file rejected: not YAML");
    }
}
