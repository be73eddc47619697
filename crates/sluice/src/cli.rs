//! Command-line interface. Every `serve` flag can also be set by `SLUICE_<FLAG_NAME>`.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Sluice: a Kubernetes Ingress gateway that applies every change live, without reloads.
///
/// It reads Ingress objects (from a directory of manifests, or from the Kubernetes API) and is
/// itself the reverse proxy that serves them, with ingress-nginx's semantics and annotations.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "SLUICE_LOG_FORMAT")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    ///
    /// With --manifests DIR it serves the Kubernetes manifests in DIR (Ingress, IngressClass,
    /// Service, EndpointSlice, Endpoints, Secret, ConfigMap) and applies every change to DIR live.
    Serve(Box<ServeArgs>),
    /// Validate a manifest directory like `nginx -t`: print every problem with file:line, object
    /// and reason; exit 1 if any object or field would be rejected.
    Check(CheckArgs),
    /// Print the effective route table of a manifest directory, in match order per host.
    Routes(CheckArgs),
    /// Print the Ingress and Secret checksums (Tengine-Ingress IngressCheckSum/SecretCheckSum)
    /// of a manifest directory with their ID lists; exit 1 if a checksum object there differs.
    Checksum(CheckArgs),
    /// A small HTTP backend for trying Sluice out: answers every request with its name and the
    /// request it saw.
    DemoBackend(DemoBackendArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Serve the Kubernetes manifests in this directory (recursively; *.yaml, *.yml, *.json).
    #[arg(long, env = "SLUICE_MANIFESTS", value_name = "DIR")]
    pub manifests: Option<PathBuf>,

    /// Plain HTTP listener (repeatable).
    #[arg(
        long,
        env = "SLUICE_HTTP_LISTEN",
        default_value = "0.0.0.0:80",
        value_delimiter = ','
    )]
    pub http_listen: Vec<SocketAddr>,

    /// TLS listener (repeatable).
    #[arg(
        long,
        env = "SLUICE_HTTPS_LISTEN",
        default_value = "0.0.0.0:443",
        value_delimiter = ','
    )]
    pub https_listen: Vec<SocketAddr>,

    /// Admin API, health and metrics. Keep it off public addresses.
    #[arg(long, env = "SLUICE_ADMIN_LISTEN", default_value = "127.0.0.1:10254")]
    pub admin_listen: SocketAddr,

    #[command(flatten)]
    pub selection: SelectionArgs,

    #[command(flatten)]
    pub kubernetes: crate::kubernetes::KubernetesArgs,

    /// Keep the Ingress and Secret versions this instance serves in DIR, so that after a
    /// restart it keeps serving them while a gray rollout or a failing checksum gate holds newer
    /// ones. The file holds TLS private keys: use a directory only this process can read.
    #[arg(long, env = "SLUICE_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Data-plane threads (default: number of CPUs).
    #[arg(long, env = "SLUICE_WORKERS")]
    pub workers: Option<usize>,

    /// After SIGTERM, keep serving this long (while /healthz answers 500) so load balancers
    /// stop sending new traffic, then stop accepting.
    #[arg(long, env = "SLUICE_DRAIN_DELAY", default_value = "5s", value_parser = humantime::parse_duration)]
    pub drain_delay: Duration,

    /// After the drain delay, wait at most this long for in-flight requests to finish.
    #[arg(long, env = "SLUICE_DRAIN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,

    /// Access log: `-` for stdout, or a file to append to. One line per request, written by a
    /// thread of its own; when it cannot keep up, lines are dropped (and counted in
    /// `sluice_access_log_dropped_total`) rather than slowing traffic.
    #[arg(long, env = "SLUICE_ACCESS_LOG", value_name = "-|PATH")]
    pub access_log: Option<String>,

    /// Access log line format: `json` (one object per line) or `combined` (nginx-like text).
    #[arg(long, env = "SLUICE_ACCESS_LOG_FORMAT", value_enum, default_value_t = AccessLogFormatArg::Json)]
    pub access_log_format: AccessLogFormatArg,

    /// Also expose another controller's metric names and labels on /metrics, so existing
    /// dashboards keep working: `ingress-nginx`.
    #[arg(
        long,
        env = "SLUICE_METRICS_COMPAT",
        value_enum,
        value_name = "CONTROLLER"
    )]
    pub metrics_compat: Option<MetricsCompat>,
}

/// Which Ingresses are ours, and which cluster objects configure us (shared by serve and check).
#[derive(Debug, Clone, Args)]
pub struct SelectionArgs {
    /// IngressClass name handled.
    #[arg(long, env = "SLUICE_INGRESS_CLASS", default_value = "sluice")]
    pub ingress_class: String,

    /// IngressClass `spec.controller` value handled.
    #[arg(
        long,
        env = "SLUICE_CONTROLLER_CLASS",
        default_value = "sluice.dev/ingress-controller"
    )]
    pub controller_class: String,

    /// Also handle Ingresses that name no class.
    #[arg(long, env = "SLUICE_WATCH_INGRESS_WITHOUT_CLASS")]
    pub watch_ingress_without_class: bool,

    /// `namespace/name` of the TLS Secret served when no host matches the SNI (else a generated
    /// self-signed certificate).
    #[arg(
        long,
        env = "SLUICE_DEFAULT_SSL_CERTIFICATE",
        value_name = "NAMESPACE/NAME"
    )]
    pub default_ssl_certificate: Option<String>,

    /// `namespace/name` of the global options ConfigMap (ingress-nginx's controller ConfigMap
    /// keys).
    #[arg(long, env = "SLUICE_CONFIGMAP", value_name = "NAMESPACE/NAME")]
    pub configmap: Option<String>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Manifest directory.
    pub dir: PathBuf,

    #[command(flatten)]
    pub selection: SelectionArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AccessLogFormatArg {
    Json,
    Combined,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MetricsCompat {
    /// `nginx_ingress_controller_*` as ingress-nginx serves them.
    IngressNginx,
}

#[derive(Debug, Args)]
pub struct DemoBackendArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    pub listen: SocketAddr,

    /// Name this backend reports in its answers.
    #[arg(long, default_value = "demo")]
    pub name: String,
}
