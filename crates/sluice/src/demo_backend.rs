//! `sluice demo-backend`: something for the bundled example to route to, so a newcomer sees a
//! request go through. Not for production.

use crate::cli::DemoBackendArgs;
use anyhow::Context;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::fmt::Write;
use std::sync::Arc;

pub fn run(args: DemoBackendArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("demo backend: cannot bind {}", args.listen))?;
        tracing::info!(name = %args.name, "demo backend listening on {}", args.listen);
        let name: Arc<str> = args.name.into();
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(conn) => conn,
                Err(err) => {
                    tracing::warn!(%err, "demo backend: accept failed");
                    continue;
                }
            };
            let name = name.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let body = describe(&name, peer, &req);
                    async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

fn describe(name: &str, peer: std::net::SocketAddr, req: &Request<Incoming>) -> String {
    let mut out = format!(
        "Hello from backend {name:?}\n\n{} {} {:?}\nfrom {peer}\n\n",
        req.method(),
        req.uri(),
        req.version()
    );
    for (header, value) in req.headers() {
        let _ = writeln!(
            out,
            "{header}: {}",
            String::from_utf8_lossy(value.as_bytes())
        );
    }
    out
}
