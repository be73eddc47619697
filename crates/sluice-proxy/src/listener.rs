//! Accept loops: plain and TLS listeners, HTTP/1.1 and HTTP/2 on each, and the graceful drain.

use crate::DataPlane;
use crate::forward::ConnectionInfo;
use crate::tls::TlsConfigs;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Pause after an accept error that is not about one connection (e.g. out of file descriptors),
/// so the loop does not spin while the condition lasts.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

pub(crate) async fn serve(
    plane: DataPlane,
    listener: TcpListener,
    tls: Option<Arc<TlsConfigs>>,
    shutdown: CancellationToken,
) {
    let local_port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();

    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                tracing::warn!(port = local_port, error = %e, "accepting a connection failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(ACCEPT_ERROR_BACKOFF) => continue,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(
            plane.clone(),
            builder.clone(),
            tls.clone(),
            stream,
            peer,
            local_port,
            graceful.watcher(),
        ));
    }
    drop(listener);

    let open = graceful.count();
    tracing::info!(
        port = local_port,
        open,
        "stopped accepting; draining open connections"
    );
    if tokio::time::timeout(plane.config.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            port = local_port,
            timeout = ?plane.config.drain_timeout,
            "connections still open after the drain timeout; leaving them"
        );
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

async fn serve_connection(
    plane: DataPlane,
    builder: Arc<auto::Builder<TokioExecutor>>,
    tls: Option<Arc<TlsConfigs>>,
    stream: TcpStream,
    peer: SocketAddr,
    local_port: u16,
    watcher: Watcher,
) {
    let conn = ConnectionInfo::new(peer, local_port, tls.is_some());
    let router = plane.inner.clone();
    let service = move |conn: ConnectionInfo| {
        let conn = Arc::new(conn);
        service_fn(move |request| {
            let router = router.clone();
            let conn = conn.clone();
            async move { Ok::<_, Infallible>(router.handle(request, &conn).await) }
        })
    };
    let result = match tls {
        None => {
            let connection =
                builder.serve_connection_with_upgrades(TokioIo::new(stream), service(conn));
            watcher.watch(connection).await
        }
        Some(acceptor) => {
            let timeout = plane.config.tls_handshake_timeout;
            let stream = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(client = %peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(client = %peer, ?timeout, "TLS handshake timed out");
                    return;
                }
            };
            let conn = conn.with_tls_session(stream.get_ref().1);
            let connection =
                builder.serve_connection_with_upgrades(TokioIo::new(stream), service(conn));
            watcher.watch(connection).await
        }
    };
    if let Err(e) = result {
        tracing::debug!(client = %peer, error = %e, "client connection ended with an error");
    }
}
