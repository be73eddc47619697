//! The TLS listener: certificate choice per handshake from the snapshot, ALPN, HSTS, renewal.

mod common;

use common::*;
use http::{Request, StatusCode};
use rustls::pki_types::{CertificateDer, ServerName};
use sluice_model::{CertStore, KeyAlgorithm, PathMatch, RoutePolicy, Snapshot};
use sluice_proxy::ProxyConfig;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncReadExt;

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn is_fake(cert: &CertificateDer<'_>) -> bool {
    contains(cert.as_ref(), b"Sluice Fake Certificate")
}

async fn web_snapshot(version: u64, certificates: CertStore) -> (Snapshot, SocketAddr) {
    let backend = echo_backend("web").await;
    let web = slot("web", &[backend]);
    let mut snap = snapshot(
        version,
        vec![
            vhost("secure.test", true, vec![prefix("/", &web)]),
            vhost("plain.test", false, vec![prefix("/", &web)]),
            vhost(
                "strict.test",
                true,
                vec![route(
                    PathMatch::exact("/only"),
                    web.clone(),
                    RoutePolicy::default(),
                )],
            ),
        ],
    );
    snap.certificates = certificates;
    (snap, backend)
}

#[tokio::test]
async fn alpn_selects_http2_or_http1_and_tls_hosts_get_hsts() {
    let cert = make_cert(&["secure.test"], KeyAlgorithm::Ecdsa);
    let mut store = CertStore::default();
    store.exact.insert("secure.test".into(), cert_set(&[&cert]));
    let (snap, _) = web_snapshot(1, store).await;
    let proxy = Proxy::start(snap).await;

    let stream = tls_connect(
        proxy.https,
        "secure.test",
        &tls_client(&["h2", "http/1.1"], false),
    )
    .await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(peer_cert(&stream), cert.der);
    let mut h2 = h2_over(stream).await;
    let req = Request::get("https://secure.test/x")
        .version(http::Version::HTTP_2)
        .body(empty())
        .unwrap();
    let response = within("h2 response", h2.send_request(req)).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    let reply = read(response).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.header("strict-transport-security"),
        "max-age=31536000; includeSubDomains"
    );
    assert_eq!(reply.header("echo-x-forwarded-proto"), "https");
    assert_eq!(
        reply.header("echo-x-forwarded-port"),
        proxy.https.port().to_string()
    );
    assert_eq!(reply.header("echo-host"), "secure.test");

    let stream = tls_connect(
        proxy.https,
        "secure.test",
        &tls_client(&["http/1.1"], false),
    )
    .await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut h1 = h1_over(stream).await;
    let reply = read(h1.send_request(request("secure.test", "/")).await.unwrap()).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.headers.contains_key("strict-transport-security"));
    // No redirect loop over TLS, and no HSTS for a host without TLS, nor on 404s of other hosts.
    h1.ready().await.unwrap();
    let reply = read(h1.send_request(request("plain.test", "/")).await.unwrap()).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(!reply.headers.contains_key("strict-transport-security"));
    // A Sluice-generated answer on a TLS host gets HSTS too; one for an unknown host does not.
    h1.ready().await.unwrap();
    let reply = read(
        h1.send_request(request("strict.test", "/missing"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(reply.headers.contains_key("strict-transport-security"));
    h1.ready().await.unwrap();
    let reply = read(h1.send_request(request("nowhere.test", "/")).await.unwrap()).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(!reply.headers.contains_key("strict-transport-security"));
}

#[tokio::test]
async fn dual_certificates_follow_client_capabilities_and_unknown_names_get_the_fallback() {
    let ecdsa = make_cert(&["dual.test"], KeyAlgorithm::Ecdsa);
    let rsa = make_cert(&["dual.test"], KeyAlgorithm::Rsa);
    let wildcard = make_cert(&["*.wild.test"], KeyAlgorithm::Ecdsa);
    let mut store = CertStore::default();
    store
        .exact
        .insert("dual.test".into(), cert_set(&[&rsa, &ecdsa]));
    store
        .wildcard
        .insert("wild.test".into(), cert_set(&[&wildcard]));
    let (snap, _) = web_snapshot(1, store).await;
    let proxy = Proxy::start(snap).await;

    let modern = tls_client(&["http/1.1"], false);
    let rsa_only = tls_client(&["http/1.1"], true);
    let stream = tls_connect(proxy.https, "dual.test", &modern).await;
    assert_eq!(peer_cert(&stream), ecdsa.der, "a modern client gets ECDSA");
    let stream = tls_connect(proxy.https, "DUAL.test", &rsa_only).await;
    assert_eq!(
        stream.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    assert_eq!(
        peer_cert(&stream),
        rsa.der,
        "an ECDHE-RSA-only client gets RSA"
    );
    // The RSA connection carries requests like any other.
    let mut h1 = h1_over(stream).await;
    let reply = read(h1.send_request(request("secure.test", "/")).await.unwrap()).await;
    assert_eq!(reply.status, StatusCode::OK);

    let stream = tls_connect(proxy.https, "x.wild.test", &modern).await;
    assert_eq!(peer_cert(&stream), wildcard.der);
    let stream = tls_connect(proxy.https, "unknown.test", &modern).await;
    assert!(
        is_fake(&peer_cert(&stream)),
        "unknown SNI gets the fake certificate"
    );
    let stream = tls_connect(proxy.https, "unknown.test", &rsa_only).await;
    assert!(
        is_fake(&peer_cert(&stream)),
        "an RSA-only client gets the RSA fake certificate"
    );
}

#[tokio::test]
async fn configured_default_certificate_serves_unknown_names_and_no_sni() {
    let default = make_cert(&["default.test"], KeyAlgorithm::Ecdsa);
    let store = CertStore {
        default: Some(cert_set(&[&default])),
        ..CertStore::default()
    };
    let (snap, _) = web_snapshot(1, store).await;
    let proxy = Proxy::start(snap).await;
    let client = tls_client(&["http/1.1"], false);
    let stream = tls_connect(proxy.https, "unknown.test", &client).await;
    assert_eq!(peer_cert(&stream), default.der);
    // An IP address as server name sends no SNI.
    let tcp = tokio::net::TcpStream::connect(proxy.https).await.unwrap();
    let no_sni = ServerName::IpAddress(proxy.https.ip().into());
    let stream = within("TLS handshake", client.connect(no_sni, tcp))
        .await
        .unwrap();
    assert_eq!(peer_cert(&stream), default.der);
}

#[tokio::test]
async fn renewed_certificate_is_served_from_the_next_handshake_without_dropping_connections() {
    let first = make_cert(&["secure.test"], KeyAlgorithm::Ecdsa);
    let renewed = make_cert(&["secure.test"], KeyAlgorithm::Ecdsa);
    let mut store = CertStore::default();
    store
        .exact
        .insert("secure.test".into(), cert_set(&[&first]));
    let (snap, _) = web_snapshot(1, store.clone()).await;
    let proxy = Proxy::start(snap.clone()).await;
    let client = tls_client(&["http/1.1"], false);

    let stream = tls_connect(proxy.https, "secure.test", &client).await;
    assert_eq!(peer_cert(&stream), first.der);
    let mut open = h1_over(stream).await;
    let reply = read(
        open.send_request(request("secure.test", "/"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);

    let mut next = snap;
    next.version = 2;
    next.certificates
        .exact
        .insert("secure.test".into(), cert_set(&[&renewed]));
    proxy.swap(next);

    // A fresh client: a resumed session would not be shown a certificate at all.
    let fresh_client = tls_client(&["http/1.1"], false);
    let stream = tls_connect(proxy.https, "secure.test", &fresh_client).await;
    assert_eq!(peer_cert(&stream), renewed.der);
    open.ready().await.unwrap();
    let reply = read(
        open.send_request(request("secure.test", "/"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "the old connection still works"
    );
}

#[tokio::test]
async fn a_client_that_never_finishes_the_handshake_is_dropped() {
    let (snap, _) = web_snapshot(1, CertStore::default()).await;
    let config = ProxyConfig {
        tls_handshake_timeout: Duration::from_millis(200),
        ..ProxyConfig::default()
    };
    let proxy = Proxy::start_with(snap, config).await;
    let mut idle = tokio::net::TcpStream::connect(proxy.https).await.unwrap();
    let mut buf = [0u8; 16];
    let read = within("the proxy to close the connection", idle.read(&mut buf)).await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

#[tokio::test]
async fn sessions_resume_across_snapshot_swaps_and_data_planes() {
    let cert = make_cert(&["secure.test"], KeyAlgorithm::Ecdsa);
    let mut store = CertStore::default();
    store.exact.insert("secure.test".into(), cert_set(&[&cert]));
    let (snap, _) = web_snapshot(1, store).await;
    let first = Proxy::start(snap.clone()).await;
    let second = Proxy::start(snap.clone()).await;
    let client = tls_client(&["http/1.1"], false);

    // TLS 1.3 tickets arrive after the handshake: read a response so the client has them.
    let stream = tls_connect(first.https, "secure.test", &client).await;
    assert_eq!(
        stream.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Full)
    );
    let mut h1 = h1_over(stream).await;
    let reply = read(h1.send_request(request("secure.test", "/")).await.unwrap()).await;
    assert_eq!(reply.status, StatusCode::OK);

    let mut next = snap;
    next.version = 2;
    first.swap(next);
    let stream = tls_connect(first.https, "secure.test", &client).await;
    assert_eq!(
        stream.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed),
        "a snapshot swap keeps tickets valid"
    );
    let stream = tls_connect(second.https, "secure.test", &client).await;
    assert_eq!(
        stream.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed),
        "the ticket key is shared by every data plane of the process"
    );
}

#[tokio::test]
async fn websocket_over_tls_is_tunnelled() {
    use futures_util::{SinkExt, StreamExt};
    let cert = make_cert(&["ws.test"], KeyAlgorithm::Ecdsa);
    let ws = slot("ws", &[websocket_backend("ws").await]);
    let mut snap = snapshot(1, vec![vhost("ws.test", true, vec![prefix("/", &ws)])]);
    snap.certificates
        .exact
        .insert("ws.test".into(), cert_set(&[&cert]));
    let proxy = Proxy::start(snap).await;
    let stream = tls_connect(proxy.https, "ws.test", &tls_client(&["http/1.1"], false)).await;
    let (mut socket, response) = within(
        "websocket handshake",
        tokio_tungstenite::client_async("wss://ws.test/socket", stream),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    socket.send("secure".into()).await.unwrap();
    let echoed = within("websocket echo", socket.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(echoed.to_text().unwrap(), "ws:secure");
}

/// The short-connection benchmark's exchange: TLS 1.2 ECDHE-RSA, one request with
/// `Connection: close`. The client reads the whole response and then a clean end: the
/// `close_notify` alert (rustls reports a missing one as an unexpected EOF).
#[tokio::test]
async fn a_closing_request_gets_its_response_then_close_notify() {
    use tokio::io::AsyncWriteExt;
    let cert = make_cert(&["secure.test"], KeyAlgorithm::Rsa);
    let mut store = CertStore::default();
    store.exact.insert("secure.test".into(), cert_set(&[&cert]));
    let (snap, _) = web_snapshot(1, store).await;
    let proxy = Proxy::start(snap).await;

    let mut stream = tls_connect(proxy.https, "secure.test", &tls_client(&[], true)).await;
    stream
        .write_all(b"POST /x HTTP/1.1\r\nHost: secure.test\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello")
        .await
        .unwrap();
    let mut reply = Vec::new();
    within(
        "the response and close_notify",
        stream.read_to_end(&mut reply),
    )
    .await
    .unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.ends_with("\r\n\r\nhello"), "{reply}");
}
