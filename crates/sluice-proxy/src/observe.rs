//! What the data plane tells `sluice-metrics` about each request: which route served it, its
//! status, sizes and timings, and (when the access log is on) the details of one log line.
//!
//! The router calls an [`Exchange`]'s hooks at a few points of a request; the response body is
//! wrapped in a [`MeteredBody`] that counts the bytes sent and records the request once the body
//! is finished (or abandoned), so durations include sending the body, as nginx's
//! `$request_time` does. Without metrics every hook is a branch on `None`.

use crate::body::{BoxError, ResponseBody, SendProgress};
use crate::forward::ConnectionInfo;
use bytes::Bytes;
use http::header::{REFERER, USER_AGENT};
use http::{HeaderMap, Request, Response, Version};
use http_body::{Body, Frame, SizeHint};
use sluice_metrics::{AccessEntry, Metrics, Observation, RouteStats, method_index};
use sluice_model::{Route, Snapshot, Upstream, VirtualHost};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

const X_REQUEST_ID: &str = "x-request-id";

/// One request's observations, filled in as it is handled.
pub(crate) struct Exchange {
    tracking: Option<Box<Tracking>>,
}

struct Tracking {
    metrics: Arc<Metrics>,
    started: Instant,
    method: u8,
    route: Option<Arc<RouteStats>>,
    canary: bool,
    upstream_sent: Option<Instant>,
    upstream_latency: Option<Duration>,
    request_body: Option<Arc<SendProgress>>,
    /// Present while the access log wants this request.
    log: Option<AccessEntry>,
}

impl Exchange {
    pub(crate) fn begin<B>(
        metrics: Option<&Arc<Metrics>>,
        request: &Request<B>,
        conn: &ConnectionInfo,
    ) -> Exchange {
        let Some(metrics) = metrics else {
            return Exchange { tracking: None };
        };
        let log = metrics.access_log().map(|_| AccessEntry {
            time: SystemTime::now(),
            client: conn.peer,
            host: String::new(),
            method: request.method().as_str().to_owned(),
            path: request.uri().path().to_owned(),
            query: request.uri().query().map(str::to_owned),
            protocol: protocol(request.version()),
            status: 0,
            request_bytes: 0,
            response_bytes: 0,
            duration: Duration::ZERO,
            route: None,
            upstream_addr: None,
            upstream_latency: None,
            request_id: None,
            tls_version: conn.tls_version,
            tls_cipher: conn.tls_cipher,
            canary: false,
            referer: header_text(request.headers(), REFERER.as_str()),
            user_agent: header_text(request.headers(), USER_AGENT.as_str()),
        });
        Exchange {
            tracking: Some(Box::new(Tracking {
                metrics: metrics.clone(),
                started: Instant::now(),
                method: method_index(request.method().as_str()),
                route: None,
                canary: false,
                upstream_sent: None,
                upstream_latency: None,
                request_body: None,
                log,
            })),
        }
    }

    /// The request matched `route` of `vhost` (or no path of it, with `None`).
    pub(crate) fn matched(
        &mut self,
        snapshot: &Arc<Snapshot>,
        vhost: &VirtualHost,
        route: Option<&Route>,
        host: &str,
    ) {
        let Some(t) = &mut self.tracking else { return };
        t.route = t.metrics.route_stats(snapshot, vhost, route);
        // `enable-access-log: "false"` silences the routes of that Ingress.
        if route.is_some_and(|r| !r.policy.enable_access_log) {
            t.log = None;
        }
        if let Some(log) = &mut t.log {
            log.host = host.to_owned();
            log.route = t.route.as_ref().map(|r| r.key.clone());
        }
    }

    /// The request is about to go upstream with these headers; `canary` when a canary backend
    /// took it instead of the route's primary one.
    pub(crate) fn upstream_sending(
        &mut self,
        body: Option<&Arc<SendProgress>>,
        headers: &HeaderMap,
        canary: bool,
    ) {
        let Some(t) = &mut self.tracking else { return };
        t.canary = canary;
        t.upstream_sent = Some(Instant::now());
        t.request_body = body.cloned();
        if let Some(log) = &mut t.log {
            log.request_id = header_text(headers, X_REQUEST_ID);
        }
    }

    /// `upstream` sent its response head.
    pub(crate) fn upstream_answered(&mut self, upstream: &Upstream) {
        let Some(t) = &mut self.tracking else { return };
        t.upstream_latency = t.upstream_sent.map(|sent| sent.elapsed());
        if let Some(log) = &mut t.log {
            log.upstream_addr = Some(upstream.to_string());
            log.upstream_latency = t.upstream_latency;
        }
    }

    /// `upstream` could not be reached, failed, or timed out (`timeout`).
    pub(crate) fn upstream_failed(&mut self, upstream: &Upstream, timeout: bool) {
        let Some(t) = &mut self.tracking else { return };
        if let Some(route) = &t.route {
            t.metrics.upstream_failed(route, timeout);
        }
        if let Some(log) = &mut t.log {
            log.upstream_addr = Some(upstream.to_string());
        }
    }

    /// Hands the observations to the response body, which records them when it is done.
    pub(crate) fn finish(self, response: Response<ResponseBody>) -> Response<MeteredBody> {
        let status = response.status().as_u16();
        response.map(|inner| MeteredBody {
            inner,
            tracking: self.tracking,
            status,
            response_bytes: 0,
        })
    }
}

fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

impl Tracking {
    fn record(self: Box<Self>, status: u16, response_bytes: u64) {
        let finished = Instant::now();
        let t = *self;
        let duration = finished.saturating_duration_since(t.started);
        let request_bytes = t.request_body.as_ref().map_or(0, |b| b.received());
        if let Some(route) = &t.route {
            let observation = Observation {
                method: t.method,
                status,
                canary: t.canary,
                request_bytes,
                response_bytes,
                duration,
                upstream: t.upstream_latency,
            };
            t.metrics.record(route, &observation, finished);
        }
        if let (Some(mut entry), Some(log)) = (t.log, t.metrics.access_log()) {
            entry.status = status;
            entry.canary = t.canary;
            entry.request_bytes = request_bytes;
            entry.response_bytes = response_bytes;
            entry.duration = duration;
            log.log(entry);
        }
    }
}

/// The response body on its way to the client, counting what it sends.
pub(crate) struct MeteredBody {
    inner: ResponseBody,
    tracking: Option<Box<Tracking>>,
    status: u16,
    response_bytes: u64,
}

impl Drop for MeteredBody {
    fn drop(&mut self) {
        if let Some(tracking) = self.tracking.take() {
            tracking.record(self.status, self.response_bytes);
        }
    }
}

impl Body for MeteredBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            this.response_bytes += data.len() as u64;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
