//! Canaries: other backends that take part of a primary route's traffic, chosen per request by a
//! header, cookie or query parameter, or by weight, each with optional request/response actions.
//!
//! A route without canaries is a plain [`crate::RouteTarget::Backend`]; only routes that have
//! some carry a [`CanaryRoute`], so the common case pays nothing.

use crate::backend::BackendSlot;
use crate::object::ObjectRef;
use regex::bytes::Regex;
use std::cmp::Ordering;
use std::sync::Arc;

/// A primary route's backend and the canaries evaluated before it, in evaluation order.
#[derive(Debug)]
pub struct CanaryRoute {
    pub primary: Arc<BackendSlot>,
    /// First match wins; weight rules share one random draw out of `weight_total`.
    pub canaries: Box<[Canary]>,
    /// What canary weights are out of (the primary's `canary-weight-total`, 100 to 10000). The
    /// primary keeps `weight_total - Σ weights`.
    pub weight_total: u32,
}

/// One rule of one canary Ingress on one path. A canary Ingress with several rules (e.g. a
/// header and a weight) has one entry per rule, sharing its [`CanaryTarget`].
#[derive(Debug, Clone)]
pub struct Canary {
    pub rule: CanaryRule,
    pub target: Arc<CanaryTarget>,
}

/// Where a matching request goes and what is done to it on the way.
#[derive(Debug)]
pub struct CanaryTarget {
    pub backend: Arc<BackendSlot>,
    pub actions: CanaryActions,
    /// The canary Ingress (for logs and metrics).
    pub ingress: Arc<ObjectRef>,
}

#[derive(Debug, Clone)]
pub enum CanaryRule {
    /// `name` is lower-case.
    Header { name: String, matcher: ValueMatch },
    /// `name` matches exactly.
    Cookie { name: String, matcher: ValueMatch },
    /// `name` matches exactly; the value is compared as sent (not URL-decoded).
    Query { name: String, matcher: ValueMatch },
    /// Out of [`CanaryRoute::weight_total`]; weight rules take consecutive ranges in order.
    Weight { weight: u32 },
}

impl CanaryRule {
    /// One line for people (`header x-canary: always`, `weight 20 of 100`).
    pub fn describe(&self, weight_total: u32) -> String {
        let (kind, name, matcher) = match self {
            CanaryRule::Header { name, matcher } => ("header", name, matcher),
            CanaryRule::Cookie { name, matcher } => ("cookie", name, matcher),
            CanaryRule::Query { name, matcher } => ("query", name, matcher),
            CanaryRule::Weight { weight } => return format!("weight {weight} of {weight_total}"),
        };
        let how = match matcher {
            ValueMatch::Always {
                never_means_primary: true,
            } => "always (never: primary)".to_string(),
            ValueMatch::Always { .. } => "always".to_string(),
            ValueMatch::List(values) => format!("one of {}", values.join("||")),
            ValueMatch::Pattern(regex) => format!("matches /{}/", regex.as_str()),
            ValueMatch::Modulo {
                divisor,
                op,
                remainder,
            } => format!("% {divisor} {} {remainder}", op.as_str()),
        };
        format!("{kind} {name}: {how}")
    }
}

/// How a header, cookie or query value selects the canary.
#[derive(Debug, Clone)]
pub enum ValueMatch {
    /// The value `always` (any case) selects the canary. With `never_means_primary`, `never`
    /// (any case) sends the request to the primary and stops evaluation (ingress-nginx's
    /// header and cookie canaries).
    Always { never_means_primary: bool },
    /// Any of these (lower-case, sorted, distinct), compared case-insensitively.
    List(Box<[String]>),
    /// An unanchored regex search.
    Pattern(Regex),
    /// `(value % divisor) op remainder`, the value being ASCII digits only.
    Modulo {
        divisor: u32,
        op: ModOp,
        remainder: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModOp {
    Eq,
    Gt,
    Ge,
    Lt,
    Le,
}

impl ModOp {
    pub fn parse(text: &str) -> Option<ModOp> {
        Some(match text {
            "==" => ModOp::Eq,
            ">" => ModOp::Gt,
            ">=" => ModOp::Ge,
            "<" => ModOp::Lt,
            "<=" => ModOp::Le,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ModOp::Eq => "==",
            ModOp::Gt => ">",
            ModOp::Ge => ">=",
            ModOp::Lt => "<",
            ModOp::Le => "<=",
        }
    }

    fn holds(self, left: u64, right: u64) -> bool {
        match self {
            ModOp::Eq => left == right,
            ModOp::Gt => left > right,
            ModOp::Ge => left >= right,
            ModOp::Lt => left < right,
            ModOp::Le => left <= right,
        }
    }
}

/// The outcome of one rule for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Canary,
    /// Go to the primary and evaluate nothing further (`never`).
    Primary,
    NoMatch,
}

impl ValueMatch {
    /// Judges a present value; an absent key is always [`Verdict::NoMatch`].
    pub fn judge(&self, value: &[u8]) -> Verdict {
        let hit = match self {
            ValueMatch::Always {
                never_means_primary,
            } => {
                if value.eq_ignore_ascii_case(b"always") {
                    true
                } else if *never_means_primary && value.eq_ignore_ascii_case(b"never") {
                    return Verdict::Primary;
                } else {
                    false
                }
            }
            ValueMatch::List(values) => values
                .binary_search_by(|v| cmp_lower(v.as_bytes(), value))
                .is_ok(),
            ValueMatch::Pattern(regex) => regex.is_match(value),
            ValueMatch::Modulo {
                divisor,
                op,
                remainder,
            } => modulo(value, u64::from(*divisor))
                .is_some_and(|m| op.holds(m, u64::from(*remainder))),
        };
        if hit {
            Verdict::Canary
        } else {
            Verdict::NoMatch
        }
    }
}

/// Compares an already lower-case value with `other` lower-cased, without allocating.
fn cmp_lower(lower: &[u8], other: &[u8]) -> Ordering {
    lower
        .iter()
        .copied()
        .cmp(other.iter().map(u8::to_ascii_lowercase))
}

/// `value % divisor` for a value of ASCII digits only, of any length (reduced digit by digit, so
/// it never overflows).
fn modulo(value: &[u8], divisor: u64) -> Option<u64> {
    if value.is_empty() || divisor == 0 {
        return None;
    }
    value.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit()
            .then(|| (acc * 10 + u64::from(b - b'0')) % divisor)
    })
}

/// What is done to a request routed to a canary and to its response.
#[derive(Debug, Clone, Default)]
pub struct CanaryActions {
    /// Added as another header line, even if the header exists.
    pub request_add_header: Vec<HeaderAction>,
    /// Appended to the existing header's value with `,`, or added if absent.
    pub request_append_header: Vec<HeaderAction>,
    /// `name=value` appended after the request's existing query, in this order.
    pub request_add_query: Vec<QueryAction>,
    pub response_add_header: Vec<HeaderAction>,
    pub response_append_header: Vec<HeaderAction>,
}

impl CanaryActions {
    pub fn is_empty(&self) -> bool {
        self.request_add_header.is_empty()
            && self.request_append_header.is_empty()
            && self.request_add_query.is_empty()
            && self.response_add_header.is_empty()
            && self.response_append_header.is_empty()
    }
}

/// A header name (lower-case, an HTTP token) and its value (visible ASCII and spaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderAction {
    pub name: String,
    pub value: ActionValue,
}

/// A query parameter; static names and values are already in query syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryAction {
    pub name: String,
    pub value: ActionValue,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionValue {
    Static(String),
    /// Computed per request (nginx-style `$name`).
    Variable(Variable),
}

/// The request variables an action value may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variable {
    /// `$remote_addr`: the client's IP address.
    RemoteAddr,
    /// `$host`: the request's host, lower-case, without port.
    Host,
    /// `$request_id`: the `X-Request-ID` sent upstream (the client's, or the generated one).
    RequestId,
    /// `$scheme`: `http` or `https`.
    Scheme,
}

impl Variable {
    pub const ALL: [(&'static str, Variable); 4] = [
        ("$remote_addr", Variable::RemoteAddr),
        ("$host", Variable::Host),
        ("$request_id", Variable::RequestId),
        ("$scheme", Variable::Scheme),
    ];

    pub fn parse(text: &str) -> Option<Variable> {
        Variable::ALL
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, v)| *v)
    }
}

/// An HTTP token (RFC 9110 `tchar`s), as header names and cookie names must be.
pub fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A header value Sluice writes as is: visible ASCII and inner spaces or tabs.
pub fn is_header_value(text: &str) -> bool {
    text.bytes()
        .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(values: &[&str]) -> ValueMatch {
        let mut v: Vec<String> = values.iter().map(|s| s.to_ascii_lowercase()).collect();
        v.sort();
        ValueMatch::List(v.into())
    }

    #[test]
    fn always_and_never_are_case_insensitive() {
        let m = ValueMatch::Always {
            never_means_primary: true,
        };
        assert_eq!(m.judge(b"ALWAYS"), Verdict::Canary);
        assert_eq!(m.judge(b"Never"), Verdict::Primary);
        assert_eq!(m.judge(b"yes"), Verdict::NoMatch);
        let q = ValueMatch::Always {
            never_means_primary: false,
        };
        assert_eq!(q.judge(b"never"), Verdict::NoMatch);
    }

    #[test]
    fn lists_match_case_insensitively() {
        let m = list(&["Beta", "alpha", "gamma"]);
        assert_eq!(m.judge(b"ALPHA"), Verdict::Canary);
        assert_eq!(m.judge(b"beta"), Verdict::Canary);
        assert_eq!(m.judge(b"gamm"), Verdict::NoMatch);
        assert_eq!(m.judge(b"always"), Verdict::NoMatch);
    }

    #[test]
    fn modulo_needs_digits_only_and_never_overflows() {
        let m = |op, remainder| ValueMatch::Modulo {
            divisor: 10,
            op,
            remainder,
        };
        assert_eq!(m(ModOp::Eq, 3).judge(b"13"), Verdict::Canary);
        assert_eq!(m(ModOp::Eq, 3).judge(b"13x"), Verdict::NoMatch);
        assert_eq!(m(ModOp::Eq, 3).judge(b""), Verdict::NoMatch);
        assert_eq!(m(ModOp::Eq, 3).judge(b"-3"), Verdict::NoMatch);
        assert_eq!(m(ModOp::Lt, 5).judge(b"4"), Verdict::Canary);
        assert_eq!(m(ModOp::Le, 5).judge(b"5"), Verdict::Canary);
        assert_eq!(m(ModOp::Gt, 5).judge(b"5"), Verdict::NoMatch);
        assert_eq!(m(ModOp::Ge, 5).judge(b"15"), Verdict::Canary);
        let long = "9".repeat(100);
        assert_eq!(m(ModOp::Eq, 9).judge(long.as_bytes()), Verdict::Canary);
    }

    #[test]
    fn tokens_and_values() {
        assert!(is_token("x-canary"));
        assert!(!is_token("x canary"));
        assert!(!is_token(""));
        assert!(is_header_value("a b,c"));
        assert!(!is_header_value("a\r\nb"));
    }
}
