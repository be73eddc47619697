//! Manual load target: `cargo run --release -p sluice-proxy --example proxy_bench -- UPSTREAM`
//! proxies every request on 127.0.0.1:18080 (plain) to UPSTREAM (`host:port`), then point `wrk`
//! or `h2load` at it.

use arc_swap::ArcSwap;
use sluice_model::{
    BackendKey, BackendSlot, Endpoints, HostTable, ObjectKind, ObjectRef, PathMatch, Route,
    RoutePolicy, RouteTarget, ServicePortRef, Snapshot, Upstream, VirtualHost,
};
use sluice_proxy::{DataPlane, ProxyConfig};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let upstream: std::net::SocketAddr = std::env::args()
        .nth(1)
        .ok_or("usage: proxy_bench UPSTREAM_ADDR")?
        .parse()?;
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
    let hosts = HostTable {
        default: Arc::new(VirtualHost {
            routes: vec![route],
            ..VirtualHost::default()
        }),
        ..HostTable::default()
    };
    let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot {
        hosts,
        ..Snapshot::default()
    }));
    let plane = DataPlane::new(snapshot, ProxyConfig::default())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:18080").await?;
    plane.serve_http(listener, CancellationToken::new()).await;
    Ok(())
}
