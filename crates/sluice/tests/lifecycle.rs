//! What the gateway says when it cannot forward (404/502/503/504), what it tells the upstream
//! (forwarding headers), and how it stops (SIGTERM drain).

mod common;

use common::*;
use std::time::{Duration, Instant};

const NS: &str = "life";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_statuses_have_bodies() {
    let dir = ManifestDir::new();
    let ok = Backend::echo("ok").await;
    let silent = Backend::never_answers("silent").await;
    let refused = refused_port().await;
    dir.write("svc-ok.yaml", &backend_service(NS, &ok));
    dir.write("svc-silent.yaml", &backend_service(NS, &silent));
    dir.write(
        "svc-refused.yaml",
        &service_with_slices(NS, "refused", &[(refused, true)]),
    );
    dir.write(
        "svc-unready.yaml",
        &service_with_slices(NS, "unready", &[(ok.port(), false)]),
    );
    dir.write(
        "errors.yaml",
        &Ingress::new(NS, "errors")
            .rule(
                "errors.test",
                vec![
                    exact("/ok", "ok"),
                    prefix("/missing", "no-such-service"),
                    prefix("/unready", "unready"),
                    prefix("/refused", "refused"),
                ],
            )
            .yaml(),
    );
    dir.write(
        "timeout.yaml",
        &Ingress::new(NS, "timeout")
            .annotation("nginx.ingress.kubernetes.io/proxy-read-timeout", "1")
            .rule("timeout.test", vec![prefix("/", "silent")])
            .yaml(),
    );
    let gw = Gateway::start(&dir, &[]).await;

    assert_eq!(gw.backend_of("errors.test", "/ok").await, "ok");
    // status_of also checks that each error page comes from Sluice and has a body.
    assert_eq!(gw.status_of("unknown.test", "/").await, 404, "unknown host");
    assert_eq!(
        gw.status_of("errors.test", "/nothing-here").await,
        404,
        "unknown path"
    );
    assert_eq!(
        gw.status_of("errors.test", "/missing").await,
        503,
        "missing Service"
    );
    assert_eq!(
        gw.status_of("errors.test", "/unready").await,
        503,
        "no ready endpoint"
    );
    assert_eq!(
        gw.status_of("errors.test", "/refused").await,
        502,
        "connection refused"
    );
    let started = Instant::now();
    assert_eq!(
        gw.status_of("timeout.test", "/").await,
        504,
        "upstream timeout"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "proxy-read-timeout 1 s answered 504 after {took:?}"
    );
    assert!(
        silent.hits() >= 1,
        "the silent backend was never connected to"
    );

    // The admin API says why a route cannot serve.
    let routes = gw.routes("errors.test").await;
    let missing = routes
        .iter()
        .find(|r| r["path"] == "/missing")
        .unwrap_or_else(|| panic!("no /missing route: {routes:#?}"));
    assert!(missing["unavailable"].is_string(), "{missing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_reach_the_upstream() {
    let dir = ManifestDir::new();
    let app = Backend::echo("app").await;
    let cert = TestCert::ecdsa(&["fwd.test"]);
    dir.write("svc.yaml", &backend_service(NS, &app));
    dir.write("secret.yaml", &cert.secret(NS, "fwd"));
    dir.write(
        "ing.yaml",
        &Ingress::new(NS, "fwd")
            .annotation("nginx.ingress.kubernetes.io/ssl-redirect", "false")
            .tls(&["fwd.test"], "fwd")
            .rule("fwd.test", vec![prefix("/", "app")])
            .yaml(),
    );
    let gw = Gateway::start(&dir, &[]).await;

    let r = get_with(
        gw.http,
        "fwd.test",
        "/path?x=1",
        &[("connection", "keep-alive, x-hop"), ("x-hop", "secret")],
    )
    .await
    .expect("GET http://fwd.test");
    assert_eq!(r.status, 200, "{}", r.body);
    let echo = r.echo().expect("echo answer");
    assert_eq!(echo["path"], "/path?x=1");
    let h = |name: &str| r.upstream_header(name);
    assert_eq!(
        h("host").as_deref(),
        Some("fwd.test"),
        "Host unchanged: {echo}"
    );
    assert_eq!(h("x-forwarded-for").as_deref(), Some("127.0.0.1"), "{echo}");
    assert_eq!(h("x-real-ip").as_deref(), Some("127.0.0.1"), "{echo}");
    assert_eq!(h("x-forwarded-proto").as_deref(), Some("http"), "{echo}");
    assert_eq!(h("x-forwarded-host").as_deref(), Some("fwd.test"), "{echo}");
    assert_eq!(
        h("x-forwarded-port"),
        Some(gw.http.port().to_string()),
        "{echo}"
    );
    let id = h("x-request-id").unwrap_or_default();
    assert!(!id.is_empty(), "X-Request-ID must be generated: {echo}");
    assert!(
        h("x-hop").is_none(),
        "headers named in Connection are hop-by-hop: {echo}"
    );

    // Each request gets its own id.
    let again = gw.get("fwd.test", "/").await.expect("second request");
    assert_ne!(
        again.upstream_header("x-request-id").unwrap_or_default(),
        id
    );

    let r = gw
        .get_tls("fwd.test", "/tls")
        .await
        .expect("GET https://fwd.test");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.upstream_header("x-forwarded-proto").as_deref(),
        Some("https")
    );
    assert_eq!(
        r.upstream_header("x-forwarded-port"),
        Some(gw.https.port().to_string())
    );
    assert_eq!(r.upstream_header("host").as_deref(), Some("fwd.test"));
}

/// SIGTERM: /healthz turns 500, listeners keep serving for the drain delay, the in-flight
/// request finishes, the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_then_exits_cleanly() {
    let dir = ManifestDir::new();
    let app = Backend::echo("app").await;
    dir.write("svc.yaml", &backend_service(NS, &app));
    dir.write(
        "ing.yaml",
        &Ingress::new(NS, "drain")
            .rule("drain.test", vec![prefix("/", "app")])
            .yaml(),
    );
    let mut gw = Gateway::start(&dir, &["--drain-delay", "3s"]).await;
    let health = gw.admin_get("/healthz").await.expect("healthz");
    assert_eq!(health.status, 200);

    // A slow request in flight: the backend holds it for 4 s, longer than the drain delay.
    let http = gw.http;
    let slow = tokio::spawn(async move {
        get_with(http, "drain.test", "/slow", &[("x-echo-delay-ms", "4000")]).await
    });
    wait_for("the slow request to reach the backend", async || {
        (app.hits() >= 1).then_some(())
    })
    .await;

    gw.terminate();
    wait_for("/healthz to answer 500", async || {
        (gw.admin_get("/healthz").await.ok()?.status == 500).then_some(())
    })
    .await;
    // Still serving during the drain delay.
    let r = gw
        .get("drain.test", "/during-drain")
        .await
        .expect("request during drain");
    assert_eq!(r.status, 200, "{}", r.body);

    let slow = slow
        .await
        .expect("slow request task")
        .expect("slow request");
    assert_eq!(
        slow.status, 200,
        "the in-flight request must finish: {}",
        slow.body
    );
    assert_eq!(slow.backend().as_deref(), Some("app"));

    let status = gw.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    assert!(
        gw.get("drain.test", "/").await.is_err(),
        "nothing may be listening after exit"
    );
}

/// Start-up failures say what is wrong and exit 2 at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_errors_are_explained() {
    let dir = ManifestDir::new();
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let taken_addr = taken.local_addr().expect("address").to_string();
    let missing_dir = dir.path().join("does-not-exist");
    let cases: [(&str, Vec<String>, &[&str]); 2] = [
        (
            "HTTP port in use",
            vec![
                "--manifests".into(),
                dir.path().display().to_string(),
                "--http-listen".into(),
                taken_addr.clone(),
            ],
            &[taken_addr.as_str(), "--http-listen"],
        ),
        (
            "missing manifest directory",
            vec![
                "--manifests".into(),
                missing_dir.display().to_string(),
                "--http-listen".into(),
                "127.0.0.1:0".into(),
            ],
            &["does-not-exist"],
        ),
    ];
    for (what, args, must_say) in cases {
        let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("serve")
            .args(&args)
            .args([
                "--https-listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .env("NO_COLOR", "1")
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(20), run)
            .await
            .unwrap_or_else(|_| panic!("{what}: sluice did not exit"))
            .expect("run sluice");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
        for needle in must_say {
            assert!(
                stderr.contains(needle),
                "{what}: must mention {needle:?}: {stderr}"
            );
        }
    }
    drop(taken);
}
