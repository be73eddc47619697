//! One request: find its route in the current snapshot, then redirect, refuse or proxy it.

use crate::body::{RequestBody, ResponseBody, SendProgress};
use crate::canary;
use crate::forward::{self, ConnectionInfo};
use crate::observe::{Exchange, MeteredBody};
use crate::reply::{self, SERVER_NAME};
use crate::upstream::{Pool, PooledConnection};
use arc_swap::ArcSwap;
use http::header::{HOST, HeaderValue, SERVER, STRICT_TRANSPORT_SECURITY};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use sluice_metrics::Metrics;
use sluice_model::{
    BackendSlot, CanaryTarget, GlobalOptions, HostTable, RoutePolicy, Snapshot, Unavailable,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::AsyncWriteExt;

/// ingress-nginx's `no-tls-redirect-locations` default: ACME http-01 challenges must reach the
/// solver over plain HTTP even on hosts that redirect to https.
const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// Endpoints tried per request when connecting fails (ingress-nginx's
/// `proxy-next-upstream-tries` default), never more than the backend has.
const MAX_CONNECT_TRIES: usize = 3;

/// Tengine-Ingress's health file for L4 load balancers, answered for an IPv4-literal Host or
/// this name.
const STATUS_PATH: &str = "/status.tengine";
const STATUS_HOST: &str = "status.tengine.com";

/// What `disable-robots` answers at `/robots.txt`.
const ROBOTS_DISALLOW_ALL: &str = "User-agent: *\nDisallow: /\n";

/// Set by a trusted front load balancer to the scheme the client used.
const X_CLIENT_SCHEME: &str = "x-client-scheme";

/// `max-age=0`: tells browsers to forget an earlier pin, for hosts that do not force https.
const HSTS_UNPIN: HeaderValue = HeaderValue::from_static("max-age=0");

pub(crate) struct Router {
    snapshot: Arc<ArcSwap<Snapshot>>,
    pool: Arc<Pool>,
    /// The HSTS header of the last options seen, so it is formatted once per options change.
    hsts: ArcSwap<(Arc<GlobalOptions>, Option<HeaderValue>)>,
    metrics: Option<Arc<Metrics>>,
    /// Set when shutdown starts: `/status.tengine` then answers 503 so L4 balancers drain.
    draining: AtomicBool,
}

/// What a request needs from the snapshot, taken out so the snapshot is not held across awaits.
struct Matched {
    backend: Arc<BackendSlot>,
    policy: Arc<RoutePolicy>,
    /// The canary that took the request (its backend is `backend`); `None` for the primary.
    canary: Option<Arc<CanaryTarget>>,
}

impl Router {
    pub(crate) fn new(snapshot: Arc<ArcSwap<Snapshot>>, metrics: Option<Arc<Metrics>>) -> Self {
        let options = snapshot.load().options.clone();
        let hsts = hsts_value(&options);
        Router {
            snapshot,
            pool: Arc::default(),
            hsts: ArcSwap::from_pointee((options, hsts)),
            metrics,
            draining: AtomicBool::new(false),
        }
    }

    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// 200 while a configuration is loaded and shutdown has not started, else 503.
    fn status_tengine(&self) -> Response<ResponseBody> {
        if self.draining.load(Ordering::Acquire) {
            reply::text(
                StatusCode::SERVICE_UNAVAILABLE,
                format_args!("shutting down; take this instance out of rotation"),
            )
        } else if self.snapshot.load().version == 0 {
            reply::text(
                StatusCode::SERVICE_UNAVAILABLE,
                format_args!("no configuration loaded yet"),
            )
        } else {
            plain_ok("ok\n")
        }
    }

    pub(crate) async fn handle(
        &self,
        request: Request<Incoming>,
        conn: &ConnectionInfo,
    ) -> Response<MeteredBody> {
        let mut exchange = Exchange::begin(self.metrics.as_ref(), &request, conn);
        let response = self.route(request, conn, &mut exchange).await;
        exchange.finish(response)
    }

    async fn route(
        &self,
        request: Request<Incoming>,
        conn: &ConnectionInfo,
        exchange: &mut Exchange,
    ) -> Response<ResponseBody> {
        let authority = request_authority(&request);
        let host_text = authority
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let host = HostTable::normalize(host_text);
        let path = request.uri().path();
        if path == STATUS_PATH && is_status_host(&host) {
            return self.status_tengine();
        }

        let (matched, hsts) = {
            let snapshot = self.snapshot.load();
            let vhost = snapshot.hosts.lookup(&host);
            let https = conn.tls || client_said_https(&request, conn, &snapshot.options);
            let route = vhost.find(path);
            // Tengine-Ingress's rule over ingress-nginx's HSTS options: the configured header
            // where https is enforced, `max-age=0` where the route lets plain http through.
            let hsts = match route {
                _ if !https || !vhost.tls => None,
                Some(r) if !r.policy.ssl_redirect && !r.policy.force_ssl_redirect => {
                    Some(HSTS_UNPIN)
                }
                _ => self.hsts_for(&snapshot.options),
            };
            exchange.matched(&snapshot, vhost, route, &host);
            let matched = route.map(|route| {
                let (backend, canary) = canary::choose(route, request.headers(), request.uri());
                Matched {
                    backend,
                    policy: route.policy.clone(),
                    canary,
                }
            });
            let redirect = match &matched {
                // Without a host there is nowhere to redirect to.
                Some(m)
                    if !https && !host.is_empty() && !path.starts_with(ACME_CHALLENGE_PREFIX) =>
                {
                    (vhost.tls && m.policy.ssl_redirect) || m.policy.force_ssl_redirect
                }
                _ => false,
            };
            if redirect && let Some(m) = &matched {
                return https_redirect(&host, &request, &m.policy);
            }
            if path == "/robots.txt" && matched.as_ref().is_some_and(|m| m.policy.disable_robots) {
                let mut response = plain_ok(ROBOTS_DISALLOW_ALL);
                if let Some(hsts) = hsts {
                    response
                        .headers_mut()
                        .insert(STRICT_TRANSPORT_SECURITY, hsts);
                }
                return response;
            }
            (matched, hsts)
        };

        let mut response = match matched {
            None => reply::text(
                StatusCode::NOT_FOUND,
                format_args!("no route for host {host} path {path}"),
            ),
            Some(_) if request.method() == Method::CONNECT => reply::text(
                StatusCode::METHOD_NOT_ALLOWED,
                format_args!("CONNECT is not supported by this proxy"),
            ),
            Some(matched) => {
                self.proxy(request, authority, conn, matched, exchange)
                    .await
            }
        };
        if let Some(hsts) = hsts {
            let headers = response.headers_mut();
            if !headers.contains_key(STRICT_TRANSPORT_SECURITY) {
                headers.insert(STRICT_TRANSPORT_SECURITY, hsts);
            }
        }
        response
    }

    fn hsts_for(&self, options: &Arc<GlobalOptions>) -> Option<HeaderValue> {
        let cached = self.hsts.load();
        if Arc::ptr_eq(&cached.0, options) {
            return cached.1.clone();
        }
        let value = hsts_value(options);
        self.hsts.store(Arc::new((options.clone(), value.clone())));
        value
    }

    async fn proxy(
        &self,
        mut request: Request<Incoming>,
        authority: Option<HeaderValue>,
        conn: &ConnectionInfo,
        matched: Matched,
        exchange: &mut Exchange,
    ) -> Response<ResponseBody> {
        let Matched {
            backend,
            policy,
            canary,
        } = matched;
        let mut upstream = match backend.pick() {
            Ok(upstream) => upstream,
            Err(why) => return unavailable(&backend, &why),
        };

        let client_version = request.version();
        let upgrade =
            client_version == Version::HTTP_11 && forward::is_upgrade_request(request.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
        let (mut parts, body) = request.into_parts();
        let mut forwarded = Some(forward::to_upstream(
            &mut parts.headers,
            conn,
            authority,
            upgrade,
        ));
        if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
            parts.uri = origin_form(&parts.uri);
        }
        parts.version = Version::HTTP_11;
        let canary_vars = canary.as_ref().map(|c| {
            // The canary's header actions may add to or append to the forwarded headers.
            if let Some(forwarded) = forwarded.take() {
                forwarded.insert_into(&mut parts.headers);
            }
            let vars = canary::Variables::of(&parts.headers, conn);
            canary::apply_request(&c.actions, &mut parts, &vars);
            vars
        });
        let progress = (!body.is_end_stream()).then(|| Arc::new(SendProgress::new()));
        exchange.upstream_sending(progress.as_ref(), &parts.headers, canary.is_some());
        let upstream_request = Request::from_parts(parts, RequestBody::new(body, progress.clone()));

        // Counted only once a connection fails: the common path never reads the endpoint list.
        let mut retries_left: Option<usize> = None;
        let next_upstream = || {
            let left = retries_left.get_or_insert_with(|| {
                backend
                    .endpoints()
                    .upstreams()
                    .len()
                    .min(MAX_CONNECT_TRIES)
                    .saturating_sub(1)
            });
            *left = left.checked_sub(1)?;
            backend.pick().ok()
        };
        let sent = self
            .pool
            .send(
                &mut upstream,
                next_upstream,
                upstream_request,
                forwarded.as_ref(),
                &policy,
                progress.as_deref(),
            )
            .await;
        let mut response = match sent {
            Ok(response) => {
                exchange.upstream_answered(&upstream);
                response
            }
            Err(e) => {
                exchange.upstream_failed(&upstream, e.is_timeout());
                let status = if e.is_timeout() {
                    StatusCode::GATEWAY_TIMEOUT
                } else {
                    StatusCode::BAD_GATEWAY
                };
                tracing::debug!(%upstream, backend = %backend.key, client = %conn.peer, error = %e, "upstream failed");
                return reply::text(
                    status,
                    format_args!("upstream {upstream} of {}: {e}", backend.key),
                );
            }
        };

        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let (Some(client_upgrade), Some(connection)) =
                (client_upgrade, response.body_mut().take_upgraded())
            else {
                return reply::text(
                    StatusCode::BAD_GATEWAY,
                    format_args!(
                        "upstream {upstream} of {} switched protocols without being asked to",
                        backend.key
                    ),
                );
            };
            tokio::spawn(tunnel(client_upgrade, connection));
            let (mut parts, _) = response.into_parts();
            forward::to_client(&mut parts.headers, true);
            if let (Some(c), Some(vars)) = (&canary, &canary_vars) {
                canary::apply_response(&c.actions, &mut parts.headers, vars);
            }
            finish_head(&mut parts, client_version);
            return Response::from_parts(parts, ResponseBody::empty());
        }
        let (mut parts, body) = response.into_parts();
        forward::to_client(&mut parts.headers, false);
        if let (Some(c), Some(vars)) = (&canary, &canary_vars) {
            canary::apply_response(&c.actions, &mut parts.headers, vars);
        }
        finish_head(&mut parts, client_version);
        Response::from_parts(parts, ResponseBody::Upstream(body))
    }
}

/// The client's host: HTTP/2 `:authority` (or an absolute-form HTTP/1 target), else `Host`.
fn request_authority<B>(request: &Request<B>) -> Option<HeaderValue> {
    match request.uri().authority() {
        // Only HTTP/2 and absolute-form requests pay for this conversion.
        Some(authority) => HeaderValue::from_str(authority.as_str()).ok(),
        None => request.headers().get(HOST).cloned(),
    }
}

fn finish_head(parts: &mut http::response::Parts, client_version: Version) {
    if !parts.headers.contains_key(SERVER) {
        parts.headers.insert(SERVER, SERVER_NAME);
    }
    parts.version = client_version;
}

fn origin_form(uri: &Uri) -> Uri {
    match uri.path_and_query() {
        Some(pq) => Uri::from(pq.clone()),
        None => Uri::from_static("/"),
    }
}

/// An IPv4 literal or `status.tengine.com`, as Tengine-Ingress serves its health file.
fn is_status_host(host: &str) -> bool {
    host == STATUS_HOST || host.parse::<std::net::Ipv4Addr>().is_ok()
}

/// `X-Client-Scheme: https` from a peer listed in the `trusted-proxies` option.
fn client_said_https<B>(
    request: &Request<B>,
    conn: &ConnectionInfo,
    options: &GlobalOptions,
) -> bool {
    !options.trusted_proxies.is_empty()
        && request
            .headers()
            .get(X_CLIENT_SCHEME)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
        && options
            .trusted_proxies
            .iter()
            .any(|net| net.contains(conn.peer.ip()))
}

/// A 200 text/plain answer written by Sluice with exactly `body`.
fn plain_ok(body: &'static str) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::Local(Some(bytes::Bytes::from_static(
        body.as_bytes(),
    ))));
    let headers = response.headers_mut();
    headers.insert(SERVER, SERVER_NAME);
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    response
}

fn hsts_value(options: &GlobalOptions) -> Option<HeaderValue> {
    options
        .hsts_header()
        .and_then(|v| HeaderValue::from_str(&v).ok())
}

fn https_redirect<B>(
    host: &str,
    request: &Request<B>,
    policy: &RoutePolicy,
) -> Response<ResponseBody> {
    let status = StatusCode::from_u16(policy.redirect_code)
        .ok()
        .filter(StatusCode::is_redirection)
        .unwrap_or(StatusCode::PERMANENT_REDIRECT);
    let target = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    // The https port is not known here; like ingress-nginx with the standard ports, the redirect
    // names the host alone (so port 443).
    reply::redirect(status, &format!("https://{host}{target}"))
}

fn unavailable(backend: &BackendSlot, why: &Unavailable) -> Response<ResponseBody> {
    let key = &backend.key;
    let detail = match why {
        Unavailable::NoService => {
            format!("service {}/{} does not exist", key.namespace, key.service)
        }
        Unavailable::NoServicePort => format!(
            "service {}/{} has no port {}",
            key.namespace, key.service, key.port
        ),
        Unavailable::NoReadyEndpoints => format!("{key} has no ready endpoints"),
    };
    reply::text(StatusCode::SERVICE_UNAVAILABLE, format_args!("{detail}"))
}

/// Joins the client and upstream sides of an upgraded connection (e.g. a WebSocket).
async fn tunnel(client: OnUpgrade, upstream: PooledConnection) {
    let client = match client.await {
        Ok(client) => client,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    // The upstream connection now belongs to the tunnel; it is never pooled again.
    let (mut upstream, early) = upstream.into_upgraded();
    let mut client = TokioIo::new(client);
    // What the upstream sent right behind its 101 already belongs to the new protocol.
    if !early.is_empty()
        && let Err(e) = client.write_all(&early).await
    {
        tracing::debug!(error = %e, "upgraded connection ended with an error");
        return;
    }
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(error = %e, "upgraded connection ended with an error");
    }
}
