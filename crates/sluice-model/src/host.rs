//! Hosts: exact names, one-label wildcards, and the default server for everything else.

use crate::route::Route;
use crate::shared_map::SharedMap;
use std::sync::Arc;

/// One host's routes, in match order.
#[derive(Debug, Clone, Default)]
pub struct VirtualHost {
    /// `foo.com`, `*.foo.com`, or empty for the default server (rules without host and the
    /// catch-all backend).
    pub name: String,
    /// Sorted by [`crate::PathMatch::match_order`]: the first match wins.
    pub routes: Vec<Route>,
    /// Used when no route matches: the owning Ingress's `spec.defaultBackend` (or, for the default
    /// server, the catch-all Ingress's). `None` answers 404.
    pub fallback: Option<Route>,
    /// Listed in some Ingress's `spec.tls` (turns on the https redirect and HSTS).
    pub tls: bool,
}

impl VirtualHost {
    pub fn find(&self, path: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| r.path.matches(path))
            .or(self.fallback.as_ref())
    }
}

/// Host lookup: exact name, then `*.parent` for one label, then the default server.
#[derive(Debug, Clone, Default)]
pub struct HostTable {
    /// The next snapshot's table is a clone of this one with a few hosts changed: a
    /// [`SharedMap`] shares everything else with it.
    pub exact: SharedMap<Arc<str>, Arc<VirtualHost>>,
    /// Keyed by the parent domain: `*.foo.com` is stored under `foo.com`.
    pub wildcard: SharedMap<Arc<str>, Arc<VirtualHost>>,
    pub default: Arc<VirtualHost>,
}

impl HostTable {
    /// `host` is the request's host without port, already lower-case.
    pub fn lookup(&self, host: &str) -> &Arc<VirtualHost> {
        if let Some(v) = self.exact.get(host) {
            return v;
        }
        if let Some((first, parent)) = host.split_once('.')
            && !first.is_empty()
            && let Some(v) = self.wildcard.get(parent)
        {
            return v;
        }
        &self.default
    }

    /// Inserts a host by its Ingress spelling (`foo.com` or `*.foo.com`).
    pub fn insert(&mut self, vhost: Arc<VirtualHost>) {
        match vhost.name.strip_prefix("*.") {
            Some(parent) => {
                self.wildcard.insert(parent.into(), vhost);
            }
            None => {
                self.exact.insert(vhost.name.as_str().into(), vhost);
            }
        }
    }

    /// Removes a host by its Ingress spelling; the default server is not in the table.
    pub fn remove(&mut self, name: &str) -> Option<Arc<VirtualHost>> {
        match name.strip_prefix("*.") {
            Some(parent) => self.wildcard.remove(parent),
            None => self.exact.remove(name),
        }
    }

    /// Named hosts (exact and wildcard), without the default server.
    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every host, default server last.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<VirtualHost>> {
        self.exact
            .values()
            .chain(self.wildcard.values())
            .chain(std::iter::once(&self.default))
    }

    /// Lower-cases and strips the port of a Host header or `:authority`.
    pub fn normalize(host: &str) -> std::borrow::Cow<'_, str> {
        let without_port = match host.rsplit_once(':') {
            // IPv6 literal without port: "[::1]"
            _ if host.ends_with(']') => host,
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        };
        let trimmed = without_port.trim_end_matches('.');
        if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
            std::borrow::Cow::Owned(trimmed.to_ascii_lowercase())
        } else {
            std::borrow::Cow::Borrowed(trimmed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vhost(name: &str) -> Arc<VirtualHost> {
        Arc::new(VirtualHost {
            name: name.into(),
            ..Default::default()
        })
    }

    #[test]
    fn exact_then_one_label_wildcard_then_default() {
        let mut t = HostTable::default();
        t.insert(vhost("foo.com"));
        t.insert(vhost("*.foo.com"));
        t.insert(vhost("exact.foo.com"));
        assert_eq!(t.lookup("foo.com").name, "foo.com");
        assert_eq!(t.lookup("bar.foo.com").name, "*.foo.com");
        assert_eq!(t.lookup("exact.foo.com").name, "exact.foo.com");
        assert_eq!(t.lookup("baz.bar.foo.com").name, "");
        assert_eq!(t.lookup("other.org").name, "");
    }

    #[test]
    fn normalize_strips_port_and_case() {
        assert_eq!(HostTable::normalize("Foo.COM:8080"), "foo.com");
        assert_eq!(HostTable::normalize("foo.com"), "foo.com");
        assert_eq!(HostTable::normalize("foo.com."), "foo.com");
        assert_eq!(HostTable::normalize("[::1]"), "[::1]");
        assert_eq!(HostTable::normalize("[::1]:443"), "[::1]");
    }
}
