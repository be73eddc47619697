//! Upstream HTTP/1.1 connections: connect (with DNS for ExternalName), keep-alive pooling keyed by
//! endpoint, the request/response exchange, and the connect / send / read timeouts of a route's
//! policy.
//!
//! A small pool and exchange of our own rather than hyper's client: every timeout is per request
//! (from the route's policy), and each failure must map to the right status (502 vs 504), which
//! is simplest when this code owns the sockets. The exchange runs inline in the request's task:
//! no task per connection, no channel between the request and its connection (hyper's client
//! spent about half of the proxy's user-space instructions per request on those and on its
//! codec, measured with callgrind).

use crate::body::{RequestBody, SendProgress, UpstreamBody};
use crate::forward::ForwardedFields;
use crate::h1::{self, BodyFraming, HeadError, RequestFraming, ResponseHead};
use bytes::{Buf, Bytes, BytesMut};
use http::{Method, Request, Response};
use http_body::Body;
use sluice_model::{RoutePolicy, Upstream};
use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, IoSlice};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Idle connections kept per endpoint; more are closed when released.
const MAX_IDLE_PER_UPSTREAM: usize = 256;
/// A request without body and with an idempotent method is sent again on a new connection when
/// it went out on a connection idle at least this long and nothing came back: the upstream may
/// have closed that connection just as the request was written (its own idle timeout), which is
/// not the endpoint failing. Connections reused sooner are not in that race.
const REPLAY_AFTER_IDLE: Duration = Duration::from_secs(1);

/// An idle connection older than this is not reused (servers commonly close after 60 s or less;
/// using one they are about to close costs a failed attempt).
const IDLE_TIMEOUT: Duration = Duration::from_secs(50);

/// First read size of a new connection; it doubles each time a read fills it (so a typical
/// response arrives in one read), up to [`MAX_READ_SIZE`].
const FIRST_READ_SIZE: usize = 8 * 1024;
const MAX_READ_SIZE: usize = 64 * 1024;

/// Request body bytes gathered into one write before it goes out.
const MAX_GATHERED: usize = 16 * 1024;

/// Why the upstream gave no response.
#[derive(Debug)]
pub(crate) enum UpstreamError {
    /// Refused, reset, unreachable, or the name did not resolve: 502.
    Connect(io::Error),
    /// 504.
    ConnectTimeout(Duration),
    /// The connection failed while sending the request or reading the response head, or the
    /// head was not valid: 502.
    Exchange(ExchangeError),
    /// The client's request body stalled on its way to the upstream: 504.
    SendTimeout(Duration),
    /// The upstream did not answer in time: 504.
    ReadTimeout(Duration),
}

impl UpstreamError {
    pub(crate) fn is_timeout(&self) -> bool {
        match self {
            UpstreamError::Connect(e) | UpstreamError::Exchange(ExchangeError::Io(e)) => {
                e.kind() == io::ErrorKind::TimedOut
            }
            UpstreamError::Exchange(_) => false,
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
            UpstreamError::Exchange(e) => write!(f, "{e}"),
            UpstreamError::SendTimeout(t) => {
                write!(f, "request body could not be sent for {t:?} (send timeout)")
            }
            UpstreamError::ReadTimeout(t) => write!(f, "no response within {t:?} (read timeout)"),
        }
    }
}

/// How an exchange failed before a complete response head.
#[derive(Debug)]
pub(crate) enum ExchangeError {
    Io(io::Error),
    /// The upstream closed the connection after `received` bytes of an incomplete head.
    Closed {
        received: usize,
    },
    InvalidHead(HeadError),
    /// Reading the client's request body failed.
    RequestBody(hyper::Error),
    /// The client's request body was longer or shorter than its Content-Length.
    RequestBodyLength,
}

impl std::fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExchangeError::Io(e) => write!(f, "connection failed before a response: {e}"),
            ExchangeError::Closed { received: 0 } => {
                f.write_str("the upstream closed the connection without a response")
            }
            ExchangeError::Closed { received } => write!(
                f,
                "the upstream closed the connection after {received} bytes of an incomplete response head"
            ),
            ExchangeError::InvalidHead(e) => write!(
                f,
                "invalid HTTP/1.1 response head: {e}; the upstream application must be fixed"
            ),
            ExchangeError::RequestBody(e) => write!(f, "the client's request body failed: {e}"),
            ExchangeError::RequestBodyLength => {
                f.write_str("the client's request body did not match its Content-Length")
            }
        }
    }
}

/// One upstream connection: the socket and what was read from it but not consumed yet.
pub(crate) struct Connection {
    stream: TcpStream,
    buf: BytesMut,
    read_size: usize,
    upstream: Upstream,
}

impl Connection {
    fn new(stream: TcpStream, upstream: Upstream) -> Self {
        Connection {
            stream,
            buf: BytesMut::new(),
            read_size: FIRST_READ_SIZE,
            upstream,
        }
    }

    /// Reads more into the buffer; `Ok(0)` is the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        // Reuses the buffer in place once the frames handed out of it are dropped (the usual
        // case: they are written to the client before this connection reads again).
        self.buf.reserve(self.read_size);
        let room = self.buf.capacity() - self.buf.len();
        let n = ready!(pin!(self.stream.read_buf(&mut self.buf)).poll(cx))?;
        if n == room && self.read_size < MAX_READ_SIZE {
            self.read_size *= 2;
        }
        Poll::Ready(Ok(n))
    }

    /// False when the upstream closed the connection (or sent something unasked) while it was
    /// idle. Costs no system call unless the socket became readable.
    fn is_open(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

struct IdleConnection {
    conn: Box<Connection>,
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
        now.saturating_duration_since(self.since) < IDLE_TIMEOUT && self.conn.is_open()
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
    conn: Box<Connection>,
}

impl PooledConnection {
    /// Back to the idle pool: only for a connection whose last response ended cleanly, whose
    /// request went out whole, and which the upstream keeps open.
    pub(crate) fn release(self) {
        if !self.conn.buf.is_empty() {
            // Bytes after the end of the response: the upstream is confused; start afresh.
            return;
        }
        let now = Instant::now();
        let mut idle = self.pool.shard();
        idle.releases_since_sweep += 1;
        if idle.releases_since_sweep >= SWEEP_EVERY {
            idle.sweep(now);
        }
        let list = idle
            .by_upstream
            .entry(self.conn.upstream.clone())
            .or_default();
        if list.len() < MAX_IDLE_PER_UPSTREAM {
            list.push(IdleConnection {
                conn: self.conn,
                since: now,
            });
        }
    }

    pub(crate) fn buffer(&mut self) -> &mut BytesMut {
        &mut self.conn.buf
    }

    pub(crate) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.conn.poll_fill(cx)
    }

    pub(crate) fn stream(&mut self) -> &mut TcpStream {
        &mut self.conn.stream
    }

    /// The socket of a connection that switched protocols, and the bytes of the new protocol
    /// that arrived with the 101 head.
    pub(crate) fn into_upgraded(self) -> (TcpStream, BytesMut) {
        let conn = *self.conn;
        (conn.stream, conn.buf)
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
    /// timeouts. `progress` tracks the request body, when there is one. The response's body
    /// reads the rest from the connection (read timeout between chunks) and hands the connection
    /// back to the pool once it ended cleanly.
    ///
    /// When no connection can be opened, nothing has been sent, so the request moves on to the
    /// endpoint `next_upstream` offers, if any (ingress-nginx's `proxy_next_upstream error
    /// timeout`, limited to connection failures so a request is never sent twice). `upstream`
    /// ends up naming the endpoint that answered or failed last.
    pub(crate) async fn send(
        self: &Arc<Self>,
        upstream: &mut Upstream,
        mut next_upstream: impl FnMut() -> Option<Upstream>,
        request: Request<RequestBody>,
        forwarded: Option<&ForwardedFields<'_>>,
        policy: &RoutePolicy,
        progress: Option<&SendProgress>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let (parts, body) = request.into_parts();
        let mut outgoing = Outgoing::new(&parts, body, forwarded);
        let replayable = parts.method.is_idempotent() && outgoing.body.is_none();
        let mut replayed = false;
        loop {
            let (mut conn, reused) = match self.checkout(upstream) {
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
            let exchange = exchange(&mut conn.conn, &mut outgoing, &parts.method);
            let failure = match wait_for_head(exchange, policy, progress).await? {
                Ok(head) => return Ok(respond(conn, head, outgoing, policy)),
                Err(failure) => failure,
            };
            let replay = !replayed
                && replayable
                && failure.received == 0
                && reused.is_some_and(|idle_for| idle_for >= REPLAY_AFTER_IDLE);
            if reused.is_some() && !outgoing.sent_any && outgoing.rewind() {
                // The pooled connection was closed before any of the request went out: another
                // connection may carry it.
                continue;
            }
            if replay && outgoing.rewind() {
                tracing::debug!(%upstream, error = %failure.error, "replaying an idempotent request on a new connection");
                replayed = true;
                self.forget(upstream);
                continue;
            }
            if matches!(failure.error, ExchangeError::InvalidHead(_)) {
                tracing::warn!(%upstream, error = %failure.error, "upstream sent an invalid response; answering 502");
            }
            return Err(UpstreamError::Exchange(failure.error));
        }
    }

    /// Drops the idle connections of `upstream`: after one of them failed, the others (opened
    /// around the same time) are suspect too.
    fn forget(&self, upstream: &Upstream) {
        self.shard().by_upstream.remove(upstream);
    }

    /// An idle connection to `upstream` and how long it was idle.
    fn checkout(self: &Arc<Self>, upstream: &Upstream) -> Option<(PooledConnection, Duration)> {
        loop {
            let (idle, now) = {
                let mut idle = self.shard();
                let list = idle.by_upstream.get_mut(upstream)?;
                let now = Instant::now();
                // Most recently used first: it is the least likely to have been closed.
                (list.pop()?, now)
            };
            if idle.reusable(now) {
                let idle_for = now.saturating_duration_since(idle.since);
                let conn = PooledConnection {
                    pool: self.clone(),
                    conn: idle.conn,
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
        Ok(PooledConnection {
            pool: self.clone(),
            conn: Box::new(Connection::new(stream, upstream.clone())),
        })
    }
}

/// The response whose head arrived: its body reads on from the connection.
fn respond(
    conn: PooledConnection,
    head: ResponseHead,
    outgoing: Outgoing,
    policy: &RoutePolicy,
) -> Response<UpstreamBody> {
    let ResponseHead {
        parts,
        framing,
        keep_alive,
    } = head;
    // A connection whose request did not go out whole carries no other request.
    let reusable = keep_alive && outgoing.is_done();
    let sending = (!outgoing.is_done() && !outgoing.failed).then(|| Box::new(outgoing));
    let body = match framing {
        BodyFraming::Empty | BodyFraming::Length(0) => {
            if reusable {
                conn.release();
            }
            UpstreamBody::empty()
        }
        BodyFraming::Upgrade => UpstreamBody::upgraded(conn),
        framing => UpstreamBody::new(conn, framing, reusable, sending, policy.read_timeout),
    };
    Response::from_parts(parts, body)
}

/// Why an exchange produced no response head, and whether anything at all came back.
struct Failure {
    error: ExchangeError,
    received: usize,
}

/// Writes the request (the body streams while the response is awaited: an upstream may answer
/// before reading all of it) and reads the response head, skipping informational ones.
async fn exchange(
    conn: &mut Connection,
    outgoing: &mut Outgoing,
    method: &Method,
) -> Result<ResponseHead, Failure> {
    let mut received = 0usize;
    let mut write_error = None;
    poll_fn(|cx| {
        if !outgoing.is_done() && !outgoing.failed {
            match outgoing.poll_send(&mut conn.stream, cx) {
                Poll::Ready(Ok(())) | Poll::Pending => {}
                // The upstream may have answered already (and closed): read what it sent.
                Poll::Ready(Err(SendError::Io(e))) => write_error = Some(e),
                Poll::Ready(Err(SendError::Body(e))) => {
                    return Poll::Ready(Err(Failure {
                        error: ExchangeError::RequestBody(e),
                        received,
                    }));
                }
                Poll::Ready(Err(SendError::Length)) => {
                    return Poll::Ready(Err(Failure {
                        error: ExchangeError::RequestBodyLength,
                        received,
                    }));
                }
            }
        }
        loop {
            if !conn.buf.is_empty() {
                match h1::parse_response_head(&mut conn.buf, method) {
                    Ok(Some(head)) if head.is_informational() => continue,
                    Ok(Some(head)) => return Poll::Ready(Ok(head)),
                    Ok(None) => {}
                    Err(e) => {
                        return Poll::Ready(Err(Failure {
                            error: ExchangeError::InvalidHead(e),
                            received,
                        }));
                    }
                }
            }
            let error = match ready!(conn.poll_fill(cx)) {
                Ok(0) => match write_error.take() {
                    Some(e) => ExchangeError::Io(e),
                    None => ExchangeError::Closed { received },
                },
                Ok(n) => {
                    received += n;
                    continue;
                }
                Err(e) => ExchangeError::Io(e),
            };
            return Poll::Ready(Err(Failure { error, received }));
        }
    })
    .await
}

/// Why the request could not be written.
pub(crate) enum SendError {
    Io(io::Error),
    Body(hyper::Error),
    Length,
}

/// The request on its way out: the head, then the body as the client sends it, framed for this
/// hop. Small pieces are gathered so the head and a body that is already there leave in one
/// write.
pub(crate) struct Outgoing {
    /// The head, then chunk-size lines; `written` of them are out.
    bytes: Vec<u8>,
    written: usize,
    /// A body chunk and what must follow it (the chunk's CRLF, maybe the last chunk).
    data: Bytes,
    tail: &'static [u8],
    /// `None` once the body has been read to its end (or for a request without one).
    body: Option<RequestBody>,
    framing: RequestFraming,
    length_left: u64,
    /// A body frame was read: the request can no longer be sent again.
    body_started: bool,
    /// Some bytes were accepted by the socket.
    sent_any: bool,
    failed: bool,
}

impl Outgoing {
    /// `forwarded`: the fields this hop adds that are not in `parts.headers`.
    fn new(
        parts: &http::request::Parts,
        body: RequestBody,
        forwarded: Option<&ForwardedFields<'_>>,
    ) -> Self {
        let body_length = (!body.is_end_stream()).then(|| body.size_hint().exact());
        let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let mut bytes = Vec::with_capacity(1024);
        let framing = h1::encode_request_head(
            &parts.method,
            target,
            &parts.headers,
            forwarded
                .into_iter()
                .flat_map(|forwarded| forwarded.fields()),
            body_length,
            &mut bytes,
        );
        let length_left = match framing {
            RequestFraming::Length(n) => n,
            _ => 0,
        };
        Outgoing {
            bytes,
            written: 0,
            data: Bytes::new(),
            tail: b"",
            body: (framing != RequestFraming::Empty && body_length.is_some()).then_some(body),
            framing,
            length_left,
            body_started: false,
            sent_any: false,
            failed: false,
        }
    }

    fn is_done(&self) -> bool {
        self.body.is_none() && !self.has_queued()
    }

    fn has_queued(&self) -> bool {
        self.written < self.bytes.len() || !self.data.is_empty() || !self.tail.is_empty()
    }

    /// Starts over for another connection; false once part of the body was consumed.
    fn rewind(&mut self) -> bool {
        if self.body_started {
            return false;
        }
        self.written = 0;
        self.sent_any = false;
        self.failed = false;
        true
    }

    pub(crate) fn poll_send(
        &mut self,
        stream: &mut TcpStream,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), SendError>> {
        let result = self.poll_send_inner(stream, cx);
        if let Poll::Ready(Err(_)) = result {
            self.failed = true;
        }
        result
    }

    fn poll_send_inner(
        &mut self,
        stream: &mut TcpStream,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), SendError>> {
        loop {
            let mut body_waits = false;
            // Only while nothing but head and chunk-size bytes waits: they are written first.
            if self.data.is_empty()
                && self.tail.is_empty()
                && self.bytes.len() - self.written < MAX_GATHERED
                && let Some(body) = &mut self.body
            {
                match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        self.body_started = true;
                        let end = body.is_end_stream();
                        if let Ok(data) = frame.into_data() {
                            self.queue(data)?;
                        }
                        if end {
                            self.end_body()?;
                        }
                        continue;
                    }
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(SendError::Body(e))),
                    Poll::Ready(None) => {
                        self.body_started = true;
                        self.end_body()?;
                    }
                    Poll::Pending => body_waits = true,
                }
            }
            while self.has_queued() {
                let slices = [
                    IoSlice::new(&self.bytes[self.written..]),
                    IoSlice::new(&self.data),
                    IoSlice::new(self.tail),
                ];
                let n = ready!(Pin::new(&mut *stream).poll_write_vectored(cx, &slices))
                    .map_err(SendError::Io)?;
                if n == 0 {
                    return Poll::Ready(Err(SendError::Io(io::ErrorKind::WriteZero.into())));
                }
                self.sent_any = true;
                self.advance(n);
            }
            if self.body.is_none() {
                return Poll::Ready(Ok(()));
            }
            if body_waits {
                return Poll::Pending;
            }
        }
    }

    fn queue(&mut self, data: Bytes) -> Result<(), SendError> {
        if data.is_empty() {
            return Ok(());
        }
        if self.written == self.bytes.len() {
            self.bytes.clear();
            self.written = 0;
        }
        match self.framing {
            RequestFraming::Length(_) => {
                let len = data.len() as u64;
                if len > self.length_left {
                    return Err(SendError::Length);
                }
                self.length_left -= len;
            }
            RequestFraming::Chunked => {
                h1::encode_chunk_size(data.len(), &mut self.bytes);
                self.tail = b"\r\n";
            }
            RequestFraming::Empty => return Ok(()),
        }
        self.data = data;
        Ok(())
    }

    fn end_body(&mut self) -> Result<(), SendError> {
        self.body = None;
        match self.framing {
            RequestFraming::Chunked if self.tail.is_empty() => {
                self.tail = h1::LAST_CHUNK;
            }
            RequestFraming::Chunked => self.tail = b"\r\n0\r\n\r\n",
            RequestFraming::Length(_) if self.length_left != 0 => return Err(SendError::Length),
            _ => {}
        }
        Ok(())
    }

    fn advance(&mut self, mut n: usize) {
        let head = self.bytes.len() - self.written;
        if n < head {
            self.written += n;
            return;
        }
        self.written = self.bytes.len();
        n -= head;
        if n < self.data.len() {
            self.data.advance(n);
            return;
        }
        n -= self.data.len();
        self.data = Bytes::new();
        self.tail = &self.tail[n.min(self.tail.len())..];
    }
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
    use tokio::net::TcpListener;

    /// A pooled connection to a local listener, and the listener's end of it.
    async fn idle_connection() -> (IdleConnection, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let conn = Connection::new(client, Upstream::Socket(addr));
        let idle = IdleConnection {
            conn: Box::new(conn),
            since: Instant::now(),
        };
        (idle, server)
    }

    #[tokio::test]
    async fn sweep_drops_closed_connections_and_empty_endpoints() {
        let gone: Upstream = Upstream::Socket("10.0.0.1:80".parse().unwrap());
        let alive: Upstream = Upstream::Socket("10.0.0.2:80".parse().unwrap());
        let (closed_a, server_a) = idle_connection().await;
        let (open, _server_open) = idle_connection().await;
        let (closed_b, server_b) = idle_connection().await;
        drop((server_a, server_b));
        // The close is seen once the runtime's I/O driver has delivered it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while closed_a.conn.is_open() || closed_b.conn.is_open() {
            assert!(Instant::now() < deadline, "the close was never noticed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut pool = IdlePool::default();
        pool.by_upstream.insert(gone.clone(), vec![closed_a]);
        pool.by_upstream.insert(alive.clone(), vec![open, closed_b]);
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
