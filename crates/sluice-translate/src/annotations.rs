//! The ingress-nginx annotations of one Ingress, parsed and bounded.

use crate::values::{parse_bool, parse_timeout};
use sluice_model::{GlobalOptions, RoutePolicy};
use std::collections::BTreeMap;

pub const PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// What an Ingress's annotations ask for.
#[derive(Debug, Clone)]
pub struct IngressAnnotations {
    pub policy: RoutePolicy,
    /// `use-regex: "true"` or any `rewrite-target`: ImplementationSpecific paths are regexes.
    pub regex: bool,
    /// `canary: "true"`.
    pub canary: bool,
    /// `ssl-protocols`: the TLS versions of this Ingress's hosts (first Ingress of a host wins).
    pub ssl_protocols: Option<sluice_model::TlsVersions>,
}

/// One annotation that makes the Ingress impossible to serve as meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotationError {
    pub key: String,
    pub reason: String,
}

/// Parses every annotation Sluice reads; unknown ones are ignored. All errors are returned so the
/// user can fix them in one go.
pub fn parse_annotations(
    annotations: Option<&BTreeMap<String, String>>,
    globals: &GlobalOptions,
) -> Result<IngressAnnotations, Vec<AnnotationError>> {
    let mut parsed = IngressAnnotations {
        policy: RoutePolicy::from_globals(globals),
        regex: false,
        canary: false,
        ssl_protocols: None,
    };
    let mut errors = Vec::new();
    for (key, value) in annotations.into_iter().flatten() {
        let Some(name) = key.strip_prefix(PREFIX) else {
            continue;
        };
        let result = apply(&mut parsed, name, value);
        if let Err(reason) = result {
            errors.push(AnnotationError {
                key: key.clone(),
                reason,
            });
        }
    }
    if errors.is_empty() {
        Ok(parsed)
    } else {
        Err(errors)
    }
}

fn apply(a: &mut IngressAnnotations, name: &str, value: &str) -> Result<(), String> {
    if name.ends_with("-snippet") {
        return Err(
            "snippets are not supported: Sluice never injects raw configuration; remove this \
             annotation and use the equivalent typed annotation instead"
                .to_string(),
        );
    }
    let p = &mut a.policy;
    match name {
        "ssl-redirect" => p.ssl_redirect = parse_bool(value)?,
        "force-ssl-redirect" => p.force_ssl_redirect = parse_bool(value)?,
        "proxy-connect-timeout" => p.connect_timeout = parse_timeout(value)?,
        "proxy-send-timeout" => p.send_timeout = parse_timeout(value)?,
        "proxy-read-timeout" => p.read_timeout = parse_timeout(value)?,
        "enable-access-log" => p.enable_access_log = parse_bool(value)?,
        "use-regex" => a.regex |= parse_bool(value)?,
        // An empty target is no rewrite (ingress-nginx ignores empty annotations).
        "rewrite-target" => a.regex |= !value.trim().is_empty(),
        "canary" => a.canary = parse_bool(value)?,
        "ssl-protocols" => {
            a.ssl_protocols = Some(crate::ssl_protocols::parse_ssl_protocols(value)?)
        }
        "disable-robots" => p.disable_robots = parse_bool(value)?,
        _ => {}
    }
    Ok(())
}
