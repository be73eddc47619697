//! The global options ConfigMap (ingress-nginx's controller ConfigMap keys).

use crate::values::{parse_bool, parse_redirect_code, parse_seconds, parse_timeout};
use sluice_model::{GlobalOptions, ObjectKind, Problem};
use sluice_store::{NamespacedName, ObjectStore};

/// Reads the options; a bad value is reported and its default kept, so one typo never stops
/// the gateway.
pub fn global_options(
    store: &ObjectStore,
    configmap: Option<&NamespacedName>,
    problems: &mut Vec<Problem>,
) -> GlobalOptions {
    let mut options = GlobalOptions::default();
    let Some(key) = configmap else {
        return options;
    };
    let object = key.object_ref(ObjectKind::ConfigMap);
    let Some(stored) = store.config_maps.get(key) else {
        problems.push(Problem::warning(
            object,
            "the global options ConfigMap named by --configmap does not exist; defaults are used \
             until it is created (check the namespace/name)",
        ));
        return options;
    };
    let Some(data) = stored.object.data.as_ref() else {
        return options;
    };
    for (name, value) in data {
        let result = apply(&mut options, name, value);
        match result {
            Ok(true) => {}
            // Keys of other ingress-nginx features are not errors: they may be implemented later
            // and the same ConfigMap is shared with ingress-nginx during a migration.
            Ok(false) => {}
            Err(why) => problems.push(
                Problem::rejected(
                    object.clone(),
                    format!("{why}; the default is used until this is fixed"),
                )
                .at_field(format!("data[\"{name}\"]"))
                .from_origin(Some(stored.origin.clone())),
            ),
        }
    }
    options
}

/// Returns whether the key is one Sluice reads.
fn apply(o: &mut GlobalOptions, name: &str, value: &str) -> Result<bool, String> {
    match name {
        "ssl-redirect" => o.ssl_redirect = parse_bool(value)?,
        "force-ssl-redirect" => o.force_ssl_redirect = parse_bool(value)?,
        "http-redirect-code" => o.http_redirect_code = parse_redirect_code(value)?,
        "hsts" => o.hsts = parse_bool(value)?,
        "hsts-max-age" => o.hsts_max_age = parse_seconds(value)?,
        "hsts-include-subdomains" => o.hsts_include_subdomains = parse_bool(value)?,
        "hsts-preload" => o.hsts_preload = parse_bool(value)?,
        "proxy-connect-timeout" => o.proxy_connect_timeout = parse_timeout(value)?,
        "proxy-send-timeout" => o.proxy_send_timeout = parse_timeout(value)?,
        "proxy-read-timeout" => o.proxy_read_timeout = parse_timeout(value)?,
        "regex-host-wide" => o.regex_host_wide = parse_bool(value)?,
        "trusted-proxies" => {
            o.trusted_proxies = value
                .split(',')
                .filter(|t| !t.trim().is_empty())
                .map(sluice_model::Cidr::parse)
                .collect::<Result<_, _>>()?
        }
        _ => return Ok(false),
    }
    Ok(true)
}
