//! Canaries at request time: which backend takes the request, and the chosen canary's actions on
//! the upstream request and on the response.
//!
//! Rules are evaluated in the snapshot's order, first match wins. Weight rules share one draw
//! per request from a thread-local generator (no locks, no shared state), each taking the next
//! range of the route's weight total; the primary keeps what is left.

use crate::forward::ConnectionInfo;
use http::header::{COOKIE, HOST, HeaderMap, HeaderName, HeaderValue, SET_COOKIE};
use http::{Uri, request};
use sluice_model::{
    ActionValue, BackendSlot, CanaryActions, CanaryRoute, CanaryRule, CanaryTarget, HeaderAction,
    HostTable, Route, RouteTarget, Variable, Verdict,
};
use std::cell::Cell;
use std::sync::Arc;

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The backend of a request and, when a canary took it, that canary.
pub(crate) fn choose(
    route: &Route,
    headers: &HeaderMap,
    uri: &Uri,
) -> (Arc<BackendSlot>, Option<Arc<CanaryTarget>>) {
    match &route.target {
        RouteTarget::Backend(slot) => (slot.clone(), None),
        RouteTarget::Canaries(set) => match pick(set, headers, uri) {
            Some(canary) => (canary.backend.clone(), Some(canary.clone())),
            None => (set.primary.clone(), None),
        },
    }
}

/// The canary that takes the request, or `None` for the primary.
fn pick<'a>(set: &'a CanaryRoute, headers: &HeaderMap, uri: &Uri) -> Option<&'a Arc<CanaryTarget>> {
    let mut draw: Option<u32> = None;
    let mut range_start = 0u32;
    for canary in set.canaries.iter() {
        let verdict = match &canary.rule {
            CanaryRule::Header { name, matcher } => headers
                .get(name.as_str())
                .map_or(Verdict::NoMatch, |v| matcher.judge(v.as_bytes())),
            CanaryRule::Cookie { name, matcher } => {
                cookie(headers, name).map_or(Verdict::NoMatch, |v| matcher.judge(v))
            }
            CanaryRule::Query { name, matcher } => {
                query(uri, name).map_or(Verdict::NoMatch, |v| matcher.judge(v.as_bytes()))
            }
            CanaryRule::Weight { weight } => {
                let r = *draw.get_or_insert_with(|| below(set.weight_total));
                let end = range_start.saturating_add(*weight);
                let hit = (range_start..end).contains(&r);
                range_start = end;
                if hit {
                    Verdict::Canary
                } else {
                    Verdict::NoMatch
                }
            }
        };
        match verdict {
            Verdict::Canary => return Some(&canary.target),
            Verdict::Primary => return None,
            Verdict::NoMatch => {}
        }
    }
    None
}

/// The first value of cookie `name` (exact name) over every `Cookie` header.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    headers.get_all(COOKIE).iter().find_map(|line| {
        line.as_bytes().split(|&b| b == b';').find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            (pair[..eq].trim_ascii() == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
        })
    })
}

/// The first value of query parameter `name` (exact name), as sent (not decoded). A parameter
/// without `=` has the empty value.
fn query<'u>(uri: &'u Uri, name: &str) -> Option<&'u str> {
    uri.query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })
}

/// A uniform number in `0..n` (n > 0) from this thread's generator.
fn below(n: u32) -> u32 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(seed());
    }
    let x = STATE.with(|state| {
        // wyrand: one add and one wide multiply per number; plenty for traffic splitting.
        let s = state.get().wrapping_add(0xa076_1d64_78bd_642f);
        state.set(s);
        let t = u128::from(s) * u128::from(s ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    });
    ((u128::from(x) * u128::from(n.max(1))) >> 64) as u32
}

/// Per-thread seed from the standard library's randomly keyed hasher.
fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_usize(&hasher as *const _ as usize);
    hasher.finish()
}

/// What action values may refer to, taken from the request as it goes upstream.
pub(crate) struct Variables {
    host: Option<HeaderValue>,
    remote_addr: HeaderValue,
    request_id: Option<HeaderValue>,
    scheme: &'static str,
}

impl Variables {
    /// Reads the upstream request's headers (after forwarding rules are applied, so the request
    /// ID is the one sent upstream).
    pub(crate) fn of(headers: &HeaderMap, conn: &ConnectionInfo) -> Variables {
        let host = headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .map(HostTable::normalize)
            .filter(|h| !h.is_empty())
            .and_then(|h| HeaderValue::from_str(&h).ok());
        Variables {
            host,
            remote_addr: conn.client_ip().clone(),
            request_id: headers.get(X_REQUEST_ID).cloned(),
            scheme: if conn.tls { "https" } else { "http" },
        }
    }

    /// A missing variable (e.g. no host) skips the action, as nginx does.
    fn value(&self, v: Variable) -> Option<HeaderValue> {
        match v {
            Variable::RemoteAddr => Some(self.remote_addr.clone()),
            Variable::Host => self.host.clone(),
            Variable::RequestId => self.request_id.clone(),
            Variable::Scheme => Some(HeaderValue::from_static(self.scheme)),
        }
    }

    fn resolve(&self, value: &ActionValue) -> Option<HeaderValue> {
        match value {
            ActionValue::Static(text) => HeaderValue::from_str(text).ok(),
            ActionValue::Variable(v) => self.value(*v),
        }
    }
}

/// Applies the request actions to the request about to be sent upstream.
pub(crate) fn apply_request(actions: &CanaryActions, parts: &mut request::Parts, vars: &Variables) {
    for action in &actions.request_add_header {
        add_header(&mut parts.headers, action, vars);
    }
    for action in &actions.request_append_header {
        append_header(&mut parts.headers, action, vars);
    }
    if !actions.request_add_query.is_empty() {
        add_query(parts, actions, vars);
    }
}

/// Applies the response actions to the response about to be sent to the client.
pub(crate) fn apply_response(actions: &CanaryActions, headers: &mut HeaderMap, vars: &Variables) {
    for action in &actions.response_add_header {
        add_header(headers, action, vars);
    }
    for action in &actions.response_append_header {
        append_header(headers, action, vars);
    }
}

fn add_header(headers: &mut HeaderMap, action: &HeaderAction, vars: &Variables) {
    let (Ok(name), Some(value)) = (
        HeaderName::from_bytes(action.name.as_bytes()),
        vars.resolve(&action.value),
    ) else {
        return;
    };
    headers.append(name, value);
}

/// Joins the existing lines of the header and the new value with `,` into one line (a list
/// header means the same either way); adds the header when absent. `Set-Cookie` cannot be
/// joined, so there it adds a line.
fn append_header(headers: &mut HeaderMap, action: &HeaderAction, vars: &Variables) {
    let (Ok(name), Some(value)) = (
        HeaderName::from_bytes(action.name.as_bytes()),
        vars.resolve(&action.value),
    ) else {
        return;
    };
    if name == SET_COOKIE || !headers.contains_key(&name) {
        headers.append(name, value);
        return;
    }
    let mut joined: Vec<u8> = Vec::new();
    for existing in headers.get_all(&name) {
        joined.extend_from_slice(existing.as_bytes());
        joined.push(b',');
    }
    joined.extend_from_slice(value.as_bytes());
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(name, value);
    }
}

/// Appends `name=value` pairs after the existing query, in order.
fn add_query(parts: &mut request::Parts, actions: &CanaryActions, vars: &Variables) {
    let (path, existing) = match parts.uri.path_and_query() {
        Some(pq) => (pq.path(), pq.query().unwrap_or("")),
        None => ("/", ""),
    };
    let mut target = String::with_capacity(path.len() + existing.len() + 64);
    target.push_str(path);
    target.push('?');
    target.push_str(existing);
    let mut first = existing.is_empty();
    for action in &actions.request_add_query {
        let value = match &action.value {
            ActionValue::Static(text) => text.clone(),
            ActionValue::Variable(v) => match vars.value(*v) {
                Some(value) => percent_encode(value.as_bytes()),
                None => continue,
            },
        };
        if !first {
            target.push('&');
        }
        first = false;
        target.push_str(&action.name);
        target.push('=');
        target.push_str(&value);
    }
    if let Ok(uri) = Uri::try_from(target) {
        parts.uri = uri;
    }
}

fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_uniform_enough() {
        let mut counts = [0usize; 4];
        for _ in 0..40_000 {
            counts[below(4) as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
        assert!((0..1000).all(|_| below(1) == 0));
    }

    #[test]
    fn cookies_and_queries_match_names_exactly() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1; Canary=x"));
        h.append(COOKIE, HeaderValue::from_static("canary=always"));
        assert_eq!(cookie(&h, "canary"), Some(&b"always"[..]));
        assert_eq!(cookie(&h, "Canary"), Some(&b"x"[..]));
        assert_eq!(cookie(&h, "b"), None);
        let uri: Uri = "/p?x=1&flag&Q=2&q=3".parse().unwrap();
        assert_eq!(query(&uri, "q"), Some("3"));
        assert_eq!(query(&uri, "flag"), Some(""));
        assert_eq!(query(&uri, "z"), None);
    }

    #[test]
    fn query_values_from_variables_are_escaped() {
        assert_eq!(percent_encode(b"::1"), "%3A%3A1");
        assert_eq!(percent_encode(b"a.b-c"), "a.b-c");
    }
}
