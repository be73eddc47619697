//! The metrics registry and access log of `serve`, from its flags.

use crate::cli::{AccessLogFormatArg, MetricsCompat, ServeArgs};
use anyhow::anyhow;
use sluice_metrics::{AccessLog, AccessLogFormat, AccessLogTarget, Metrics, MetricsOptions};

pub fn metrics(args: &ServeArgs) -> anyhow::Result<Metrics> {
    let options = MetricsOptions {
        compat_ingress_nginx: args.metrics_compat == Some(MetricsCompat::IngressNginx),
        controller_class: args.selection.controller_class.clone(),
        // What ingress-nginx's constant labels hold in a cluster (downward API variables).
        controller_namespace: std::env::var("POD_NAMESPACE").unwrap_or_default(),
        controller_pod: std::env::var("POD_NAME").unwrap_or_default(),
        ingress_class: args.selection.ingress_class.clone(),
    };
    let metrics = Metrics::new(options);
    let Some(target) = &args.access_log else {
        return Ok(metrics);
    };
    let format = match args.access_log_format {
        AccessLogFormatArg::Json => AccessLogFormat::Json,
        AccessLogFormatArg::Combined => AccessLogFormat::Combined,
    };
    let log = AccessLog::open(&AccessLogTarget::parse(target), format)
        .map_err(|e| anyhow!("--access-log {target}: {e}"))?;
    Ok(metrics.with_access_log(log))
}
