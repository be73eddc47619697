//! The plain-HTTP data plane against real backends: routing, errors, headers, streaming,
//! HTTP/2 (h2c), WebSocket, snapshot swaps, load balancing and shutdown.

mod common;

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use sluice_model::{Endpoints, PathMatch, RoutePolicy, Unavailable};
use std::collections::HashMap;
use std::time::Duration;

#[tokio::test]
async fn routes_by_host_then_longest_path() {
    let api = slot("api", &[echo_backend("api").await]);
    let web = slot("web", &[echo_backend("web").await]);
    let other = slot("other", &[echo_backend("other").await]);
    let proxy = Proxy::start(snapshot(
        1,
        vec![
            vhost(
                "a.test",
                false,
                vec![prefix("/", &web), prefix("/api", &api)],
            ),
            vhost("*.b.test", false, vec![prefix("/", &other)]),
        ],
    ))
    .await;

    for (host, path, backend) in [
        ("a.test", "/", "web"),
        ("a.test", "/api", "api"),
        ("A.Test:8080", "/api/v1?x=1", "api"),
        ("a.test", "/apix", "web"),
        ("x.b.test", "/anything", "other"),
    ] {
        let reply = get(proxy.http, host, path).await;
        assert_eq!(reply.status, StatusCode::OK, "{host}{path}");
        assert_eq!(reply.header("x-backend"), backend, "{host}{path}");
        assert_eq!(reply.header("x-echo-uri"), path, "{host}{path}");
    }
}

#[tokio::test]
async fn unknown_host_or_path_is_a_404_saying_so() {
    let web = slot("web", &[echo_backend("web").await]);
    let proxy = Proxy::start(snapshot(
        1,
        vec![vhost(
            "a.test",
            false,
            vec![route(
                PathMatch::exact("/only"),
                web,
                RoutePolicy::default(),
            )],
        )],
    ))
    .await;

    let reply = get(proxy.http, "nowhere.test", "/x").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.header("server"), "sluice");
    assert_eq!(
        reply.body,
        "404 Not Found: no route for host nowhere.test path /x\n"
    );
    let reply = get(proxy.http, "a.test", "/only/not").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(reply.body.contains("path /only/not"), "{}", reply.body);
}

#[tokio::test]
async fn backend_without_endpoints_is_a_503_naming_it() {
    let empty = slot("web", &[]);
    let missing = slot("gone", &[]);
    missing.set_endpoints(Endpoints::Unavailable(Unavailable::NoService));
    let proxy = Proxy::start(snapshot(
        1,
        vec![vhost(
            "a.test",
            false,
            vec![prefix("/", &empty), prefix("/gone", &missing)],
        )],
    ))
    .await;

    let reply = get(proxy.http, "a.test", "/").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.header("server"), "sluice");
    assert_eq!(
        reply.body,
        "503 Service Unavailable: default/web:80 has no ready endpoints\n"
    );
    let reply = get(proxy.http, "a.test", "/gone").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        reply.body.contains("default/gone does not exist"),
        "{}",
        reply.body
    );
}

#[tokio::test]
async fn refused_connection_is_a_502() {
    let dead = slot("dead", &[closed_port().await]);
    let proxy = Proxy::start(snapshot(
        1,
        vec![vhost("a.test", false, vec![prefix("/", &dead)])],
    ))
    .await;
    let reply = get(proxy.http, "a.test", "/").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(reply.header("server"), "sluice");
    assert!(
        reply
            .body
            .starts_with("502 Bad Gateway: upstream 127.0.0.1:"),
        "{}",
        reply.body
    );
    assert!(reply.body.contains("default/dead:80"), "{}", reply.body);
}

#[tokio::test]
async fn silent_backend_is_a_504_after_the_read_timeout() {
    let silent = slot("silent", &[silent_backend().await]);
    let policy = RoutePolicy {
        read_timeout: Duration::from_millis(300),
        ..RoutePolicy::default()
    };
    let proxy = Proxy::start(snapshot(
        1,
        vec![vhost(
            "a.test",
            false,
            vec![route(PathMatch::prefix("/"), silent, policy)],
        )],
    ))
    .await;
    let started = std::time::Instant::now();
    let reply = get(proxy.http, "a.test", "/").await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(reply.body.contains("read timeout"), "{}", reply.body);
}

#[tokio::test]
async fn upstream_sees_forwarding_headers_and_no_hop_by_hop_ones() {
    let web = slot("web", &[echo_backend("web").await]);
    let proxy = Proxy::start(snapshot(
        1,
        vec![vhost("a.test", false, vec![prefix("/", &web)])],
    ))
    .await;

    let mut sender = h1(proxy.http).await;
    let req = Request::get("/path?q=1")
        .header("host", "a.test:8080")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "secret")
        .header("proxy", "http://evil.test")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-custom", "kept")
        .body(empty())
        .unwrap();
    let reply = read(sender.send_request(req).await.unwrap()).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("echo-host"), "a.test:8080");
    assert_eq!(reply.header("echo-x-forwarded-for"), "127.0.0.1");
    assert_eq!(reply.header("echo-x-real-ip"), "127.0.0.1");
    assert_eq!(reply.header("echo-x-forwarded-proto"), "http");
    assert_eq!(reply.header("echo-x-forwarded-host"), "a.test:8080");
    assert_eq!(
        reply.header("echo-x-forwarded-port"),
        proxy.http.port().to_string()
    );
    assert_eq!(reply.header("echo-x-custom"), "kept");
    let id = reply.header("echo-x-request-id");
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    for gone in ["echo-x-hop", "echo-proxy", "echo-keep-alive"] {
        assert!(
            !reply.headers.contains_key(gone),
            "{gone} reached the upstream"
        );
    }
    assert_eq!(reply.header("x-echo-uri"), "/path?q=1");

    // An incoming request id is kept.
    let req = Request::get("/")
        .header("host", "a.test")
        .header("x-request-id", "abc-123")
        .body(empty())
        .unwrap();
    let reply = read(sender.send_request(req).await.unwrap()).await;
    assert_eq!(reply.header("echo-x-request-id"), "abc-123");
}

#[tokio::test]
async fn hop_by_hop_response_headers_stay_upstream() {
    let web = slot("web", &[echo_backend("web").await]);
    let proxy = Proxy::start(snapshot(
        1,
        vec![vhost("a.test", false, vec![prefix("/", &web)])],
    ))
    .await;
    let reply = get(proxy.http, "a.test", "/hop").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("x-public"), "1");
    assert!(!reply.headers.contains_key("x-private"));
    assert!(!reply.headers.contains_key("keep-alive"));
    // The backend sends no Server header, so Sluice names itself.
    assert_eq!(reply.header("server"), "sluice");
}

#[tokio::test]
async fn large_upload_streams_through_and_back() {
    let web = slot("web", &[echo_backend("web").await]);
    let proxy = Proxy::start(snapshot(
        1,
        vec![vhost("a.test", false, vec![prefix("/", &web)])],
    ))
    .await;

    const CHUNK: usize = 64 * 1024;
    const CHUNKS: usize = 80; // 5 MiB
    let (mut tx, body) =
        http_body_util::channel::Channel::<Bytes, std::convert::Infallible>::new(4);
    let req = Request::post("/upload")
        .header("host", "a.test")
        .body(body.boxed())
        .unwrap();
    let mut sender = h1(proxy.http).await;
    let response = sender.send_request(req);
    let upload = tokio::spawn(async move {
        for i in 0..CHUNKS {
            tx.send_data(Bytes::from(vec![(i % 251) as u8; CHUNK]))
                .await
                .unwrap();
        }
    });
    let response = within("upload response", response).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // The echo arrives while the upload is still going: neither side buffers the whole body.
    let mut body = response.into_body();
    let mut received = 0usize;
    while let Some(frame) = within("echoed chunk", body.frame()).await {
        let frame = frame.unwrap();
        if let Some(data) = frame.data_ref() {
            for (offset, byte) in data.iter().enumerate() {
                assert_eq!(*byte, (((received + offset) / CHUNK) % 251) as u8);
            }
            received += data.len();
        }
    }
    within("upload", upload).await.unwrap();
    assert_eq!(received, CHUNK * CHUNKS);
}

#[tokio::test]
async fn h2c_prior_knowledge_is_proxied_to_http1() {
    let web = slot("web", &[echo_backend("web").await]);
    let proxy = Proxy::start(snapshot(
        1,
        vec![vhost("a.test", false, vec![prefix("/", &web)])],
    ))
    .await;
    let mut sender = h2_over(tokio::net::TcpStream::connect(proxy.http).await.unwrap()).await;
    let req = Request::get("http://a.test/h2?x=y")
        .version(http::Version::HTTP_2)
        .body(empty())
        .unwrap();
    let response = within("h2 response", sender.send_request(req))
        .await
        .unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    let reply = read(response).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("x-backend"), "web");
    assert_eq!(reply.header("x-echo-uri"), "/h2?x=y");
    assert_eq!(reply.header("x-echo-version"), "HTTP/1.1");
    assert_eq!(reply.header("echo-host"), "a.test");

    // A request body over HTTP/2 reaches the HTTP/1.1 upstream and comes back.
    let req = Request::post("http://a.test/upload")
        .version(http::Version::HTTP_2)
        .body(http_body_util::Full::new(Bytes::from_static(b"h2 body")).boxed())
        .unwrap();
    let response = within("h2 response", sender.send_request(req))
        .await
        .unwrap();
    let reply = read(response).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "h2 body");
}

#[tokio::test]
async fn websocket_echoes_through_the_proxy() {
    let ws = slot("ws", &[websocket_backend("ws").await]);
    let proxy = Proxy::start(snapshot(
        1,
        vec![vhost("a.test", false, vec![prefix("/", &ws)])],
    ))
    .await;
    let tcp = tokio::net::TcpStream::connect(proxy.http).await.unwrap();
    let (mut socket, response) = within(
        "websocket handshake",
        tokio_tungstenite::client_async("ws://a.test/chat", tcp),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    for text in ["hello", "again"] {
        socket.send(text.into()).await.unwrap();
        let echoed = within("websocket echo", socket.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(echoed.to_text().unwrap(), format!("ws:{text}"));
    }
}

#[tokio::test]
async fn snapshot_swap_keeps_open_connections_working() {
    let old = slot("old", &[echo_backend("old").await]);
    let new = slot("new", &[echo_backend("new").await]);
    let ws = slot("ws", &[websocket_backend("ws").await]);
    let proxy = Proxy::start(snapshot(
        1,
        vec![vhost(
            "a.test",
            false,
            vec![prefix("/", &old), prefix("/ws", &ws)],
        )],
    ))
    .await;

    let mut keep_alive = h1(proxy.http).await;
    let reply = read(
        keep_alive
            .send_request(request("a.test", "/"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply.header("x-backend"), "old");
    let tcp = tokio::net::TcpStream::connect(proxy.http).await.unwrap();
    let (mut socket, _) = within(
        "websocket handshake",
        tokio_tungstenite::client_async("ws://a.test/ws", tcp),
    )
    .await
    .unwrap();

    proxy.swap(snapshot(
        2,
        vec![vhost(
            "a.test",
            false,
            vec![prefix("/", &new), prefix("/ws", &ws)],
        )],
    ));

    keep_alive.ready().await.unwrap();
    let reply = read(
        keep_alive
            .send_request(request("a.test", "/"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.header("x-backend"),
        "new",
        "same connection, new route"
    );
    socket.send("still here".into()).await.unwrap();
    let echoed = within("websocket echo", socket.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(echoed.to_text().unwrap(), "ws:still here");
}

#[tokio::test]
async fn round_robin_spreads_over_every_endpoint() {
    let endpoints = [
        echo_backend("one").await,
        echo_backend("two").await,
        echo_backend("three").await,
    ];
    let web = slot("web", &endpoints);
    let proxy = Proxy::start(snapshot(
        1,
        vec![vhost("a.test", false, vec![prefix("/", &web)])],
    ))
    .await;
    let mut sender = h1(proxy.http).await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for _ in 0..9 {
        sender.ready().await.unwrap();
        let reply = read(sender.send_request(request("a.test", "/")).await.unwrap()).await;
        *seen
            .entry(reply.header("x-backend").to_string())
            .or_default() += 1;
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.values().all(|n| *n == 3), "{seen:?}");
}

#[tokio::test]
async fn plain_http_to_a_tls_host_redirects_to_https() {
    let web = slot("web", &[echo_backend("web").await]);
    let forced = RoutePolicy {
        force_ssl_redirect: true,
        redirect_code: 301,
        ..RoutePolicy::default()
    };
    let no_redirect = RoutePolicy {
        ssl_redirect: false,
        ..RoutePolicy::default()
    };
    let proxy = Proxy::start(snapshot(
        1,
        vec![
            vhost("secure.test", true, vec![prefix("/", &web)]),
            vhost(
                "optout.test",
                true,
                vec![route(PathMatch::prefix("/"), web.clone(), no_redirect)],
            ),
            vhost(
                "plain.test",
                false,
                vec![
                    prefix("/", &web),
                    route(PathMatch::prefix("/forced"), web.clone(), forced),
                ],
            ),
        ],
    ))
    .await;

    let reply = get(proxy.http, "Secure.test:80", "/a/b?c=d").await;
    assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(reply.header("location"), "https://secure.test/a/b?c=d");
    assert_eq!(reply.header("server"), "sluice");
    assert!(!reply.headers.contains_key("strict-transport-security"));

    let reply = get(
        proxy.http,
        "secure.test",
        "/.well-known/acme-challenge/token",
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "ACME challenges are not redirected"
    );

    assert_eq!(
        get(proxy.http, "optout.test", "/").await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(proxy.http, "plain.test", "/").await.status,
        StatusCode::OK
    );
    let reply = get(proxy.http, "plain.test", "/forced").await;
    assert_eq!(reply.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(reply.header("location"), "https://plain.test/forced");
}

#[tokio::test]
async fn shutdown_waits_for_in_flight_requests() {
    let web = slot("web", &[echo_backend("web").await]);
    let proxy = Proxy::start(snapshot(
        1,
        vec![vhost("a.test", false, vec![prefix("/", &web)])],
    ))
    .await;

    // A request whose body is still being sent is in flight.
    let (mut tx, body) =
        http_body_util::channel::Channel::<Bytes, std::convert::Infallible>::new(1);
    let req = Request::post("/")
        .header("host", "a.test")
        .body(body.boxed())
        .unwrap();
    let mut sender = h1(proxy.http).await;
    let response = within("response head", sender.send_request(req))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    proxy.shutdown.cancel();
    // The listener stops accepting...
    within("listener closed", async {
        while tokio::net::TcpStream::connect(proxy.http).await.is_ok() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(
        !proxy.http_task.is_finished(),
        "drain must wait for the open request"
    );

    // ...but the open request completes.
    tx.send_data(Bytes::from_static(b"last words"))
        .await
        .unwrap();
    drop(tx);
    let reply = read(response).await;
    assert_eq!(reply.body, "last words");
    within("drain", proxy.http_task).await.unwrap();
}

#[tokio::test]
async fn upstream_connections_are_kept_alive_and_reused() {
    let (backend, accepted) = counting_echo_backend("web").await;
    let web = slot("web", &[backend]);
    let proxy = Proxy::start(snapshot(
        1,
        vec![vhost("a.test", false, vec![prefix("/", &web)])],
    ))
    .await;
    for i in 0..5 {
        // A new client connection each time: the upstream connection is pooled, not tied to it.
        let reply = get(proxy.http, "a.test", &format!("/{i}")).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn upstream_stalling_mid_body_is_cut_after_the_read_timeout() {
    let stalling = slot("stalling", &[stalling_backend().await]);
    let policy = RoutePolicy {
        read_timeout: Duration::from_millis(300),
        ..RoutePolicy::default()
    };
    let proxy = Proxy::start(snapshot(
        1,
        vec![vhost(
            "a.test",
            false,
            vec![route(PathMatch::prefix("/"), stalling, policy)],
        )],
    ))
    .await;
    let mut sender = h1(proxy.http).await;
    let response = within("response head", sender.send_request(request("a.test", "/")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = within("the body to fail", response.into_body().collect()).await;
    assert!(body.is_err(), "a truncated body must not look complete");
}

#[tokio::test]
async fn request_body_stalling_is_a_504_after_the_send_timeout() {
    let silent = slot("silent", &[silent_backend().await]);
    let policy = RoutePolicy {
        send_timeout: Duration::from_millis(300),
        ..RoutePolicy::default()
    };
    let proxy = Proxy::start(snapshot(
        1,
        vec![vhost(
            "a.test",
            false,
            vec![route(PathMatch::prefix("/"), silent, policy)],
        )],
    ))
    .await;
    let (mut tx, body) =
        http_body_util::channel::Channel::<Bytes, std::convert::Infallible>::new(1);
    let req = Request::post("/")
        .header("host", "a.test")
        .body(body.boxed())
        .unwrap();
    let mut sender = h1(proxy.http).await;
    let response = sender.send_request(req);
    tx.send_data(Bytes::from_static(b"first and only chunk"))
        .await
        .unwrap();
    let reply = read(within("504", response).await.unwrap()).await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(reply.body.contains("send timeout"), "{}", reply.body);
    drop(tx);
}

#[tokio::test]
async fn dns_upstreams_resolve_at_connect_time() {
    let backend = echo_backend("dns").await;
    let slot = std::sync::Arc::new(sluice_model::BackendSlot::new(
        sluice_model::BackendKey {
            namespace: "default".into(),
            service: "external".into(),
            port: sluice_model::ServicePortRef::Number(80),
        },
        Endpoints::Ready(vec![sluice_model::Upstream::Dns {
            host: "localhost".into(),
            port: backend.port(),
        }]),
    ));
    let proxy = Proxy::start(snapshot(
        1,
        vec![vhost("a.test", false, vec![prefix("/", &slot)])],
    ))
    .await;
    let reply = get(proxy.http, "a.test", "/").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.header("x-backend"), "dns");
}

#[tokio::test]
async fn a_refusing_endpoint_is_skipped_for_the_next_one() {
    let web = slot("web", &[closed_port().await, echo_backend("alive").await]);
    let proxy = Proxy::start(snapshot(
        1,
        vec![vhost("a.test", false, vec![prefix("/", &web)])],
    ))
    .await;
    for _ in 0..4 {
        let reply = get(proxy.http, "a.test", "/").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(reply.header("x-backend"), "alive");
    }
    // With every endpoint refusing, the answer is a 502 naming the last one tried.
    let dead = slot("dead", &[closed_port().await, closed_port().await]);
    proxy.swap(snapshot(
        2,
        vec![vhost("a.test", false, vec![prefix("/", &dead)])],
    ));
    let reply = get(proxy.http, "a.test", "/").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert!(reply.body.contains("default/dead:80"), "{}", reply.body);
}

#[tokio::test]
async fn idempotent_request_is_replayed_when_an_idle_upstream_connection_was_closed() {
    for (method, expected) in [
        (http::Method::GET, StatusCode::OK),
        (http::Method::POST, StatusCode::BAD_GATEWAY),
    ] {
        let web = slot("web", &[closes_first_connection_backend().await]);
        let proxy = Proxy::start(snapshot(
            1,
            vec![vhost("a.test", false, vec![prefix("/", &web)])],
        ))
        .await;
        let reply = get(proxy.http, "a.test", "/").await;
        assert_eq!(reply.header("x-connection"), "1");
        // Not waiting for anything: the pooled connection must have been idle for a while before
        // a failure on it counts as the upstream's idle close rather than an error.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let mut sender = h1(proxy.http).await;
        let req = Request::builder()
            .method(method.clone())
            .uri("/")
            .header("host", "a.test")
            .body(empty())
            .unwrap();
        let reply = read(within("response", sender.send_request(req)).await.unwrap()).await;
        assert_eq!(reply.status, expected, "{method}: {}", reply.body);
        if expected == StatusCode::OK {
            assert_eq!(reply.header("x-connection"), "2");
        }
    }
}

/// `Connection: close` (what every request of the short-connection benchmark says) gets the
/// whole response and then the end of the connection.
#[tokio::test]
async fn a_closing_request_gets_its_whole_response_then_the_end() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let web = slot("web", &[echo_backend("web").await]);
    let proxy = Proxy::start(snapshot(
        1,
        vec![vhost("a.test", false, vec![prefix("/", &web)])],
    ))
    .await;

    let mut stream = tokio::net::TcpStream::connect(proxy.http).await.unwrap();
    stream
        .write_all(b"POST /x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello")
        .await
        .unwrap();
    let mut reply = Vec::new();
    within("the response and the end", stream.read_to_end(&mut reply))
        .await
        .unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.ends_with("\r\n\r\nhello"), "{reply}");
}
