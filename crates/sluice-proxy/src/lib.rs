//! The data plane: HTTP and HTTPS listeners that route every request through the current
//! [`sluice_model::Snapshot`] to an upstream endpoint.
//!
//! The snapshot is swapped by the caller; the data plane only ever loads it (one atomic load per
//! request and per TLS handshake), so configuration and certificate changes apply to the next
//! request or handshake without touching listeners or open connections.
//!
//! Behaviour worth knowing (ingress-nginx's unless said otherwise):
//! - Routing: host from HTTP/2 `:authority` (or an absolute-form target), else `Host`, normalized
//!   by [`sluice_model::HostTable::normalize`]; path without query. Answers written by Sluice
//!   (404 no route, 503 no endpoints, 502 refused/reset, 504 timeout, https redirects) carry
//!   `Server: sluice` and one line of text saying why.
//! - https redirect (plain listener only): for TLS hosts with `ssl_redirect`, or any host with
//!   `force_ssl_redirect`; to `https://<host><path?query>` with the host as normalized (no port, so
//!   443); ACME http-01 challenge paths are never redirected. HSTS is added on the TLS listener for
//!   TLS hosts unless the upstream set its own.
//! - Upstream: HTTP/1.1 with pooled keep-alive connections per endpoint. Connect timeout from the
//!   route's policy; send timeout between chunks of the client's body while it is being sent;
//!   read timeout to the response head (after the body is sent) and between response chunks.
//!   A failed connect moves on to the next endpoint (up to 3 tries, never more than the backend
//!   has); an idempotent body-less request is replayed once on a fresh connection when a pooled
//!   connection idle for a second or more turns out to have been closed by the upstream.
//!   Sluice's own HTTP/1.1 exchange (`h1.rs`, `upstream.rs`): a connection is reused only after
//!   a response that ended cleanly and allows it (HTTP/1.1 without `Connection: close`, or
//!   HTTP/1.0 with `keep-alive`; never after a close-delimited body). Informational responses
//!   other than 101 are skipped; trailers of chunked responses are dropped; a response head that
//!   is not valid HTTP/1.1 (obs-fold included), has more than 100 fields or exceeds 417,792 bytes
//!   is a 502 saying so (and a warning in the log).
//! - Headers: hop-by-hop headers are dropped both ways; `X-Forwarded-For` and `X-Real-IP` are the
//!   peer address (client-supplied values are replaced, nothing in front is trusted yet);
//!   `X-Request-ID` is kept or generated; `Proxy` and `Expect` are dropped.
//! - Canaries: a route's canary rules are evaluated in order (header, cookie, query: first match
//!   wins; weights: one thread-local draw per request out of the route's total); the chosen
//!   canary's backend takes the request and its actions edit the upstream request and the
//!   response. Routes without canaries skip all of it.
//! - Upgrades (WebSocket) are tunnelled for HTTP/1.1 clients; `h2c` upgrades are not. Tunnels are
//!   not waited for at shutdown; HTTP requests are, up to `drain_timeout`.

mod body;
mod canary;
mod forward;
mod h1;
mod listener;
mod observe;
mod reply;
mod request_id;
mod router;
mod tls;
mod upstream;

use arc_swap::ArcSwap;
use sluice_metrics::Metrics;
use sluice_model::Snapshot;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Tuning of the listeners.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Longest wait for in-flight requests and connections once shutdown starts.
    pub drain_timeout: Duration,
    /// Longest a client may take to complete the TLS handshake.
    pub tls_handshake_timeout: Duration,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            drain_timeout: Duration::from_secs(30),
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Why the data plane could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(
        "could not generate the self-signed fallback certificate served for unknown TLS names: {0}"
    )]
    FakeCertificate(String),
    #[error("could not set up TLS (rustls with aws-lc-rs): {0}")]
    Tls(#[from] rustls::Error),
}

/// The proxy itself: cheap to clone, shares everything.
#[derive(Clone)]
pub struct DataPlane {
    inner: Arc<router::Router>,
    tls: Arc<tls::TlsConfigs>,
    config: Arc<ProxyConfig>,
}

impl DataPlane {
    /// `snapshot` is swapped by the caller on every config change; the data plane only loads it.
    pub fn new(
        snapshot: Arc<ArcSwap<Snapshot>>,
        config: ProxyConfig,
    ) -> Result<DataPlane, ProxyError> {
        DataPlane::build(snapshot, config, None)
    }

    /// Like [`DataPlane::new`], recording every request in `metrics` (and its access log).
    /// The caller must call [`Metrics::refresh`] after each snapshot swap.
    pub fn with_metrics(
        snapshot: Arc<ArcSwap<Snapshot>>,
        config: ProxyConfig,
        metrics: Arc<Metrics>,
    ) -> Result<DataPlane, ProxyError> {
        DataPlane::build(snapshot, config, Some(metrics))
    }

    fn build(
        snapshot: Arc<ArcSwap<Snapshot>>,
        config: ProxyConfig,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<DataPlane, ProxyError> {
        let tls = Arc::new(tls::TlsConfigs::new(snapshot.clone())?);
        Ok(DataPlane {
            inner: Arc::new(router::Router::new(snapshot, metrics)),
            tls,
            config: Arc::new(config),
        })
    }

    /// From now on `/status.tengine` answers 503, so L4 load balancers take this instance out
    /// of rotation while it still serves.
    pub fn start_draining(&self) {
        self.inner.start_draining();
    }

    /// Serve plain HTTP (HTTP/1.1 + h2c prior knowledge) until `shutdown` is cancelled, then stop
    /// accepting and wait for in-flight requests/connections (bounded by `drain_timeout`).
    pub async fn serve_http(&self, listener: TcpListener, shutdown: CancellationToken) {
        listener::serve(self.clone(), listener, None, shutdown).await
    }

    /// Serve TLS (ALPN h2 and http/1.1; TLS 1.2 and 1.3) until `shutdown` is cancelled, then
    /// drain like [`DataPlane::serve_http`].
    pub async fn serve_https(&self, listener: TcpListener, shutdown: CancellationToken) {
        listener::serve(self.clone(), listener, Some(self.tls.clone()), shutdown).await
    }
}
