//! Routing through the real gateway: the Kubernetes path-matching examples, wildcard hosts,
//! default backends, class selection, named ports, endpoint readiness, load spreading and
//! WebSocket.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const NS: &str = "routing";

/// Starts echo backends with these names and writes a Service + EndpointSlice for each.
async fn backends(dir: &ManifestDir, names: &[&str]) -> Vec<Backend> {
    let mut list = Vec::new();
    for name in names {
        let b = Backend::echo(name).await;
        dir.write(&format!("svc-{name}.yaml"), &backend_service(NS, &b));
        list.push(b);
    }
    list
}

/// Every example of the Kubernetes documentation's matching table, one host per example so the
/// examples cannot influence each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_path_matching_examples() {
    let dir = ManifestDir::new();
    let _b = backends(&dir, &["root", "aaa", "bbb", "foo", "deflt", "pfx", "ex"]).await;
    let ingresses = [
        Ingress::new(NS, "all").rule("all.test", vec![prefix("/", "root")]),
        Ingress::new(NS, "exact-foo").rule("exact-foo.test", vec![exact("/foo", "foo")]),
        Ingress::new(NS, "exact-foo-slash")
            .rule("exact-foo-slash.test", vec![exact("/foo/", "foo")]),
        Ingress::new(NS, "prefix-foo-slash")
            .rule("prefix-foo-slash.test", vec![prefix("/foo/", "foo")]),
        Ingress::new(NS, "prefix-foo").rule("prefix-foo.test", vec![prefix("/foo", "foo")]),
        Ingress::new(NS, "aaa-bb").rule("aaa-bb.test", vec![prefix("/aaa/bb", "aaa")]),
        Ingress::new(NS, "aaa-bbb").rule("aaa-bbb.test", vec![prefix("/aaa/bbb", "bbb")]),
        Ingress::new(NS, "two").rule("two.test", vec![prefix("/", "root"), prefix("/aaa", "aaa")]),
        Ingress::new(NS, "three").rule(
            "three.test",
            vec![
                prefix("/", "root"),
                prefix("/aaa", "aaa"),
                prefix("/aaa/bbb", "bbb"),
            ],
        ),
        Ingress::new(NS, "fallback")
            .rule("fallback.test", vec![prefix("/aaa", "aaa")])
            .default_backend("deflt", port_number(80)),
        Ingress::new(NS, "mixed").rule(
            "mixed.test",
            vec![prefix("/foo", "pfx"), exact("/foo", "ex")],
        ),
        Ingress::new(NS, "wildcard").rule("*.foo.test", vec![prefix("/", "foo")]),
        Ingress::new(NS, "precise").rule("exact.foo.test", vec![prefix("/", "ex")]),
    ];
    for (i, ing) in ingresses.iter().enumerate() {
        dir.write(&format!("ing-{i}.yaml"), &ing.yaml());
    }
    let gw = Gateway::start(&dir, &[]).await;
    wait_for("every Ingress to be applied", async || {
        (gw.get("mixed.test", "/foo").await.ok()?.status == 200
            && gw.get("bar.foo.test", "/").await.ok()?.status == 200)
            .then_some(())
    })
    .await;

    // (host, request path, expected backend or None for 404)
    let table: &[(&str, &str, Option<&str>)] = &[
        // Prefix / matches all paths.
        ("all.test", "/", Some("root")),
        ("all.test", "/anything/at/all", Some("root")),
        // Exact /foo: /foo yes, /bar no, /foo/ no; case-sensitive.
        ("exact-foo.test", "/foo", Some("foo")),
        ("exact-foo.test", "/bar", None),
        ("exact-foo.test", "/foo/", None),
        ("exact-foo.test", "/FOO", None),
        // Exact /foo/ does not match /foo.
        ("exact-foo-slash.test", "/foo", None),
        ("exact-foo-slash.test", "/foo/", Some("foo")),
        // Prefix /foo/ and /foo both match /foo and /foo/.
        ("prefix-foo-slash.test", "/foo", Some("foo")),
        ("prefix-foo-slash.test", "/foo/", Some("foo")),
        ("prefix-foo.test", "/foo", Some("foo")),
        ("prefix-foo.test", "/foo/", Some("foo")),
        ("prefix-foo.test", "/foobar", None),
        // Prefix /aaa/bb does not match /aaa/bbb.
        ("aaa-bb.test", "/aaa/bbb", None),
        ("aaa-bb.test", "/aaa/bb", Some("aaa")),
        // Prefix /aaa/bbb: /aaa/bbb, /aaa/bbb/, /aaa/bbb/ccc yes; /aaa/bbbxyz no.
        ("aaa-bbb.test", "/aaa/bbb", Some("bbb")),
        ("aaa-bbb.test", "/aaa/bbb/", Some("bbb")),
        ("aaa-bbb.test", "/aaa/bbb/ccc", Some("bbb")),
        ("aaa-bbb.test", "/aaa/bbbxyz", None),
        // Prefix / and /aaa: /aaa/ccc goes to /aaa.
        ("two.test", "/aaa/ccc", Some("aaa")),
        ("two.test", "/ccc", Some("root")),
        // Prefix /, /aaa, /aaa/bbb: the longest wins.
        ("three.test", "/aaa/bbb", Some("bbb")),
        ("three.test", "/aaa/bbb/x", Some("bbb")),
        ("three.test", "/aaa/x", Some("aaa")),
        ("three.test", "/ccc", Some("root")),
        // Prefix /aaa with /ccc: the Ingress's default backend.
        ("fallback.test", "/ccc", Some("deflt")),
        ("fallback.test", "/aaa/x", Some("aaa")),
        // Prefix /foo and Exact /foo: Exact wins for /foo.
        ("mixed.test", "/foo", Some("ex")),
        ("mixed.test", "/foo/x", Some("pfx")),
        // Wildcard: exactly one label.
        ("bar.foo.test", "/", Some("foo")),
        ("BAR.foo.test:8080", "/x", Some("foo")),
        ("baz.bar.foo.test", "/", None),
        // A precise host beats the wildcard.
        ("exact.foo.test", "/", Some("ex")),
        ("foo.test", "/", None),
        // Unknown host.
        ("nobody.test", "/", None),
    ];
    let mut wrong = Vec::new();
    for (host, path, expected) in table {
        let r = gw
            .get(host, path)
            .await
            .unwrap_or_else(|e| panic!("GET http://{host}{path}: {e}"));
        let got = if r.status == 200 { r.backend() } else { None };
        let ok = match expected {
            Some(b) => r.status == 200 && got.as_deref() == Some(*b),
            None => r.status == 404 && r.backend().is_none() && !r.body.trim().is_empty(),
        };
        if !ok {
            wrong.push(format!(
                "{host}{path}: expected {expected:?}, got {} {got:?} {:?}",
                r.status,
                r.body.chars().take(80).collect::<String>()
            ));
        }
    }
    assert!(wrong.is_empty(), "wrong routing:\n{}", wrong.join("\n"));

    // The admin view lists the routes of a host in match order.
    let routes = gw.routes("three.test").await;
    let paths: Vec<&str> = routes
        .iter()
        .filter(|r| r["fallback"] == false)
        .filter_map(|r| r["path"].as_str())
        .collect();
    assert_eq!(paths, ["/aaa/bbb", "/aaa", "/"], "routes: {routes:?}");
}

/// An Ingress without rules but with a defaultBackend catches every host no rule names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_all_default_backend() {
    let dir = ManifestDir::new();
    let _b = backends(&dir, &["catchall", "named"]).await;
    dir.write(
        "catch-all.yaml",
        &Ingress::new(NS, "catch-all")
            .default_backend("catchall", port_number(80))
            .yaml(),
    );
    dir.write(
        "named.yaml",
        &Ingress::new(NS, "named")
            .rule("named.test", vec![prefix("/app", "named")])
            .yaml(),
    );
    let gw = Gateway::start(&dir, &[]).await;
    gw.wait_backend("named.test", "/app", "named").await;
    assert_eq!(gw.backend_of("unknown.test", "/").await, "catchall");
    assert_eq!(gw.backend_of("another.test", "/x/y").await, "catchall");

    // Without the catch-all, unknown hosts get Sluice's 404 again.
    dir.remove("catch-all.yaml");
    gw.wait_status("unknown.test", "/", 404).await;
    assert_eq!(gw.status_of("unknown.test", "/").await, 404);
    assert_eq!(gw.backend_of("named.test", "/app").await, "named");
}

/// ingressClassName, the legacy annotation, class-less Ingresses and the default IngressClass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_class_selection() {
    let dir = ManifestDir::new();
    let _b = backends(&dir, &["ours"]).await;
    dir.write(
        "classes.yaml",
        &docs(&[
            ingress_class("sluice", "sluice.dev/ingress-controller", false),
            ingress_class("other", "example.com/other-controller", false),
        ]),
    );
    let ing = |name: &str| {
        Ingress::new(NS, name).rule(&format!("{name}.test"), vec![prefix("/", "ours")])
    };
    dir.write("by-name.yaml", &ing("by-name").yaml());
    dir.write("other.yaml", &ing("other").class("other").yaml());
    dir.write(
        "legacy.yaml",
        &ing("legacy")
            .no_class()
            .annotation("kubernetes.io/ingress.class", "sluice")
            .yaml(),
    );
    dir.write(
        "legacy-other.yaml",
        &ing("legacy-other")
            .no_class()
            .annotation("kubernetes.io/ingress.class", "nginx")
            .yaml(),
    );
    dir.write("classless.yaml", &ing("classless").no_class().yaml());

    let gw = Gateway::start(&dir, &[]).await;
    assert_eq!(gw.backend_of("by-name.test", "/").await, "ours");
    assert_eq!(gw.backend_of("legacy.test", "/").await, "ours");
    assert_eq!(gw.status_of("other.test", "/").await, 404);
    assert_eq!(gw.status_of("legacy-other.test", "/").await, 404);
    assert_eq!(gw.status_of("classless.test", "/").await, 404);

    // Our IngressClass becomes the cluster default: class-less Ingresses are ours from now on.
    dir.write(
        "classes.yaml",
        &docs(&[
            ingress_class("sluice", "sluice.dev/ingress-controller", true),
            ingress_class("other", "example.com/other-controller", false),
        ]),
    );
    gw.wait_backend("classless.test", "/", "ours").await;
    assert_eq!(gw.status_of("other.test", "/").await, 404);
    assert_eq!(gw.status_of("legacy-other.test", "/").await, 404);
    drop(gw);

    // --watch-ingress-without-class, with no default class.
    dir.write(
        "classes.yaml",
        &ingress_class("sluice", "sluice.dev/ingress-controller", false),
    );
    let gw = Gateway::start(&dir, &["--watch-ingress-without-class"]).await;
    assert_eq!(gw.backend_of("classless.test", "/").await, "ours");
    assert_eq!(gw.backend_of("by-name.test", "/").await, "ours");
    assert_eq!(gw.status_of("other.test", "/").await, 404);
}

/// Ingress port by name -> Service port of that name -> EndpointSlice port of that name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_service_ports() {
    let dir = ManifestDir::new();
    let web = Backend::echo("web").await;
    let metrics = Backend::echo("metrics").await;
    let service = r#"apiVersion: v1
kind: Service
metadata:
  name: multi
  namespace: routing
spec:
  ports:
    - name: web
      port: 8080
      targetPort: web
    - name: metrics
      port: 9090
      targetPort: metrics
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: multi-abc
  namespace: routing
  labels:
    kubernetes.io/service-name: multi
addressType: IPv4
ports:
  - name: metrics
    port: METRICS_PORT
  - name: web
    port: WEB_PORT
endpoints:
  - addresses: ["127.0.0.1"]
    conditions:
      ready: true
"#
    .replace("WEB_PORT", &web.port().to_string())
    .replace("METRICS_PORT", &metrics.port().to_string());
    dir.write("multi.yaml", &service);
    dir.write(
        "ing.yaml",
        &Ingress::new(NS, "ports")
            .rule(
                "ports.test",
                vec![
                    path_rule("/web", "Prefix", "multi", port_name("web")),
                    path_rule("/metrics", "Prefix", "multi", port_name("metrics")),
                    path_rule("/by-number", "Prefix", "multi", port_number(9090)),
                    path_rule("/no-such-port", "Prefix", "multi", port_name("nope")),
                ],
            )
            .yaml(),
    );
    let gw = Gateway::start(&dir, &[]).await;
    assert_eq!(gw.backend_of("ports.test", "/web").await, "web");
    assert_eq!(gw.backend_of("ports.test", "/metrics").await, "metrics");
    assert_eq!(gw.backend_of("ports.test", "/by-number").await, "metrics");
    assert_eq!(gw.status_of("ports.test", "/no-such-port").await, 503);
}

/// Requests spread over every ready endpoint; not-ready endpoints get nothing; a Service with
/// no ready endpoint answers 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_spreads_over_ready_endpoints_only() {
    let dir = ManifestDir::new();
    let ready = [
        Backend::echo("pod-a").await,
        Backend::echo("pod-b").await,
        Backend::echo("pod-c").await,
    ];
    let not_ready = Backend::echo("pod-not-ready").await;
    let mut endpoints: Vec<(u16, bool)> = ready.iter().map(|b| (b.port(), true)).collect();
    endpoints.push((not_ready.port(), false));
    dir.write(
        "spread.yaml",
        &service_with_slices(NS, "spread", &endpoints),
    );
    dir.write(
        "none-ready.yaml",
        &service_with_slices(NS, "none-ready", &[(not_ready.port(), false)]),
    );
    dir.write(
        "ing.yaml",
        &Ingress::new(NS, "spread")
            .rule(
                "spread.test",
                vec![prefix("/", "spread"), prefix("/down", "none-ready")],
            )
            .yaml(),
    );
    let gw = Gateway::start(&dir, &[]).await;

    let mut conn = HttpConn::plain(gw.http).await.expect("connect");
    let mut counts: HashMap<String, usize> = HashMap::new();
    for i in 0..300 {
        let r = conn
            .get("spread.test", &format!("/req/{i}"))
            .await
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(r.status, 200, "request {i}: {}", r.body);
        *counts.entry(r.backend().expect("echo answer")).or_default() += 1;
    }
    for b in &ready {
        let n = counts.get(&b.name).copied().unwrap_or(0);
        assert!(n >= 30, "{} got {n} of 300 requests: {counts:?}", b.name);
    }
    assert_eq!(
        not_ready.hits(),
        0,
        "a not-ready endpoint got traffic: {counts:?}"
    );
    assert_eq!(gw.status_of("spread.test", "/down").await, 503);

    // The not-ready endpoint becomes ready: it gets its share too.
    endpoints.iter_mut().for_each(|e| e.1 = true);
    dir.write(
        "spread.yaml",
        &service_with_slices(NS, "spread", &endpoints),
    );
    gw.wait_backend("spread.test", "/", "pod-not-ready").await;
}

/// A WebSocket upgrade goes through the gateway to the backend and messages flow both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_through_gateway() {
    let dir = ManifestDir::new();
    let _b = backends(&dir, &["ws"]).await;
    dir.write(
        "ing.yaml",
        &Ingress::new(NS, "ws")
            .rule("ws.test", vec![prefix("/", "ws")])
            .yaml(),
    );
    let gw = Gateway::start(&dir, &[]).await;
    let tcp = tokio::net::TcpStream::connect(gw.http)
        .await
        .expect("connect");
    let request = "ws://ws.test/chat"
        .into_client_request()
        .expect("ws request");
    let (mut ws, resp) = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        tokio_tungstenite::client_async(request, tcp),
    )
    .await
    .expect("WebSocket handshake timed out")
    .expect("WebSocket handshake through the gateway");
    assert_eq!(resp.status(), 101);
    for i in 0..3 {
        ws.send(Message::text(format!("hello {i}")))
            .await
            .expect("send");
        let reply = tokio::time::timeout(std::time::Duration::from_secs(15), ws.next())
            .await
            .expect("reply timed out")
            .expect("connection open")
            .expect("reply");
        assert_eq!(
            reply.into_text().expect("text").as_str(),
            format!("ws: hello {i}")
        );
    }
    ws.close(None).await.expect("close");
}

/// Manifests as JSON, as a `kind: List`, several documents in one file, and in subdirectories
/// (also one created while serving); plain-port HTTP/2 (h2c prior knowledge) and request bodies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_formats_and_plain_protocols() {
    use bytes::Bytes;
    use http::{Method, Version};
    use serde_json::json;

    let dir = ManifestDir::new();
    let app = Backend::echo("app").await;
    // Service + EndpointSlice as two documents of one file, in a subdirectory.
    dir.write("services/app.yaml", &backend_service(NS, &app));
    dir.write(
        "from-json.json",
        &serde_json::to_string_pretty(
            &Ingress::new(NS, "from-json")
                .rule("json.test", vec![prefix("/", "app")])
                .value(),
        )
        .expect("JSON"),
    );
    dir.write(
        "list.yaml",
        &to_yaml(&json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": [
                Ingress::new(NS, "list-a").rule("list-a.test", vec![prefix("/", "app")]).value(),
                Ingress::new(NS, "list-b").rule("list-b.test", vec![prefix("/", "app")]).value(),
            ],
        })),
    );
    let gw = Gateway::start(&dir, &[]).await;
    for host in ["json.test", "list-a.test", "list-b.test"] {
        assert_eq!(gw.backend_of(host, "/").await, "app", "{host}");
    }
    let counts = gw.snapshot().await["counts"].clone();
    assert_eq!(counts["hosts"], 3, "snapshot counts: {counts}");
    assert_eq!(counts["backends"], 1, "snapshot counts: {counts}");

    // A subdirectory that appears while serving is watched too.
    dir.write(
        "teams/new/late.yaml",
        &Ingress::new(NS, "late")
            .rule("late.test", vec![prefix("/", "app")])
            .yaml(),
    );
    gw.wait_backend("late.test", "/", "app").await;

    // h2c with prior knowledge on the plain listener.
    let mut h2c = HttpConn::h2c(gw.http).await.expect("h2c connection");
    let r = h2c.get("json.test", "/h2c").await.expect("h2c request");
    assert_eq!((r.status, r.version), (200, Version::HTTP_2), "{}", r.body);
    assert_eq!(r.backend().as_deref(), Some("app"));

    // Request bodies reach the backend whole, over HTTP/1.1 and HTTP/2.
    let body = Bytes::from(vec![b'x'; 256 * 1024]);
    let mut h1 = HttpConn::plain(gw.http).await.expect("HTTP/1.1 connection");
    for (what, conn) in [("HTTP/1.1", &mut h1), ("h2c", &mut h2c)] {
        let r = conn
            .request(Method::POST, "json.test", "/upload", &[], body.clone())
            .await
            .unwrap_or_else(|e| panic!("{what} POST: {e}"));
        assert_eq!(r.status, 200, "{what}: {}", r.body);
        let echo = r.echo().expect("echo answer");
        assert_eq!(echo["method"], "POST", "{what}");
        assert_eq!(
            echo["bodyLength"],
            body.len(),
            "{what}: body not forwarded whole"
        );
    }
}
