//! From command-line selection flags to translation options.

use crate::cli::SelectionArgs;
use anyhow::{Context, anyhow};
use sluice_store::NamespacedName;
use sluice_translate::TranslateOptions;

pub fn translate_options(args: &SelectionArgs) -> anyhow::Result<TranslateOptions> {
    Ok(TranslateOptions {
        ingress_class: args.ingress_class.clone(),
        controller_class: args.controller_class.clone(),
        watch_ingress_without_class: args.watch_ingress_without_class,
        default_ssl_certificate: parse_ref(
            "--default-ssl-certificate",
            &args.default_ssl_certificate,
        )?,
        configmap: parse_ref("--configmap", &args.configmap)?,
    })
}

fn parse_ref(flag: &str, value: &Option<String>) -> anyhow::Result<Option<NamespacedName>> {
    value
        .as_deref()
        .map(|v| {
            NamespacedName::parse(v).ok_or_else(|| {
                anyhow!("{flag} {v:?}: expected NAMESPACE/NAME, e.g. default/my-cert")
            })
        })
        .transpose()
        .with_context(|| format!("invalid {flag}"))
}
