//! The admin HTTP server and its small router.

use crate::observability;
use crate::state::RuntimeState;
use crate::views::{SnapshotView, routes_of};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::Serialize;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves the admin API until `shutdown` is cancelled.
pub async fn serve_admin(
    listener: TcpListener,
    state: Arc<RuntimeState>,
    shutdown: CancellationToken,
) {
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(err) => {
                    tracing::warn!(%err, "admin listener: accept failed");
                    continue;
                }
            },
        };
        let state = state.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, &req)) }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

fn route(state: &RuntimeState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is supported\n");
    }
    match req.uri().path() {
        "/healthz" => {
            if state.is_shutting_down() {
                text(StatusCode::INTERNAL_SERVER_ERROR, "shutting down\n")
            } else {
                text(StatusCode::OK, "ok\n")
            }
        }
        "/readyz" => {
            if state.is_ready() {
                text(StatusCode::OK, "ready\n")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: the first configuration has not been applied yet\n",
                )
            }
        }
        "/api/v1/snapshot" => {
            let snapshot = state.snapshot.load();
            let report = state.report.load();
            json(&SnapshotView::new(&snapshot, &report))
        }
        "/api/v1/problems" => json(&state.report.load().problems),
        "/metrics" => observability::metrics(state),
        "/api/v1/stats" => {
            let host = query_param(req.uri().query(), "host");
            observability::stats(state, host.as_deref())
        }
        "/" => observability::dashboard(),
        "/api/v1/routes" => {
            let host = query_param(req.uri().query(), "host");
            json(&routes_of(&state.snapshot.load(), host.as_deref()))
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "unknown admin path; try / (dashboard), /healthz, /readyz, /metrics, /api/v1/snapshot, /api/v1/problems, /api/v1/routes?host=H, /api/v1/stats?host=H\n",
        ),
    }
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

pub(crate) fn json<T: Serialize + ?Sized>(value: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => {
            let mut resp = Response::new(Full::new(Bytes::from(body)));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(err) => {
            tracing::error!(%err, "admin: could not encode JSON");
            text(StatusCode::INTERNAL_SERVER_ERROR, "could not encode JSON\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::query_param;

    #[test]
    fn query_params_are_found_by_name() {
        assert_eq!(
            query_param(Some("a=1&host=x.com"), "host").as_deref(),
            Some("x.com")
        );
        assert_eq!(query_param(Some("host="), "host"), None);
        assert_eq!(query_param(None, "host"), None);
    }
}
