//! Measures what recording costs: `cargo run --release -p sluice-proxy --example
//! metrics_overhead -- UPSTREAM LISTEN [--metrics] [--access-log PATH]` proxies every request
//! on LISTEN to UPSTREAM (`host:port`) like `proxy_bench`, with request recording (and the
//! access log) on or off, so the same binary can be loaded with and without it.

use arc_swap::ArcSwap;
use sluice_metrics::{AccessLog, AccessLogFormat, AccessLogTarget, Metrics, MetricsOptions};
use sluice_model::{
    BackendKey, BackendSlot, Endpoints, HostTable, ObjectKind, ObjectRef, PathMatch, Route,
    RoutePolicy, RouteTarget, ServicePortRef, Snapshot, Upstream, VirtualHost,
};
use sluice_proxy::{DataPlane, ProxyConfig};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: metrics_overhead UPSTREAM LISTEN [--metrics] [--access-log PATH]";
    let upstream: std::net::SocketAddr = args.first().ok_or(usage)?.parse()?;
    let listen: std::net::SocketAddr = args.get(1).ok_or(usage)?.parse()?;
    let access_log = args
        .iter()
        .position(|a| a == "--access-log")
        .map(|i| args.get(i + 1).cloned().ok_or(usage))
        .transpose()?;
    let record = access_log.is_some() || args.iter().any(|a| a == "--metrics");

    let slot = Arc::new(BackendSlot::new(
        BackendKey {
            namespace: "default".into(),
            service: "bench".into(),
            port: ServicePortRef::Number(80),
        },
        Endpoints::Ready(vec![Upstream::Socket(upstream)]),
    ));
    let route = Route {
        path: PathMatch::prefix("/"),
        target: RouteTarget::Backend(slot),
        policy: Arc::new(RoutePolicy::default()),
        ingress: Arc::new(ObjectRef::new(ObjectKind::Ingress, "default", "bench")),
    };
    let mut hosts = HostTable::default();
    hosts.insert(Arc::new(VirtualHost {
        name: "bench.local".into(),
        routes: vec![route],
        ..VirtualHost::default()
    }));
    let snapshot = Arc::new(Snapshot {
        version: 1,
        hosts,
        ..Snapshot::default()
    });
    let live = Arc::new(ArcSwap::new(snapshot.clone()));
    let plane = if record {
        let mut metrics = Metrics::new(MetricsOptions::default());
        if let Some(path) = &access_log {
            metrics = metrics.with_access_log(AccessLog::open(
                &AccessLogTarget::parse(path),
                AccessLogFormat::Json,
            )?);
        }
        metrics.refresh(&snapshot);
        DataPlane::with_metrics(live, ProxyConfig::default(), Arc::new(metrics))?
    } else {
        DataPlane::new(live, ProxyConfig::default())?
    };
    eprintln!(
        "listening on {listen}, recording {}",
        if record { "on" } else { "off" }
    );
    let listener = tokio::net::TcpListener::bind(listen).await?;
    plane.serve_http(listener, CancellationToken::new()).await;
    Ok(())
}
