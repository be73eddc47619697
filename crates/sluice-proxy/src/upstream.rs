//! Upstream HTTP/1.1 connections: connect (with DNS for ExternalName), keep-alive pooling keyed by
//! endpoint, and the connect / send / read timeouts of a route's policy.
//!
//! A small pool of our own rather than hyper-util's legacy client: every timeout is per request
//! (from the route's policy), and each failure must map to the right status (502 vs 504), which
//! is simplest when this code owns the sockets.

use crate::body::{RequestBody, SendProgress};
use http_body::Body;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use sluice_model::{RoutePolicy, Upstream};
use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Idle connections kept per endpoint; more are closed when released.
const MAX_IDLE_PER_UPSTREAM: usize = 256;
/// A request without body and with an idempotent method is kept for a second attempt when it goes
/// out on a connection idle at least this long: the upstream may have closed that connection
/// just as the request was written (its own idle timeout), which is not the endpoint failing.
/// Connections reused sooner are not in that race, so busy paths never pay for the copy.
const REPLAY_AFTER_IDLE: Duration = Duration::from_secs(1);

/// An idle connection older than this is not reused (servers commonly close after 60 s or less;
/// using one they are about to close costs a failed attempt).
const IDLE_TIMEOUT: Duration = Duration::from_secs(50);

/// Why the upstream gave no response.
#[derive(Debug)]
pub(crate) enum UpstreamError {
    /// Refused, reset, unreachable, or the name did not resolve: 502.
    Connect(io::Error),
    /// 504.
    ConnectTimeout(Duration),
    /// The connection failed while sending the request or reading the response head: 502.
    Exchange(hyper::Error),
    /// The client's request body stalled on its way to the upstream: 504.
    SendTimeout(Duration),
    /// The upstream did not answer in time: 504.
    ReadTimeout(Duration),
}

impl UpstreamError {
    pub(crate) fn is_timeout(&self) -> bool {
        match self {
            UpstreamError::Connect(e) => e.kind() == io::ErrorKind::TimedOut,
            UpstreamError::Exchange(e) => e.is_timeout(),
            UpstreamError::ConnectTimeout(_)
            | UpstreamError::SendTimeout(_)
            | UpstreamError::ReadTimeout(_) => true,
        }
    }
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::Connect(e) => write!(f, "could not connect: {e}"),
            UpstreamError::ConnectTimeout(t) => {
                write!(f, "no connection within {t:?} (connect timeout)")
            }
            UpstreamError::Exchange(e) => write!(f, "connection failed before a response: {e}"),
            UpstreamError::SendTimeout(t) => {
                write!(f, "request body could not be sent for {t:?} (send timeout)")
            }
            UpstreamError::ReadTimeout(t) => write!(f, "no response within {t:?} (read timeout)"),
        }
    }
}

struct IdleConnection {
    sender: http1::SendRequest<RequestBody>,
    since: Instant,
}

/// Every this many releases the whole pool is swept, so endpoints that went away (pods come and
/// go) and connections nobody reused do not accumulate.
const SWEEP_EVERY: u32 = 1024;

/// Shards of the pool; threads beyond this many share shards (still correct, just contended).
const SHARDS: usize = 64;

/// Idle keep-alive connections by endpoint, one shard per thread: a worker finds the connections
/// its own runtime drives (no cross-thread wake-ups per request), and threads never wait for each
/// other's lock.
pub(crate) struct Pool {
    shards: Box<[Mutex<IdlePool>]>,
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

#[derive(Default)]
struct IdlePool {
    by_upstream: HashMap<Upstream, Vec<IdleConnection>, BuildHasherDefault<EndpointHasher>>,
    releases_since_sweep: u32,
}

/// The pool's keys are endpoint addresses from the cluster's own configuration, never chosen by
/// clients, so they need no flooding-resistant (keyed) hash. The standard SipHash cost ~290
/// instructions per lookup, two lookups per proxied request (callgrind); this multiply-rotate
/// hash (FxHash's) costs a few dozen.
#[derive(Default)]
struct EndpointHasher(u64);

impl EndpointHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for EndpointHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let mut tail = [0u8; 8];
        tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.add(u64::from_le_bytes(tail));
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl IdleConnection {
    fn reusable(&self, now: Instant) -> bool {
        !self.sender.is_closed() && now.saturating_duration_since(self.since) < IDLE_TIMEOUT
    }
}

impl IdlePool {
    fn sweep(&mut self, now: Instant) {
        self.by_upstream.retain(|_, list| {
            list.retain(|c| c.reusable(now));
            !list.is_empty()
        });
        self.releases_since_sweep = 0;
    }
}

/// A connection in use by one request. [`PooledConnection::release`] hands it back once the
/// response is complete; dropping it instead closes it.
pub(crate) struct PooledConnection {
    pool: Arc<Pool>,
    upstream: Upstream,
    sender: http1::SendRequest<RequestBody>,
}

impl PooledConnection {
    pub(crate) fn release(self) {
        if self.sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.pool.shard();
        idle.releases_since_sweep += 1;
        if idle.releases_since_sweep >= SWEEP_EVERY {
            idle.sweep(now);
        }
        let list = idle.by_upstream.entry(self.upstream).or_default();
        if list.len() < MAX_IDLE_PER_UPSTREAM {
            list.push(IdleConnection {
                sender: self.sender,
                since: now,
            });
        }
    }
}

impl Pool {
    /// The calling thread's shard.
    fn shard(&self) -> std::sync::MutexGuard<'_, IdlePool> {
        static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static THREAD: usize = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
        }
        let index = THREAD.with(|t| *t) % self.shards.len();
        self.shards[index].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `request` to `upstream` and waits for the response head, within the policy's
    /// timeouts. `progress` tracks the request body, when there is one.
    ///
    /// When no connection can be opened, nothing has been sent, so the request moves on to the
    /// endpoint `next_upstream` offers, if any (ingress-nginx's `proxy_next_upstream error
    /// timeout`, limited to connection failures so a request is never sent twice). `upstream`
    /// ends up naming the endpoint that answered or failed last.
    pub(crate) async fn send(
        self: &Arc<Self>,
        upstream: &mut Upstream,
        mut next_upstream: impl FnMut() -> Option<Upstream>,
        mut request: Request<RequestBody>,
        policy: &RoutePolicy,
        progress: Option<&SendProgress>,
    ) -> Result<(Response<Incoming>, PooledConnection), UpstreamError> {
        let mut replayed = false;
        loop {
            let (mut conn, reused) = match self.checkout(upstream).await {
                Some((conn, idle_for)) => (conn, Some(idle_for)),
                None => match self.connect(upstream, policy.connect_timeout).await {
                    Ok(conn) => (conn, None),
                    Err(e) => match next_upstream() {
                        Some(next) => {
                            tracing::debug!(%upstream, error = %e, "trying the next endpoint");
                            *upstream = next;
                            continue;
                        }
                        None => return Err(e),
                    },
                },
            };
            let replay = match reused {
                Some(idle_for) if idle_for >= REPLAY_AFTER_IDLE && !replayed => {
                    replayable(&request)
                }
                _ => None,
            };
            let exchange = conn.sender.try_send_request(request);
            match wait_for_head(exchange, policy, progress).await? {
                Ok(response) => return Ok((response, conn)),
                Err(mut failed) => match (failed.take_message(), replay) {
                    // The pooled connection was closed by the upstream before our request went
                    // out: nothing was sent, so another connection may carry it.
                    (Some(unsent), _) if reused.is_some() => request = unsent,
                    (_, Some(copy)) => {
                        tracing::debug!(%upstream, error = %failed.error(), "replaying an idempotent request on a new connection");
                        request = copy;
                        replayed = true;
                        self.forget(upstream);
                    }
                    _ => return Err(UpstreamError::Exchange(failed.into_error())),
                },
            }
        }
    }

    /// Drops the idle connections of `upstream`: after one of them failed, the others (opened
    /// around the same time) are suspect too.
    fn forget(&self, upstream: &Upstream) {
        self.shard().by_upstream.remove(upstream);
    }

    /// An idle connection to `upstream` and how long it was idle.
    async fn checkout(
        self: &Arc<Self>,
        upstream: &Upstream,
    ) -> Option<(PooledConnection, Duration)> {
        loop {
            let (idle, now) = {
                let mut idle = self.shard();
                let list = idle.by_upstream.get_mut(upstream)?;
                let now = Instant::now();
                loop {
                    // Most recently used first: it is the least likely to have been closed.
                    let candidate = list.pop()?;
                    if candidate.reusable(now) {
                        break (candidate, now);
                    }
                }
            };
            let idle_for = now.saturating_duration_since(idle.since);
            let mut sender = idle.sender;
            // Resolves at once for an idle connection; fails if the upstream closed it.
            if sender.ready().await.is_ok() {
                let conn = PooledConnection {
                    pool: self.clone(),
                    upstream: upstream.clone(),
                    sender,
                };
                return Some((conn, idle_for));
            }
        }
    }

    async fn connect(
        self: &Arc<Self>,
        upstream: &Upstream,
        timeout: Duration,
    ) -> Result<PooledConnection, UpstreamError> {
        let stream = tokio::time::timeout(timeout, open_stream(upstream))
            .await
            .map_err(|_| UpstreamError::ConnectTimeout(timeout))?
            .map_err(UpstreamError::Connect)?;
        // Small writes (headers, websocket frames) must not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(UpstreamError::Exchange)?;
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(PooledConnection {
            pool: self.clone(),
            upstream: upstream.clone(),
            sender,
        })
    }
}

/// A copy of a request that can safely be sent again: idempotent method, no body.
fn replayable(request: &Request<RequestBody>) -> Option<Request<RequestBody>> {
    if !request.method().is_idempotent() || !request.body().is_end_stream() {
        return None;
    }
    let mut copy = Request::new(RequestBody::empty());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    Some(copy)
}

async fn open_stream(upstream: &Upstream) -> io::Result<TcpStream> {
    match upstream {
        Upstream::Socket(addr) => TcpStream::connect(addr).await,
        Upstream::Dns { host, port } => {
            let addrs = tokio::net::lookup_host((host.as_str(), *port))
                .await
                .map_err(|e| io::Error::new(e.kind(), format!("resolving {host}: {e}")))?;
            let mut last_error = None;
            for addr in addrs {
                match TcpStream::connect(addr).await {
                    Ok(stream) => return Ok(stream),
                    Err(e) => last_error = Some(e),
                }
            }
            Err(last_error.unwrap_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{host} resolved to no address"),
                )
            }))
        }
    }
}

/// Waits for the response head. While the request body is still being sent the send timeout
/// applies between its chunks; after that the read timeout runs from its last chunk (or from
/// sending a request without body).
async fn wait_for_head<F: Future>(
    exchange: F,
    policy: &RoutePolicy,
    progress: Option<&SendProgress>,
) -> Result<F::Output, UpstreamError> {
    let sent_at = Instant::now();
    let deadline = || match progress {
        Some(p) if !p.is_done() => (
            p.last_activity().max(sent_at) + policy.send_timeout,
            UpstreamError::SendTimeout(policy.send_timeout),
        ),
        Some(p) => (
            p.last_activity().max(sent_at) + policy.read_timeout,
            UpstreamError::ReadTimeout(policy.read_timeout),
        ),
        None => (
            sent_at + policy.read_timeout,
            UpstreamError::ReadTimeout(policy.read_timeout),
        ),
    };
    let mut exchange = pin!(exchange);
    loop {
        let (at, _) = deadline();
        if let Ok(out) = tokio::time::timeout_at(at, &mut exchange).await {
            return Ok(out);
        }
        // The body may have made progress meanwhile, which moves the deadline.
        let (at, expired) = deadline();
        if at <= Instant::now() {
            return Err(expired);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection over an in-memory pipe; `open` keeps its connection task running.
    async fn idle_connection(open: bool) -> IdleConnection {
        let (client, _server) = tokio::io::duplex(1024);
        let (sender, connection) = http1::handshake::<_, RequestBody>(TokioIo::new(client))
            .await
            .unwrap();
        let task = tokio::spawn(async move {
            let _server = _server;
            let _ = connection.await;
        });
        if !open {
            task.abort();
            let _ = task.await;
        }
        IdleConnection {
            sender,
            since: Instant::now(),
        }
    }

    #[tokio::test]
    async fn sweep_drops_closed_connections_and_empty_endpoints() {
        let gone: Upstream = Upstream::Socket("10.0.0.1:80".parse().unwrap());
        let alive: Upstream = Upstream::Socket("10.0.0.2:80".parse().unwrap());
        let mut pool = IdlePool::default();
        pool.by_upstream
            .insert(gone.clone(), vec![idle_connection(false).await]);
        pool.by_upstream.insert(
            alive.clone(),
            vec![idle_connection(true).await, idle_connection(false).await],
        );
        pool.sweep(Instant::now());
        assert!(!pool.by_upstream.contains_key(&gone));
        assert_eq!(pool.by_upstream[&alive].len(), 1);
        pool.sweep(Instant::now() + IDLE_TIMEOUT);
        assert!(
            pool.by_upstream.is_empty(),
            "expired connections are dropped"
        );
    }
}
