//! TLS through the real gateway: dual ECDSA/RSA certificates chosen per client, the default
//! certificate for unknown names, ALPN HTTP/2 and HTTP/1.1, the https redirect and HSTS.

mod common;

use common::*;
use http::Version;

const NS: &str = "tls";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// One host with an ECDSA and an RSA certificate: a modern client gets ECDSA, a TLS 1.2 client
/// that only offers ECDHE-RSA gets RSA; an unknown SNI gets the generated fake certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_certificates_and_fake_default() {
    let dir = ManifestDir::new();
    let app = Backend::echo("app").await;
    let ecdsa = TestCert::ecdsa(&["dual.test"]);
    let rsa = TestCert::rsa(&["dual.test"]);
    dir.write("svc.yaml", &backend_service(NS, &app));
    dir.write(
        "secrets.yaml",
        &docs(&[ecdsa.secret(NS, "dual-ecdsa"), rsa.secret(NS, "dual-rsa")]),
    );
    dir.write(
        "ing.yaml",
        &Ingress::new(NS, "dual")
            .tls(&["dual.test"], "dual-ecdsa")
            .tls(&["dual.test"], "dual-rsa")
            .rule("dual.test", vec![prefix("/", "app")])
            .yaml(),
    );
    let gw = Gateway::start(&dir, &[]).await;

    let modern = tls_handshake(gw.https, "dual.test", default_tls_client())
        .await
        .expect("TLS handshake, default client");
    assert!(
        modern.peer_cert == ecdsa.der,
        "a client supporting ECDSA must get the ECDSA certificate"
    );
    assert_eq!(modern.version, Some(rustls::ProtocolVersion::TLSv1_3));

    let old = tls_handshake(gw.https, "dual.test", rsa_only_tls12_client())
        .await
        .expect("TLS handshake, ECDHE-RSA-only TLS 1.2 client");
    assert!(
        old.peer_cert == rsa.der,
        "an ECDHE-RSA-only client must get the RSA certificate"
    );
    assert_eq!(old.version, Some(rustls::ProtocolVersion::TLSv1_2));
    assert_eq!(
        old.cipher_suite,
        Some(rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)
    );

    // A TLS 1.2 client that can do ECDSA gets ECDSA; SNI is case-insensitive.
    let tls12 = tls_handshake(gw.https, "dual.test", tls12_client())
        .await
        .expect("TLS 1.2 handshake");
    assert_eq!(tls12.version, Some(rustls::ProtocolVersion::TLSv1_2));
    assert!(
        tls12.peer_cert == ecdsa.der,
        "a TLS 1.2 client supporting ECDSA must get the ECDSA certificate"
    );
    let upper = tls_handshake(gw.https, "DUAL.Test", default_tls_client())
        .await
        .expect("handshake with an upper-case SNI");
    assert!(
        upper.peer_cert == ecdsa.der,
        "SNI must match case-insensitively"
    );

    // Both kinds of client get real answers from the backend, with HSTS.
    for (what, config) in [
        ("default client", default_tls_client()),
        ("RSA-only client", rsa_only_tls12_client()),
    ] {
        let (mut conn, _) = HttpConn::tls(gw.https, "dual.test", config)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let r = conn
            .get("dual.test", "/x")
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(r.status, 200, "{what}: {}", r.body);
        assert_eq!(r.backend().as_deref(), Some("app"), "{what}");
        assert_eq!(
            r.upstream_header("x-forwarded-proto").as_deref(),
            Some("https")
        );
        let hsts = r.header("strict-transport-security").unwrap_or_default();
        assert!(hsts.contains("max-age=31536000"), "{what}: HSTS {hsts:?}");
    }

    // An unknown name gets the generated fake certificate, for either kind of client.
    for config in [default_tls_client(), rsa_only_tls12_client()] {
        let unknown = tls_handshake(gw.https, "unknown.test", config)
            .await
            .expect("TLS handshake with an unknown SNI");
        assert!(unknown.peer_cert != ecdsa.der && unknown.peer_cert != rsa.der);
        assert!(
            contains(&unknown.peer_cert, b"Sluice Fake Certificate"),
            "unknown SNI must get the fake certificate"
        );
    }
}

/// `--default-ssl-certificate ns/name` replaces the fake certificate for unknown names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_ssl_certificate_flag() {
    let dir = ManifestDir::new();
    let app = Backend::echo("app").await;
    let fallback = TestCert::ecdsa(&["fallback.test"]);
    let own = TestCert::ecdsa(&["own.test"]);
    dir.write("svc.yaml", &backend_service(NS, &app));
    dir.write(
        "secrets.yaml",
        &docs(&[fallback.secret("certs", "fallback"), own.secret(NS, "own")]),
    );
    dir.write(
        "ing.yaml",
        &Ingress::new(NS, "own")
            .tls(&["own.test"], "own")
            .rule("own.test", vec![prefix("/", "app")])
            .yaml(),
    );
    let wildcard = TestCert::ecdsa(&["*.wild.test"]);
    dir.write(
        "wild.yaml",
        &docs(&[
            wildcard.secret(NS, "wild"),
            Ingress::new(NS, "wild")
                .tls(&["*.wild.test"], "wild")
                .rule("*.wild.test", vec![prefix("/", "app")])
                .yaml(),
        ]),
    );
    let gw = Gateway::start(&dir, &["--default-ssl-certificate", "certs/fallback"]).await;
    // A wildcard certificate covers one label, like the wildcard host.
    let s = tls_handshake(gw.https, "a.wild.test", default_tls_client())
        .await
        .expect("handshake, a.wild.test");
    assert!(
        s.peer_cert == wildcard.der,
        "a.wild.test must get the wildcard certificate"
    );
    let s = tls_handshake(gw.https, "a.b.wild.test", default_tls_client())
        .await
        .expect("handshake, a.b.wild.test");
    assert!(
        s.peer_cert == fallback.der,
        "a.b.wild.test is not covered by *.wild.test"
    );
    let s = tls_handshake(gw.https, "elsewhere.test", default_tls_client())
        .await
        .expect("handshake, unknown SNI");
    assert!(
        s.peer_cert == fallback.der,
        "unknown SNI must get the --default-ssl-certificate"
    );
    let s = tls_handshake(gw.https, "own.test", default_tls_client())
        .await
        .expect("handshake, own.test");
    assert!(
        s.peer_cert == own.der,
        "own.test must get its own certificate"
    );
    let r = gw
        .get_tls("own.test", "/")
        .await
        .expect("GET https://own.test/");
    assert_eq!(r.backend().as_deref(), Some("app"));
}

/// ALPN: h2 and http/1.1 both work over TLS, on the same listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_and_http11_over_tls() {
    let dir = ManifestDir::new();
    let app = Backend::echo("app").await;
    let cert = TestCert::ecdsa(&["alpn.test"]);
    dir.write("svc.yaml", &backend_service(NS, &app));
    dir.write("secret.yaml", &cert.secret(NS, "alpn"));
    dir.write(
        "ing.yaml",
        &Ingress::new(NS, "alpn")
            .tls(&["alpn.test"], "alpn")
            .rule("alpn.test", vec![prefix("/", "app")])
            .yaml(),
    );
    let gw = Gateway::start(&dir, &[]).await;

    let (mut h2, session) = HttpConn::tls(gw.https, "alpn.test", tls_client(&[b"h2"]))
        .await
        .expect("TLS with ALPN h2");
    assert_eq!(session.alpn.as_deref(), Some(&b"h2"[..]));
    // Several requests multiplexed on one HTTP/2 connection.
    for i in 0..5 {
        let r = h2
            .get("alpn.test", &format!("/h2/{i}"))
            .await
            .expect("HTTP/2 request");
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.version, Version::HTTP_2);
        assert_eq!(r.backend().as_deref(), Some("app"));
        let echo = r.echo().expect("echo answer");
        assert_eq!(echo["path"], format!("/h2/{i}"));
        assert_eq!(
            echo["headers"]["host"], "alpn.test",
            "Host upstream: {echo}"
        );
    }

    let (mut h1, session) = HttpConn::tls(gw.https, "alpn.test", tls_client(&[b"http/1.1"]))
        .await
        .expect("TLS with ALPN http/1.1");
    assert_eq!(session.alpn.as_deref(), Some(&b"http/1.1"[..]));
    for i in 0..3 {
        let r = h1
            .get("alpn.test", &format!("/h1/{i}"))
            .await
            .expect("HTTP/1.1 request");
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.version, Version::HTTP_11);
        assert_eq!(r.backend().as_deref(), Some("app"));
    }

    // No ALPN at all: HTTP/1.1.
    let (mut plain, session) = HttpConn::tls(gw.https, "alpn.test", tls_client(&[]))
        .await
        .expect("TLS without ALPN");
    assert_eq!(session.alpn, None);
    let r = plain
        .get("alpn.test", "/none")
        .await
        .expect("request without ALPN");
    assert_eq!(r.status, 200);
    assert_eq!(r.version, Version::HTTP_11);
}

/// TLS hosts redirect plain HTTP with 308 (unless ssl-redirect is "false"); HSTS only over TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_redirect_and_hsts() {
    let dir = ManifestDir::new();
    let app = Backend::echo("app").await;
    let cert = TestCert::ecdsa(&["secure.test", "relaxed.test"]);
    dir.write("svc.yaml", &backend_service(NS, &app));
    dir.write("secret.yaml", &cert.secret(NS, "both"));
    dir.write(
        "secure.yaml",
        &Ingress::new(NS, "secure")
            .tls(&["secure.test"], "both")
            .rule("secure.test", vec![prefix("/", "app")])
            .yaml(),
    );
    dir.write(
        "relaxed.yaml",
        &Ingress::new(NS, "relaxed")
            .annotation("nginx.ingress.kubernetes.io/ssl-redirect", "false")
            .tls(&["relaxed.test"], "both")
            .rule("relaxed.test", vec![prefix("/", "app")])
            .yaml(),
    );
    dir.write(
        "plain.yaml",
        &Ingress::new(NS, "plain")
            .rule("plain.test", vec![prefix("/", "app")])
            .yaml(),
    );
    let gw = Gateway::start(&dir, &[]).await;

    let r = gw
        .get("secure.test", "/some/path?q=1")
        .await
        .expect("GET http://secure.test");
    assert_eq!(r.status, 308, "{}", r.body);
    // ingress-nginx redirects to the default https port; a port in the target is tolerated.
    let location = r.header("location").unwrap_or_default();
    assert!(
        location.starts_with("https://secure.test") && location.ends_with("/some/path?q=1"),
        "redirect target {location:?}"
    );
    assert_eq!(
        app.hits(),
        0,
        "a redirected request must not reach the backend"
    );

    let r = gw
        .get_tls("secure.test", "/some/path")
        .await
        .expect("GET https://secure.test");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.header("strict-transport-security")
            .is_some_and(|v| v.contains("max-age=31536000")),
        "HSTS on TLS responses: {:?}",
        r.headers
    );

    assert_eq!(gw.backend_of("relaxed.test", "/").await, "app");
    let r = gw
        .get("plain.test", "/")
        .await
        .expect("GET http://plain.test");
    assert_eq!(r.status, 200);
    assert!(
        r.header("strict-transport-security").is_none(),
        "no HSTS over plain HTTP"
    );
    let r = gw
        .get("relaxed.test", "/")
        .await
        .expect("GET http://relaxed.test");
    assert!(
        r.header("strict-transport-security").is_none(),
        "no HSTS over plain HTTP"
    );
}

/// A WebSocket over TLS (wss://, ALPN http/1.1) goes through to the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_over_tls() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let dir = ManifestDir::new();
    let app = Backend::echo("wss").await;
    let cert = TestCert::ecdsa(&["wss.test"]);
    dir.write("svc.yaml", &backend_service(NS, &app));
    dir.write("secret.yaml", &cert.secret(NS, "wss"));
    dir.write(
        "ing.yaml",
        &Ingress::new(NS, "wss")
            .tls(&["wss.test"], "wss")
            .rule("wss.test", vec![prefix("/", "wss")])
            .yaml(),
    );
    let gw = Gateway::start(&dir, &[]).await;
    let (stream, session) = tls_stream(gw.https, "wss.test", tls_client(&[b"http/1.1"]))
        .await
        .expect("TLS to wss.test");
    assert!(session.peer_cert == cert.der);
    let request = "wss://wss.test/socket"
        .into_client_request()
        .expect("wss request");
    let (mut ws, resp) = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        tokio_tungstenite::client_async(request, stream),
    )
    .await
    .expect("WebSocket handshake timed out")
    .expect("WebSocket handshake over TLS");
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("secure hello")).await.expect("send");
    let reply = tokio::time::timeout(std::time::Duration::from_secs(15), ws.next())
        .await
        .expect("reply timed out")
        .expect("connection open")
        .expect("reply");
    assert_eq!(
        reply.into_text().expect("text").as_str(),
        "wss: secure hello"
    );
}
