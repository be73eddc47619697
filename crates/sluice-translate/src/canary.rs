//! Canary Ingresses (`canary: "true"`): parsed on their own, then attached to the primary route
//! with the same host, path and pathType.
//!
//! Decisions (tengine-extensions.md sections 4, 10 and 11 give the reasons):
//! - One canary Ingress may set several kinds (ingress-nginx style: header, cookie, weight):
//!   each kind becomes its own rule, all leading to that canary's backend and actions.
//! - Default evaluation order on a path: every header rule, then cookie, then query, then
//!   weight; within a kind, Ingress precedence order (oldest first). The first match wins.
//! - `canary-priority-list` on the *primary* (comma-separated canary Ingress names, `name` for the
//!   primary's namespace or `namespace/name`) puts the listed canaries first, in that order (each
//!   with its rules in kind order); unlisted canaries follow in the default order.
//! - Weights: `canary-weight` out of the primary's `canary-weight-total` (100 to 10000, default
//!   100, every path of the primary); one draw per request shared by the weight rules, which take
//!   consecutive ranges; the primary keeps the rest. A canary whose weight would take the sum
//!   above the total is rejected on that path, named, with the canaries already holding shares.
//! - Match per key: a value list (`a||b`, case-insensitive) wins, else a header pattern, else
//!   modulo settings, else the literal `always` (any case); with the latter, `never` on a header
//!   or cookie sends the request to the primary and stops evaluation (ingress-nginx).
//! - Action values may be `$remote_addr`, `$host`, `$request_id` or `$scheme`; any other `$name`
//!   is refused (it would otherwise be sent literally or silently dropped).
//! - A canary with any invalid canary annotation is rejected alone (every path of it); its
//!   traffic stays on the primary. Its own non-canary annotations (timeouts, ssl-redirect) are
//!   not used: the primary's policy applies.

use crate::annotations::PREFIX;
use crate::names::normalize_host;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};
use regex::bytes::Regex;
use sluice_model::canary::{is_header_value, is_token};
use sluice_model::{
    ActionValue, BackendKey, BackendSlot, Canary, CanaryActions, CanaryRule, CanaryTarget,
    HeaderAction, ModOp, ObjectRef, Origin, Problem, QueryAction, ValueMatch, Variable,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Values a `||` list may hold (Tengine's `max-canary-*-val-num`).
pub const MAX_VALUES: usize = 20;
/// Actions per kind (Tengine's `max-canary-*-num`).
pub const MAX_ACTIONS: usize = 2;
/// Canary Ingresses per path (Tengine's `max-canary-ing-num`).
pub const MAX_CANARIES_PER_PATH: usize = 20;
pub const WEIGHT_TOTAL_RANGE: std::ops::RangeInclusive<u32> = 100..=10_000;
pub const DEFAULT_WEIGHT_TOTAL: u32 = 100;
pub const DIVISOR_RANGE: std::ops::RangeInclusive<u32> = 2..=100;

/// Headers an action may not touch: they frame the message or belong to one hop.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
    "expect",
];

/// Annotations only a canary reads (a primary carrying them gets a warning).
const CANARY_ONLY: &[&str] = &[
    "canary-by-header",
    "canary-by-header-value",
    "canary-by-header-pattern",
    "canary-by-cookie",
    "canary-by-cookie-value",
    "canary-by-query",
    "canary-by-query-value",
    "canary-mod-divisor",
    "canary-mod-relational-operator",
    "canary-mod-remainder",
    "canary-weight",
    "canary-request-add-header",
    "canary-request-append-header",
    "canary-request-add-query",
    "canary-response-add-header",
    "canary-response-append-header",
];

/// A canary Ingress whose generic annotations were accepted.
pub(crate) struct CanaryIngress<'a> {
    pub ingress: &'a Ingress,
    pub namespace: &'a str,
    pub object: Arc<ObjectRef>,
    pub origin: &'a Origin,
}

/// What a primary Ingress says about the canaries of its paths.
#[derive(Debug)]
struct PrimaryOptions {
    weight_total: u32,
    /// `canary-priority-list`, as `(namespace, name)`.
    priority: Vec<(String, String)>,
}

/// A primary route canaries may attach to.
struct Site {
    host: String,
    origin: Origin,
    route_index: usize,
    primary: Arc<ObjectRef>,
    options: Arc<PrimaryOptions>,
}

/// The primary routes by (host, pathType, path) as written, filled while primaries are added.
#[derive(Default)]
pub(crate) struct PrimarySites {
    sites: BTreeMap<(String, String, String), Site>,
    options: HashMap<Arc<ObjectRef>, Arc<PrimaryOptions>>,
    problems: Vec<Problem>,
}

impl PrimarySites {
    /// Records that `primary` serves `path` (pathType `path_type`) on `host` as the route at
    /// `route_index` of that host.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &mut self,
        host: &str,
        path_type: &str,
        path: &str,
        route_index: usize,
        primary: &Arc<ObjectRef>,
        origin: &Origin,
        annotations: Option<&BTreeMap<String, String>>,
    ) {
        let options = match self.options.get(primary) {
            Some(o) => o.clone(),
            None => {
                let o = Arc::new(primary_options(
                    primary,
                    origin,
                    annotations,
                    &mut self.problems,
                ));
                self.options.insert(primary.clone(), o.clone());
                o
            }
        };
        self.sites.insert(
            (host.to_string(), path_type.to_string(), path.to_string()),
            Site {
                host: host.to_string(),
                origin: origin.clone(),
                route_index,
                primary: primary.clone(),
                options,
            },
        );
    }
}

/// The canaries of one primary route, ready to become its target.
pub(crate) struct Attached {
    pub host: String,
    pub route_index: usize,
    pub canaries: Box<[Canary]>,
    pub weight_total: u32,
}

fn annotation<'a>(
    annotations: Option<&'a BTreeMap<String, String>>,
    name: &str,
) -> Option<&'a str> {
    annotations?
        .get(&format!("{PREFIX}{name}"))
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
}

/// An Ingress's annotations, looked up by name without the prefix.
struct Notes<'a>(Option<&'a BTreeMap<String, String>>);

impl<'a> Notes<'a> {
    fn get(&self, name: &str) -> Option<&'a str> {
        annotation(self.0, name)
    }
}

fn field_of(name: &str) -> String {
    format!("metadata.annotations[\"{PREFIX}{name}\"]")
}

fn primary_options(
    primary: &ObjectRef,
    origin: &Origin,
    annotations: Option<&BTreeMap<String, String>>,
    problems: &mut Vec<Problem>,
) -> PrimaryOptions {
    let warn = |problems: &mut Vec<Problem>, name: &str, reason: String| {
        problems.push(
            Problem::warning(primary.clone(), reason)
                .at_field(field_of(name))
                .from_origin(Some(origin.clone())),
        );
    };
    let weight_total = match annotation(annotations, "canary-weight-total") {
        None => DEFAULT_WEIGHT_TOTAL,
        Some(text) => match text.parse::<u32>() {
            Ok(n) if WEIGHT_TOTAL_RANGE.contains(&n) => n,
            _ => {
                warn(
                    problems,
                    "canary-weight-total",
                    format!(
                        "`{text}` is not a weight total; use a whole number from {} to {}; the \
                         default total {DEFAULT_WEIGHT_TOTAL} is used meanwhile",
                        WEIGHT_TOTAL_RANGE.start(),
                        WEIGHT_TOTAL_RANGE.end()
                    ),
                );
                DEFAULT_WEIGHT_TOTAL
            }
        },
    };
    let priority = annotation(annotations, "canary-priority-list")
        .map(|text| {
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|entry| match entry.split_once('/') {
                    Some((ns, name)) => (ns.to_string(), name.to_string()),
                    None => (primary.namespace.clone(), entry.to_string()),
                })
                .collect()
        })
        .unwrap_or_default();
    let ignored: Vec<&str> = CANARY_ONLY
        .iter()
        .copied()
        .filter(|name| annotation(annotations, name).is_some())
        .collect();
    if let Some(first) = ignored.first() {
        warn(
            problems,
            first,
            format!(
                "{} only apply to canary Ingresses and are ignored here; add \
                 {PREFIX}canary: \"true\" to make this Ingress a canary of the primary with the \
                 same host and path, or remove them",
                ignored.join(", ")
            ),
        );
    }
    PrimaryOptions {
        weight_total,
        priority,
    }
}

/// A canary's parsed annotations.
#[derive(Debug)]
struct CanarySpec {
    /// Header, cookie and query rules, in that order.
    rules: Vec<CanaryRule>,
    /// `canary-weight` when above 0.
    weight: Option<u32>,
    actions: CanaryActions,
}

/// What was wrong with one canary annotation.
struct Invalid {
    name: String,
    reason: String,
}

fn invalid(name: &str, reason: impl Into<String>) -> Invalid {
    Invalid {
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// Parses every canary annotation of one canary Ingress; all errors are returned together.
/// Warnings (ignored settings) go to `warnings`.
fn parse_spec(
    annotations: Option<&BTreeMap<String, String>>,
    warnings: &mut Vec<Invalid>,
) -> Result<CanarySpec, Vec<Invalid>> {
    let notes = Notes(annotations);
    let get = |name: &str| notes.get(name);
    let mut errors = Vec::new();

    let modulo = parse_modulo(&get, &mut errors);
    let mut modulo_used = false;
    let mut rules = Vec::new();

    // Header.
    let header_list = list_of(&get, "canary-by-header-value", &mut errors);
    let pattern = match get("canary-by-header-pattern") {
        None => None,
        Some(p) => match Regex::new(p) {
            Ok(r) => Some(r),
            Err(e) => {
                errors.push(invalid(
                    "canary-by-header-pattern",
                    format!(
                        "`{p}` is not a valid regex ({}); fix the pattern",
                        one_line(&e)
                    ),
                ));
                None
            }
        },
    };
    match get("canary-by-header") {
        Some(name) if !is_token(name) => errors.push(invalid(
            "canary-by-header",
            format!("`{name}` is not a header name; use letters, digits and `-`"),
        )),
        Some(name) => {
            let matcher = if let Some(list) = header_list {
                if pattern.is_some() {
                    warnings.push(invalid(
                        "canary-by-header-pattern",
                        "ignored: canary-by-header-value is set and takes precedence",
                    ));
                }
                list
            } else if let Some(p) = pattern {
                ValueMatch::Pattern(p)
            } else if let Some(m) = &modulo {
                modulo_used = true;
                m.clone()
            } else {
                ValueMatch::Always {
                    never_means_primary: true,
                }
            };
            rules.push(CanaryRule::Header {
                name: name.to_ascii_lowercase(),
                matcher,
            });
        }
        None => {
            for orphan in ["canary-by-header-value", "canary-by-header-pattern"] {
                if get(orphan).is_some() {
                    errors.push(invalid(
                        orphan,
                        "needs canary-by-header to name the header it applies to",
                    ));
                }
            }
        }
    }

    // Cookie and query.
    for (kind, value_name) in [
        ("canary-by-cookie", "canary-by-cookie-value"),
        ("canary-by-query", "canary-by-query-value"),
    ] {
        let list = list_of(&get, value_name, &mut errors);
        let Some(name) = get(kind) else {
            if get(value_name).is_some() {
                errors.push(invalid(
                    value_name,
                    format!("needs {kind} to name what it applies to"),
                ));
            }
            continue;
        };
        let cookie = kind == "canary-by-cookie";
        let valid_name = if cookie {
            is_token(name)
        } else {
            is_query_text(name)
        };
        if !valid_name {
            errors.push(invalid(
                kind,
                format!(
                    "`{name}` is not a valid {} name; use letters, digits, `-` and `_`",
                    if cookie { "cookie" } else { "query parameter" }
                ),
            ));
            continue;
        }
        let matcher = if let Some(list) = list {
            list
        } else if let Some(m) = &modulo {
            modulo_used = true;
            m.clone()
        } else {
            ValueMatch::Always {
                never_means_primary: cookie,
            }
        };
        let name = name.to_string();
        rules.push(if cookie {
            CanaryRule::Cookie { name, matcher }
        } else {
            CanaryRule::Query { name, matcher }
        });
    }
    if modulo.is_some() && !modulo_used {
        if rules.is_empty() {
            errors.push(invalid(
                "canary-mod-divisor",
                "modulo routing needs canary-by-header, canary-by-cookie or canary-by-query to \
                 name the value it divides",
            ));
        } else {
            warnings.push(invalid(
                "canary-mod-divisor",
                "ignored: every key of this canary has a value list or pattern, which takes \
                 precedence over modulo routing",
            ));
        }
    }

    let weight = match get("canary-weight") {
        None => None,
        Some(text) => match text.parse::<u32>() {
            Ok(0) => None,
            Ok(w) if w <= *WEIGHT_TOTAL_RANGE.end() => Some(w),
            _ => {
                errors.push(invalid(
                    "canary-weight",
                    format!(
                        "`{text}` is not a weight; use a whole number from 0 to the primary's \
                         canary-weight-total (100 unless set, at most {})",
                        WEIGHT_TOTAL_RANGE.end()
                    ),
                ));
                None
            }
        },
    };

    let mut actions = CanaryActions::default();
    for (name, target) in [
        ("canary-request-add-header", &mut actions.request_add_header),
        (
            "canary-request-append-header",
            &mut actions.request_append_header,
        ),
        (
            "canary-response-add-header",
            &mut actions.response_add_header,
        ),
        (
            "canary-response-append-header",
            &mut actions.response_append_header,
        ),
    ] {
        if let Some(text) = get(name) {
            match header_actions(text) {
                Ok(list) => *target = list,
                Err(reason) => errors.push(invalid(name, reason)),
            }
        }
    }
    if let Some(text) = get("canary-request-add-query") {
        match query_actions(text) {
            Ok(list) => actions.request_add_query = list,
            Err(reason) => errors.push(invalid("canary-request-add-query", reason)),
        }
    }
    for misplaced in ["canary-weight-total", "canary-priority-list"] {
        if get(misplaced).is_some() {
            warnings.push(invalid(
                misplaced,
                "ignored on a canary: set it on the primary Ingress",
            ));
        }
    }

    if errors.is_empty() {
        Ok(CanarySpec {
            rules,
            weight,
            actions,
        })
    } else {
        Err(errors)
    }
}

fn one_line(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map(str::to_string)
        .unwrap_or_else(|| text.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn list_of<'a>(
    get: &impl for<'n> Fn(&'n str) -> Option<&'a str>,
    name: &str,
    errors: &mut Vec<Invalid>,
) -> Option<ValueMatch> {
    let text = get(name)?;
    let items: Vec<&str> = text.split("||").map(str::trim).collect();
    if items.iter().any(|i| i.is_empty()) {
        errors.push(invalid(
            name,
            format!("`{text}` has an empty value; separate values with `||`, as in `a||b`"),
        ));
        return None;
    }
    if items.len() > MAX_VALUES {
        errors.push(invalid(
            name,
            format!(
                "{} values given, at most {MAX_VALUES} are allowed; split the canary in two",
                items.len()
            ),
        ));
        return None;
    }
    let values: BTreeSet<String> = items.iter().map(|i| i.to_ascii_lowercase()).collect();
    Some(ValueMatch::List(values.into_iter().collect()))
}

fn parse_modulo<'a>(
    get: &impl for<'n> Fn(&'n str) -> Option<&'a str>,
    errors: &mut Vec<Invalid>,
) -> Option<ValueMatch> {
    let divisor_text = get("canary-mod-divisor");
    let op_text = get("canary-mod-relational-operator");
    let remainder_text = get("canary-mod-remainder");
    if divisor_text.is_none() && op_text.is_none() && remainder_text.is_none() {
        return None;
    }
    let divisor = match divisor_text.map(|t| (t, t.parse::<u32>())) {
        Some((_, Ok(d))) if DIVISOR_RANGE.contains(&d) => Some(d),
        other => {
            errors.push(invalid(
                "canary-mod-divisor",
                format!(
                    "{}; modulo routing needs a divisor from {} to {}",
                    match other {
                        Some((t, _)) => format!("`{t}` is not a valid divisor"),
                        None => "missing".to_string(),
                    },
                    DIVISOR_RANGE.start(),
                    DIVISOR_RANGE.end()
                ),
            ));
            None
        }
    };
    let op = match op_text.map(|t| (t, ModOp::parse(t))) {
        Some((_, Some(op))) => Some(op),
        other => {
            errors.push(invalid(
                "canary-mod-relational-operator",
                format!(
                    "{}; use one of ==, >, >=, <, <=",
                    match other {
                        Some((t, _)) => format!("`{t}` is not an operator"),
                        None => "missing".to_string(),
                    }
                ),
            ));
            None
        }
    };
    let remainder = match remainder_text.map(|t| (t, t.parse::<u32>())) {
        None => Some(0),
        Some((_, Ok(r))) if divisor.is_none_or(|d| r < d) => Some(r),
        Some((t, _)) => {
            errors.push(invalid(
                "canary-mod-remainder",
                format!(
                    "`{t}` is not a valid remainder; use a whole number from 0 to the divisor \
                     minus one"
                ),
            ));
            None
        }
    };
    Some(ValueMatch::Modulo {
        divisor: divisor?,
        op: op?,
        remainder: remainder?,
    })
}

/// `name:value||name:value`; the value may be `$remote_addr`, `$host`, `$request_id` or
/// `$scheme`.
fn header_actions(text: &str) -> Result<Vec<HeaderAction>, String> {
    let items: Vec<&str> = text.split("||").map(str::trim).collect();
    if items.len() > MAX_ACTIONS {
        return Err(format!(
            "{} headers given, at most {MAX_ACTIONS} are allowed",
            items.len()
        ));
    }
    items
        .into_iter()
        .map(|item| {
            let (name, value) = item
                .split_once(':')
                .map(|(n, v)| (n.trim(), v.trim()))
                .filter(|(n, v)| !n.is_empty() && !v.is_empty())
                .ok_or_else(|| {
                    format!("`{item}` is not `name:value`; separate several with `||`")
                })?;
            if !is_token(name) {
                return Err(format!(
                    "`{name}` is not a header name; use letters, digits and `-`"
                ));
            }
            let name = name.to_ascii_lowercase();
            if RESERVED_HEADERS.contains(&name.as_str()) {
                return Err(format!(
                    "header `{name}` is managed by the proxy and cannot be set by an action"
                ));
            }
            let value = action_value(value, is_header_value)?;
            Ok(HeaderAction { name, value })
        })
        .collect()
}

/// `name=value&name=value`.
fn query_actions(text: &str) -> Result<Vec<QueryAction>, String> {
    let items: Vec<&str> = text.split('&').map(str::trim).collect();
    if items.len() > MAX_ACTIONS {
        return Err(format!(
            "{} query parameters given, at most {MAX_ACTIONS} are allowed",
            items.len()
        ));
    }
    items
        .into_iter()
        .map(|item| {
            let (name, value) = item
                .split_once('=')
                .map(|(n, v)| (n.trim(), v.trim()))
                .filter(|(n, v)| !n.is_empty() && !v.is_empty())
                .ok_or_else(|| {
                    format!("`{item}` is not `name=value`; separate several with `&`")
                })?;
            if !is_query_text(name) {
                return Err(format!(
                    "`{name}` is not a query parameter name; use letters, digits, `-`, `_`, `.` \
                     and percent-escapes"
                ));
            }
            let value = action_value(value, is_query_text)?;
            Ok(QueryAction {
                name: name.to_string(),
                value,
            })
        })
        .collect()
}

fn action_value(value: &str, valid: impl Fn(&str) -> bool) -> Result<ActionValue, String> {
    if value.starts_with('$') {
        return Variable::parse(value)
            .map(ActionValue::Variable)
            .ok_or_else(|| {
                format!(
                    "`{value}` is not a supported variable; use one of {}, or a literal value",
                    Variable::ALL.map(|(n, _)| n).join(", ")
                )
            });
    }
    if !valid(value) {
        return Err(format!(
            "`{value}` contains characters that cannot be sent as is; use visible ASCII \
             (percent-escape query values)"
        ));
    }
    Ok(ActionValue::Static(value.to_string()))
}

/// Characters a query name or value may hold as is (RFC 3986 query characters without the
/// `&`, `=` and `+` that structure it).
fn is_query_text(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!$'()*,;:@/?%".contains(&b))
}

/// One canary Ingress's claim on one primary route.
struct Candidate<'a> {
    /// Position in Ingress precedence order.
    order: usize,
    canary: &'a CanaryIngress<'a>,
    spec: Arc<CanarySpec>,
    backend: BackendKey,
    field: String,
}

/// Attaches every valid canary to its primary route. `backend_key` names a backend as the
/// primary paths do; `slot` gives the shared slot of a backend.
pub(crate) fn attach(
    sites: PrimarySites,
    canaries: &[CanaryIngress<'_>],
    backend_key: impl Fn(&str, &IngressBackend) -> Result<BackendKey, (&'static str, String)>,
    mut slot: impl FnMut(BackendKey) -> Arc<BackendSlot>,
    problems: &mut Vec<Problem>,
) -> Vec<Attached> {
    let PrimarySites {
        sites,
        problems: primary_problems,
        ..
    } = sites;
    problems.extend(primary_problems);

    let mut by_site: BTreeMap<(String, usize), Vec<Candidate<'_>>> = BTreeMap::new();
    for (order, canary) in canaries.iter().enumerate() {
        let reject = |field: String, reason: String| {
            Problem::rejected((*canary.object).clone(), reason)
                .at_field(field)
                .from_origin(Some(canary.origin.clone()))
        };
        let annotations = canary.ingress.metadata.annotations.as_ref();
        let mut warnings = Vec::new();
        let spec = match parse_spec(annotations, &mut warnings) {
            Ok(spec) => spec,
            Err(errors) => {
                for e in errors {
                    problems.push(reject(
                        field_of(&e.name),
                        format!(
                            "{}; this canary is not used until this is fixed (its traffic stays \
                             on the primary)",
                            e.reason
                        ),
                    ));
                }
                continue;
            }
        };
        for w in warnings {
            problems.push(
                Problem::warning((*canary.object).clone(), w.reason)
                    .at_field(field_of(&w.name))
                    .from_origin(Some(canary.origin.clone())),
            );
        }
        if spec.rules.is_empty() && spec.weight.is_none() {
            if annotation(annotations, "canary-weight").is_none() {
                problems.push(
                    Problem::warning(
                        (*canary.object).clone(),
                        "this canary receives no traffic: set canary-by-header, \
                         canary-by-cookie, canary-by-query or canary-weight",
                    )
                    .at_field(field_of("canary"))
                    .from_origin(Some(canary.origin.clone())),
                );
            }
            continue;
        }
        let spec = Arc::new(spec);
        let spec_ref = canary.ingress.spec.as_ref();
        if spec_ref.and_then(|s| s.default_backend.as_ref()).is_some() {
            problems.push(
                Problem::warning(
                    (*canary.object).clone(),
                    "a canary's defaultBackend is not used: canaries only take traffic of a \
                     primary's paths; list the paths under spec.rules",
                )
                .at_field("spec.defaultBackend")
                .from_origin(Some(canary.origin.clone())),
            );
        }
        let rules = spec_ref.and_then(|s| s.rules.as_deref()).unwrap_or(&[]);
        for (i, rule) in rules.iter().enumerate() {
            let host = match rule.host.as_deref().filter(|h| !h.is_empty()) {
                None => String::new(),
                Some(h) => match normalize_host(h) {
                    Ok(h) => h,
                    Err(why) => {
                        problems.push(reject(
                            format!("spec.rules[{i}].host"),
                            format!("{why}; this rule of the canary is not used"),
                        ));
                        continue;
                    }
                },
            };
            let paths = rule
                .http
                .as_ref()
                .map(|h| h.paths.as_slice())
                .unwrap_or(&[]);
            for (j, path) in paths.iter().enumerate() {
                let field = format!("spec.rules[{i}].http.paths[{j}]");
                let text = path
                    .path
                    .as_deref()
                    .filter(|p| !p.is_empty())
                    .unwrap_or("/");
                let key = (host.clone(), path.path_type.clone(), text.to_string());
                let Some(site) = sites.get(&key) else {
                    let shown = if host.is_empty() { "(any host)" } else { &host };
                    problems.push(reject(
                        field,
                        format!(
                            "no primary (non-canary) Ingress serves host {shown} path {text} \
                             with pathType {}; a canary only takes traffic from the primary \
                             with the same host, path and pathType, so this path of the canary \
                             is dropped; create that primary or fix the host, path or pathType",
                            path.path_type
                        ),
                    ));
                    continue;
                };
                let backend = match backend_key(canary.namespace, &path.backend) {
                    Ok(b) => b,
                    Err((suffix, why)) => {
                        problems.push(reject(
                            format!("{field}.backend{suffix}"),
                            format!("{why}; this path of the canary is not used"),
                        ));
                        continue;
                    }
                };
                let list = by_site
                    .entry((site.host.clone(), site.route_index))
                    .or_default();
                if list.iter().any(|c| c.order == order) {
                    problems.push(
                        Problem::warning(
                            (*canary.object).clone(),
                            "this canary names the same host, path and pathType twice; only the \
                         first is used",
                        )
                        .at_field(field)
                        .from_origin(Some(canary.origin.clone())),
                    );
                    continue;
                }
                list.push(Candidate {
                    order,
                    canary,
                    spec: spec.clone(),
                    backend,
                    field,
                });
            }
        }
    }

    let sites_by_route: HashMap<(&str, usize), &Site> = sites
        .values()
        .map(|s| ((s.host.as_str(), s.route_index), s))
        .collect();
    let mut attached = Vec::new();
    let mut listed_seen: BTreeSet<(Arc<ObjectRef>, usize)> = BTreeSet::new();
    for ((host, route_index), mut candidates) in by_site {
        let Some(site) = sites_by_route.get(&(host.as_str(), route_index)) else {
            continue;
        };
        let priority = &site.options.priority;
        let position = |c: &Candidate<'_>| {
            priority.iter().position(|(ns, name)| {
                *ns == c.canary.object.namespace && *name == c.canary.object.name
            })
        };
        // Canary order: listed ones in list order, then the rest in precedence order.
        candidates.sort_by_key(|c| (position(c).unwrap_or(usize::MAX), c.order));
        for c in &candidates {
            if let Some(p) = position(c) {
                listed_seen.insert((site.primary.clone(), p));
            }
        }
        let total = site.options.weight_total;
        let mut kept: Vec<(&Candidate<'_>, Arc<CanaryTarget>)> = Vec::new();
        let mut weighted: Vec<(&Candidate<'_>, u32)> = Vec::new();
        let mut sum = 0u32;
        for c in &candidates {
            let reject = |reason: String| {
                Problem::rejected((*c.canary.object).clone(), reason)
                    .at_field(c.field.clone())
                    .from_origin(Some(c.canary.origin.clone()))
            };
            if kept.len() == MAX_CANARIES_PER_PATH {
                problems.push(reject(format!(
                    "{} already has {MAX_CANARIES_PER_PATH} canaries on this path, the most \
                     allowed; this canary is not used there",
                    site.primary
                )));
                continue;
            }
            if let Some(w) = c.spec.weight {
                if sum + w > total {
                    let holders = if weighted.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " on top of {}",
                            weighted
                                .iter()
                                .map(|(h, hw)| format!("{} ({hw})", h.canary.object))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    };
                    problems.push(reject(format!(
                        "canary-weight {w}{holders} exceeds the weight total {total} of {} \
                         (canary-weight-total on the primary, 100 by default); this canary is \
                         rejected on this path; lower the weights or raise the total",
                        site.primary
                    )));
                    continue;
                }
                sum += w;
                weighted.push((c, w));
            }
            let target = Arc::new(CanaryTarget {
                backend: slot(c.backend.clone()),
                actions: c.spec.actions.clone(),
                ingress: c.canary.object.clone(),
            });
            kept.push((c, target));
        }
        // Rule order: listed canaries first (each in kind order), then every header rule, every
        // cookie rule, every query rule and every weight rule, each kind in canary order.
        let mut rules: Vec<((u8, usize, usize, usize), Canary)> = Vec::new();
        for (rank_in_canaries, (c, target)) in kept.iter().enumerate() {
            let listed = position(c);
            let mut push = |rule: CanaryRule| {
                let kind = kind_rank(&rule);
                let key = match listed {
                    Some(p) => (0, p, kind, 0),
                    None => (1, kind, rank_in_canaries, 0),
                };
                rules.push((
                    key,
                    Canary {
                        rule,
                        target: target.clone(),
                    },
                ));
            };
            for rule in &c.spec.rules {
                push(rule.clone());
            }
            if let Some(weight) = c.spec.weight {
                push(CanaryRule::Weight { weight });
            }
        }
        rules.sort_by_key(|(key, _)| *key);
        if rules.is_empty() {
            continue;
        }
        attached.push(Attached {
            host,
            route_index,
            canaries: rules.into_iter().map(|(_, c)| c).collect(),
            weight_total: total,
        });
    }

    // Priority entries that name no canary of the primary.
    let mut reported = BTreeSet::new();
    for site in sites.values() {
        for (p, (ns, name)) in site.options.priority.iter().enumerate() {
            if listed_seen.contains(&(site.primary.clone(), p))
                || !reported.insert((site.primary.clone(), p))
            {
                continue;
            }
            problems.push(
                Problem::warning(
                    (*site.primary).clone(),
                    format!(
                        "canary-priority-list names {ns}/{name}, which is no canary of this \
                         Ingress's paths; check the name (entries are `name` or \
                         `namespace/name`, comma-separated)"
                    ),
                )
                .at_field(field_of("canary-priority-list"))
                .from_origin(Some(site.origin.clone())),
            );
        }
    }
    attached
}

fn kind_rank(rule: &CanaryRule) -> usize {
    match rule {
        CanaryRule::Header { .. } => 0,
        CanaryRule::Cookie { .. } => 1,
        CanaryRule::Query { .. } => 2,
        CanaryRule::Weight { .. } => 3,
    }
}
