//! Live updates under load: while clients keep sending requests, the manifest directory changes
//! (a route moves to another backend, a host is added, a host is removed, a certificate is
//! renewed). No request may fail, and connections opened before the changes keep working.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const NS: &str = "live";

/// Load generators stop by themselves after this many requests or this long.
const MAX_REQUESTS: usize = 20_000;
const MAX_LOAD_TIME: Duration = Duration::from_secs(60);

/// What one load generator saw: every status in order (0 = transport error) and the errors.
#[derive(Debug, Default)]
struct Seen {
    statuses: Vec<u16>,
    errors: Vec<String>,
}

/// Shared by the load generators of one test: the stop switch and the count of requests sent.
#[derive(Clone, Default)]
struct Traffic {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
}

impl Traffic {
    fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn sent(&self) -> usize {
        self.sent.load(Ordering::SeqCst)
    }

    /// Sends GET `host` in a loop until stopped, on one keep-alive connection or on a new
    /// connection per request. Only statuses and backends that `accept` takes count as success.
    fn spawn(
        &self,
        addr: SocketAddr,
        host: &'static str,
        keep_alive: bool,
        accept: fn(u16, Option<&str>) -> bool,
    ) -> JoinHandle<Seen> {
        let traffic = self.clone();
        tokio::spawn(async move { traffic.run(addr, host, keep_alive, accept).await })
    }

    async fn run(
        self,
        addr: SocketAddr,
        host: &'static str,
        keep_alive: bool,
        accept: fn(u16, Option<&str>) -> bool,
    ) -> Seen {
        let mut seen = Seen::default();
        let started = Instant::now();
        let mut conn: Option<HttpConn> = None;
        while !self.stopped()
            && seen.statuses.len() < MAX_REQUESTS
            && started.elapsed() < MAX_LOAD_TIME
        {
            let n = seen.statuses.len();
            let result = if keep_alive {
                if conn.as_ref().is_some_and(HttpConn::is_closed) {
                    conn = None;
                }
                if conn.is_none() {
                    conn = HttpConn::plain(addr).await.ok();
                }
                match conn.as_mut() {
                    Some(c) => c.get(host, &format!("/load/{n}")).await,
                    None => Err("cannot connect".to_string()),
                }
            } else {
                get(addr, host, &format!("/load/{n}")).await
            };
            match result {
                Ok(r) if accept(r.status, r.backend().as_deref()) => seen.statuses.push(r.status),
                Ok(r) => {
                    seen.statuses.push(r.status);
                    seen.errors.push(format!(
                        "request {n} to {host}: {} {:?}",
                        r.status,
                        r.body.chars().take(100).collect::<String>()
                    ));
                }
                Err(e) => {
                    seen.statuses.push(0);
                    seen.errors.push(format!("request {n} to {host}: {e}"));
                    conn = None;
                }
            }
            self.sent.fetch_add(1, Ordering::SeqCst);
            // Pacing, so several generators and the gateway share two cores fairly.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        seen
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_apply_live_without_failing_requests() {
    let dir = ManifestDir::new();
    let blue = Backend::echo("blue").await;
    let green = Backend::echo("green").await;
    let added = Backend::echo("added").await;
    for b in [&blue, &green, &added] {
        dir.write(&format!("svc-{}.yaml", b.name), &backend_service(NS, b));
    }
    let cert_v1 = TestCert::ecdsa(&["secure.test"]);
    let cert_v2 = TestCert::ecdsa(&["secure.test"]);
    dir.write("secret.yaml", &cert_v1.secret(NS, "secure"));
    let main_ingress = |backend: &str| {
        Ingress::new(NS, "main")
            .rule("main.test", vec![prefix("/", backend)])
            .yaml()
    };
    dir.write("main.yaml", &main_ingress("blue"));
    dir.write(
        "doomed.yaml",
        &Ingress::new(NS, "doomed")
            .rule("doomed.test", vec![prefix("/", "blue")])
            .yaml(),
    );
    dir.write(
        "secure.yaml",
        &Ingress::new(NS, "secure")
            .tls(&["secure.test"], "secure")
            .rule("secure.test", vec![prefix("/", "blue")])
            .yaml(),
    );
    let gw = Gateway::start(&dir, &[]).await;
    assert_eq!(gw.backend_of("main.test", "/").await, "blue");
    assert_eq!(gw.status_of("added.test", "/").await, 404);

    // Connections opened before any change.
    let mut keep_alive = HttpConn::plain(gw.http)
        .await
        .expect("keep-alive connection");
    let r = keep_alive
        .get("main.test", "/before")
        .await
        .expect("keep-alive request");
    assert_eq!(r.backend().as_deref(), Some("blue"));
    let (mut h2, session) = HttpConn::tls(gw.https, "secure.test", tls_client(&[b"h2"]))
        .await
        .expect("HTTP/2 connection");
    assert!(
        session.peer_cert == cert_v1.der,
        "secure.test must start with certificate v1"
    );
    let r = h2
        .get("secure.test", "/before")
        .await
        .expect("HTTP/2 request");
    assert_eq!((r.status, r.version), (200, http::Version::HTTP_2));
    let tcp = tokio::net::TcpStream::connect(gw.http)
        .await
        .expect("connect");
    let request = "ws://main.test/socket"
        .into_client_request()
        .expect("ws request");
    let (mut ws, _) = tokio_tungstenite::client_async(request, tcp)
        .await
        .expect("WebSocket through the gateway");
    ws.send(Message::text("before")).await.expect("ws send");
    let reply = ws.next().await.expect("ws open").expect("ws reply");
    assert_eq!(reply.into_text().expect("text").as_str(), "blue: before");

    // Load while the directory changes.
    let traffic = Traffic::default();
    let main_ok = |status: u16, backend: Option<&str>| {
        status == 200 && matches!(backend, Some("blue" | "green"))
    };
    let doomed_ok = |status: u16, backend: Option<&str>| {
        (status == 200 && backend == Some("blue")) || status == 404
    };
    let loads = [
        traffic.spawn(gw.http, "main.test", true, main_ok),
        traffic.spawn(gw.http, "main.test", false, main_ok),
        traffic.spawn(gw.http, "doomed.test", true, doomed_ok),
    ];
    let secure_load = {
        let (addr, traffic) = (gw.https, traffic.clone());
        tokio::spawn(async move {
            let mut errors = Vec::new();
            let mut count = 0usize;
            let started = Instant::now();
            while !traffic.stopped() && count < MAX_REQUESTS && started.elapsed() < MAX_LOAD_TIME {
                count += 1;
                match get_tls(addr, "secure.test", "/load").await {
                    Ok(r) if r.status == 200 => {}
                    Ok(r) => errors.push(format!("https request {count}: {} {}", r.status, r.body)),
                    Err(e) => errors.push(format!("https request {count}: {e}")),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (count, errors)
        })
    };

    // 1. The route moves to another backend.
    dir.write("main.yaml", &main_ingress("green"));
    gw.wait_backend("main.test", "/", "green").await;
    // 2. A host is added.
    dir.write(
        "added.yaml",
        &Ingress::new(NS, "added")
            .rule("added.test", vec![prefix("/", "added")])
            .yaml(),
    );
    gw.wait_backend("added.test", "/", "added").await;
    // 3. A host is removed.
    dir.remove("doomed.yaml");
    gw.wait_status("doomed.test", "/", 404).await;
    // 4. The certificate is renewed: the next handshake presents it.
    dir.write("secret.yaml", &cert_v2.secret(NS, "secure"));
    wait_for("the renewed certificate to be served", async || {
        let s = tls_handshake(gw.https, "secure.test", default_tls_client())
            .await
            .ok()?;
        (s.peer_cert == cert_v2.der).then_some(())
    })
    .await;
    for _ in 0..3 {
        let s = tls_handshake(gw.https, "secure.test", default_tls_client())
            .await
            .expect("handshake after renewal");
        assert!(
            s.peer_cert == cert_v2.der,
            "every new handshake gets the renewed certificate"
        );
    }
    let version = gw.version().await;
    assert!(
        version >= 5,
        "expected at least 5 applied versions, got {version}"
    );
    // The generators keep going on the final state for a while (counted, not timed).
    let mark = traffic.sent();
    wait_for("300 more requests on the final configuration", async || {
        (traffic.sent() >= mark + 300).then_some(())
    })
    .await;
    for _ in 0..20 {
        assert_eq!(gw.backend_of("main.test", "/after").await, "green");
    }
    traffic.stop();

    let mut total = 0;
    for (i, handle) in loads.into_iter().enumerate() {
        let seen = handle.await.expect("load generator");
        eprintln!("load generator {i}: {} requests", seen.statuses.len());
        total += seen.statuses.len();
        assert!(
            seen.errors.is_empty(),
            "load generator {i}: {} failures of {}, first: {:#?}",
            seen.errors.len(),
            seen.statuses.len(),
            &seen.errors[..seen.errors.len().min(10)]
        );
        assert!(
            seen.statuses.len() >= 10,
            "load generator {i} sent too few requests"
        );
        if i == 2 {
            // The removed host: served until the removal applied, then 404 for good.
            let first_404 = seen.statuses.iter().position(|s| *s == 404);
            let first_404 = first_404.expect("doomed.test never answered 404");
            assert!(first_404 > 0, "doomed.test was never served before removal");
            assert!(
                seen.statuses[first_404..].iter().all(|s| *s == 404),
                "doomed.test came back after its removal: {:?}",
                seen.statuses
            );
        }
    }
    let (https_count, https_errors) = secure_load.await.expect("https load");
    assert!(
        https_errors.is_empty(),
        "{} of {https_count} HTTPS requests failed: {:#?}",
        https_errors.len(),
        &https_errors[..https_errors.len().min(10)]
    );
    assert!(
        total >= 30,
        "the load generators sent only {total} requests"
    );

    // Connections opened before the changes still work, and see the new routes.
    let r = keep_alive
        .get("main.test", "/after")
        .await
        .expect("old keep-alive connection");
    assert_eq!(r.backend().as_deref(), Some("green"));
    let r = keep_alive
        .get("added.test", "/after")
        .await
        .expect("old keep-alive connection");
    assert_eq!(r.backend().as_deref(), Some("added"));
    let r = h2
        .get("secure.test", "/after")
        .await
        .expect("old HTTP/2 connection");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.version, http::Version::HTTP_2);
    // The WebSocket stays with the backend it was opened to.
    ws.send(Message::text("after"))
        .await
        .expect("ws send after changes");
    let reply = tokio::time::timeout(Duration::from_secs(15), ws.next())
        .await
        .expect("ws reply timed out")
        .expect("ws open")
        .expect("ws reply");
    assert_eq!(reply.into_text().expect("text").as_str(), "blue: after");
    ws.close(None).await.expect("ws close");
}

/// Endpoint-only changes (a pod replaced) apply live too, without a new snapshot version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_changes_apply_live() {
    let dir = ManifestDir::new();
    let old_pod = Backend::echo("old-pod").await;
    let new_pod = Backend::echo("new-pod").await;
    dir.write(
        "svc.yaml",
        &service_with_slices(NS, "app", &[(old_pod.port(), true)]),
    );
    dir.write(
        "ing.yaml",
        &Ingress::new(NS, "app")
            .rule("app.test", vec![prefix("/", "app")])
            .yaml(),
    );
    let gw = Gateway::start(&dir, &[]).await;
    assert_eq!(gw.backend_of("app.test", "/").await, "old-pod");
    let traffic = Traffic::default();
    let generator = traffic.spawn(gw.http, "app.test", true, |s, b| {
        s == 200 && matches!(b, Some("old-pod" | "new-pod"))
    });
    // Rolling update: the new pod joins, then the old one leaves.
    dir.write(
        "svc.yaml",
        &service_with_slices(NS, "app", &[(old_pod.port(), true), (new_pod.port(), true)]),
    );
    gw.wait_backend("app.test", "/", "new-pod").await;
    dir.write(
        "svc.yaml",
        &service_with_slices(NS, "app", &[(new_pod.port(), true)]),
    );
    wait_for("the old pod to leave", async || {
        let routes = gw.routes("app.test").await;
        (routes.len() == 1 && routes[0]["endpoints"].as_array()?.len() == 1).then_some(())
    })
    .await;
    traffic.stop();
    let seen = generator.await.expect("load generator");
    assert!(
        seen.errors.is_empty(),
        "{} failures: {:#?}",
        seen.errors.len(),
        &seen.errors[..seen.errors.len().min(10)]
    );
    let old_hits = old_pod.hits();
    for _ in 0..20 {
        assert_eq!(gw.backend_of("app.test", "/").await, "new-pod");
    }
    assert_eq!(
        old_pod.hits(),
        old_hits,
        "the removed endpoint still got traffic"
    );
}
