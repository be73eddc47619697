//! Tengine-Ingress's per-host extras, end to end: `ssl-protocols` refused at the handshake,
//! `disable-robots`, the referrer lists of the ConfigMap (applied live), HSTS and redirects with
//! `X-Client-Scheme` from trusted proxies only, and the `/status.tengine` health answer.

mod common;

use common::*;
use serde_json::json;

const NS: &str = "hosts";
const PREFIX: &str = "nginx.ingress.kubernetes.io/";
const CONFIGMAP: &str = "hosts/sluice-options";

fn configmap(data: serde_json::Value) -> String {
    to_yaml(&json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "sluice-options", "namespace": NS},
        "data": data,
    }))
}

fn ann(name: &str) -> String {
    format!("{PREFIX}{name}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_protocols_refuse_other_versions_during_the_handshake() {
    let web = Backend::echo("web").await;
    let cert = TestCert::ecdsa(&["only13.test", "only12.test", "any.test"]);
    let dir = ManifestDir::new();
    dir.write("web.yaml", &backend_service(NS, &web));
    dir.write("cert.yaml", &cert.secret(NS, "cert"));
    let host = |name: &str, host: &str, protocols: Option<&str>| {
        let mut ingress = Ingress::new(NS, name)
            .rule(host, vec![prefix("/", "web")])
            .tls(&[host], "cert");
        if let Some(p) = protocols {
            ingress = ingress.annotation(&ann("ssl-protocols"), p);
        }
        ingress.yaml()
    };
    dir.write("a.yaml", &host("a", "only13.test", Some("TLSv1.3")));
    dir.write("b.yaml", &host("b", "only12.test", Some("TLSv1 TLSv1.2")));
    dir.write("c.yaml", &host("c", "any.test", None));
    let gw = Gateway::start(&dir, &[]).await;

    let refused = tls_handshake(gw.https, "only13.test", tls12_client())
        .await
        .expect_err("a TLS 1.2 client must be refused by a TLSv1.3-only host");
    assert!(refused.contains("ProtocolVersion"), "{refused}");
    let ok = tls_handshake(gw.https, "only13.test", tls13_client())
        .await
        .expect("TLS 1.3 is allowed");
    assert_eq!(ok.version, Some(rustls::ProtocolVersion::TLSv1_3));

    let refused = tls_handshake(gw.https, "only12.test", tls13_client())
        .await
        .expect_err("a TLS 1.3-only client must be refused by a TLSv1.2 host");
    assert!(refused.contains("ProtocolVersion"), "{refused}");
    let ok = tls_handshake(gw.https, "only12.test", default_tls_client())
        .await
        .expect("a client offering both gets TLS 1.2");
    assert_eq!(ok.version, Some(rustls::ProtocolVersion::TLSv1_2));

    for client in [tls12_client(), tls13_client()] {
        tls_handshake(gw.https, "any.test", client)
            .await
            .expect("hosts without ssl-protocols accept both versions");
    }

    // Live: dropping the annotation lets TLS 1.2 in again.
    dir.write("a.yaml", &host("a", "only13.test", None));
    wait_for("TLS 1.2 accepted again", async || {
        tls_handshake(gw.https, "only13.test", tls12_client())
            .await
            .ok()
    })
    .await;

    // A name that is no TLS version rejects the Ingress, with the reason.
    dir.write("c.yaml", &host("c", "any.test", Some("TLSv9")));
    gw.wait_problem("bad ssl-protocols", |p| {
        p["reason"].as_str().is_some_and(|r| r.contains("TLSv9"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_robots_answers_robots_txt_and_proxies_everything_else() {
    let web = Backend::echo("web").await;
    let dir = ManifestDir::new();
    dir.write("web.yaml", &backend_service(NS, &web));
    dir.write(
        "robots.yaml",
        &Ingress::new(NS, "robots")
            .annotation(&ann("disable-robots"), "true")
            .rule("norobots.test", vec![prefix("/", "web")])
            .yaml(),
    );
    dir.write(
        "plain.yaml",
        &Ingress::new(NS, "plain")
            .rule("robots.test", vec![prefix("/", "web")])
            .yaml(),
    );
    let gw = Gateway::start(&dir, &[]).await;

    let r = gw.get("norobots.test", "/robots.txt").await.expect("GET");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "User-agent: *\nDisallow: /\n");
    assert!(r.backend().is_none());
    assert_eq!(gw.backend_of("norobots.test", "/robots.txt2").await, "web");
    assert_eq!(gw.backend_of("norobots.test", "/x/robots.txt").await, "web");
    assert_eq!(gw.backend_of("robots.test", "/robots.txt").await, "web");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrer_lists_drop_untagged_origins_and_apply_live() {
    let web = Backend::echo("web").await;
    let dir = ManifestDir::new();
    dir.write("web.yaml", &backend_service(NS, &web));
    dir.write(
        "cm.yaml",
        &configmap(json!({"ingress-referrer": "portal, ops"})),
    );
    let tagged = |name: &str, host: &str, tag: &str| {
        Ingress::new(NS, name)
            .annotation(&ann("ingress-referrer"), tag)
            .rule(host, vec![prefix("/", "web")])
            .yaml()
    };
    dir.write("a.yaml", &tagged("a", "portal.test", "portal"));
    dir.write("b.yaml", &tagged("b", "rogue.test", "rogue"));
    dir.write(
        "c.yaml",
        &Ingress::new(NS, "c")
            .rule("untagged.test", vec![prefix("/", "web")])
            .yaml(),
    );
    let gw = Gateway::start(&dir, &["--configmap", CONFIGMAP]).await;
    assert_eq!(gw.backend_of("portal.test", "/").await, "web");
    assert_eq!(gw.backend_of("untagged.test", "/").await, "web");
    assert_eq!(gw.status_of("rogue.test", "/").await, 404);
    let problem = gw
        .wait_problem("referrer rejection", |p| {
            p["object"]["name"] == "b" && p["reason"].as_str().is_some_and(|r| r.contains("rogue"))
        })
        .await;
    assert_eq!(problem["severity"], "rejected", "{problem}");

    // ConfigMap changes apply live; an empty list turns the check off.
    dir.write("cm.yaml", &configmap(json!({"ingress-referrer": ""})));
    gw.wait_backend("rogue.test", "/", "web").await;
    dir.write("cm.yaml", &configmap(json!({"ingress-referrer": "portal"})));
    gw.wait_status("rogue.test", "/", 404).await;

    // canary-referrer only judges canaries: a primary with the tag is served.
    dir.write(
        "cm.yaml",
        &configmap(json!({"ingress-referrer": "portal", "canary-referrer": "blue"})),
    );
    dir.write(
        "d.yaml",
        &Ingress::new(NS, "d")
            .annotation(&ann("canary-referrer"), "green")
            .rule("primary.test", vec![prefix("/", "web")])
            .yaml(),
    );
    gw.wait_backend("primary.test", "/", "web").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_redirect_and_hsts_trust_x_client_scheme_only_from_trusted_proxies() {
    let web = Backend::echo("web").await;
    let cert = TestCert::ecdsa(&["secure.test", "lax.test"]);
    let dir = ManifestDir::new();
    dir.write("web.yaml", &backend_service(NS, &web));
    dir.write("cert.yaml", &cert.secret(NS, "cert"));
    dir.write(
        "secure.yaml",
        &Ingress::new(NS, "secure")
            .rule("secure.test", vec![prefix("/", "web")])
            .tls(&["secure.test"], "cert")
            .yaml(),
    );
    dir.write(
        "lax.yaml",
        &Ingress::new(NS, "lax")
            .annotation(&ann("ssl-redirect"), "false")
            .rule("lax.test", vec![prefix("/", "web")])
            .tls(&["lax.test"], "cert")
            .yaml(),
    );
    dir.write("cm.yaml", &configmap(json!({})));
    let gw = Gateway::start(&dir, &["--configmap", CONFIGMAP]).await;
    let from_lb = [("X-Client-Scheme", "https")];

    // Nobody is trusted yet: the header is ignored and plain http is redirected (308, path and
    // query kept).
    let r = get_with(gw.http, "secure.test", "/a?b=c", &from_lb)
        .await
        .expect("GET");
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), Some("https://secure.test/a?b=c"));

    // Over TLS: the configured HSTS where https is enforced, max-age=0 where it is not.
    let r = gw.get_tls("secure.test", "/").await.expect("GET");
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=31536000; includeSubDomains")
    );
    let r = gw.get_tls("lax.test", "/").await.expect("GET");
    assert_eq!(r.header("strict-transport-security"), Some("max-age=0"));
    let r = gw.get("lax.test", "/").await.expect("GET");
    assert_eq!(r.status, 200, "ssl-redirect false lets plain http through");
    assert_eq!(r.header("strict-transport-security"), None);

    // The load balancer at 127.0.0.1 becomes trusted: its X-Client-Scheme counts.
    dir.write(
        "cm.yaml",
        &configmap(json!({"trusted-proxies": "10.0.0.0/8, 127.0.0.1/32"})),
    );
    wait_for("X-Client-Scheme trusted", async || {
        let r = get_with(gw.http, "secure.test", "/", &from_lb).await.ok()?;
        (r.status == 200).then_some(r)
    })
    .await;
    let r = get_with(gw.http, "secure.test", "/", &from_lb)
        .await
        .expect("GET");
    assert_eq!(r.backend().as_deref(), Some("web"));
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=31536000; includeSubDomains")
    );
    // Without the header the same peer still gets the redirect.
    assert_eq!(gw.status_of("secure.test", "/").await, 308);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_tengine_answers_l4_health_checks_and_turns_503_when_draining() {
    let web = Backend::echo("web").await;
    let dir = ManifestDir::new();
    dir.write("web.yaml", &backend_service(NS, &web));
    dir.write(
        "site.yaml",
        &Ingress::new(NS, "site")
            .rule("site.test", vec![prefix("/", "web")])
            .yaml(),
    );
    let gw = Gateway::start(&dir, &["--drain-delay", "10s"]).await;
    for host in ["127.0.0.1", "10.1.2.3:80", "status.tengine.com"] {
        let r = gw.get(host, "/status.tengine").await.expect("GET");
        assert_eq!(r.status, 200, "Host {host}");
        assert_eq!(r.body, "ok\n");
    }
    // Any other host routes normally (here: to the host's backend).
    assert_eq!(gw.backend_of("site.test", "/status.tengine").await, "web");
    assert_eq!(gw.status_of("other.test", "/status.tengine").await, 404);

    gw.terminate();
    wait_for("/status.tengine to answer 503 while draining", async || {
        let r = gw.get("127.0.0.1", "/status.tengine").await.ok()?;
        (r.status == 503).then_some(())
    })
    .await;
    // Still serving traffic during the drain delay.
    assert_eq!(gw.backend_of("site.test", "/").await, "web");
}
