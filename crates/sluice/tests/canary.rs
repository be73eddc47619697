//! Canaries through the real gateway and real echo backends: every kind (header, cookie, query)
//! with every match type (always, value list, modulo with each operator), precedence across kinds
//! and creation order, weight splits out of 100 and 10,000, weights above the total, and every
//! action kind on header and weight canaries.

mod common;

use common::*;
use serde_json::json;
use std::collections::HashMap;

const NS: &str = "canary";
const A: &str = "nginx.ingress.kubernetes.io/";

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

/// The Ingress as YAML with `metadata.creationTimestamp` set (canary order within a kind is the
/// Ingresses' age).
fn created(ingress: &Ingress, timestamp: &str) -> String {
    let mut v = ingress.value();
    v["metadata"]["creationTimestamp"] = json!(timestamp);
    to_yaml(&v)
}

/// A canary Ingress: `canary: "true"` plus these canary annotations (names without prefix).
fn canary(name: &str, host: &str, service: &str, annotations: &[(&str, &str)]) -> Ingress {
    let mut ing = Ingress::new(NS, name)
        .annotation(&format!("{A}canary"), "true")
        .rule(host, vec![prefix("/", service)]);
    for (k, v) in annotations {
        ing = ing.annotation(&format!("{A}{k}"), v);
    }
    ing
}

fn primary(name: &str, host: &str, service: &str) -> Ingress {
    Ingress::new(NS, name).rule(host, vec![prefix("/", service)])
}

/// Which backend answers, on a kept-alive connection.
async fn served_by(
    conn: &mut HttpConn,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> String {
    let r = conn
        .send(host, path, headers)
        .await
        .unwrap_or_else(|e| panic!("GET http://{host}{path} {headers:?}: {e}"));
    assert_eq!(
        r.status, 200,
        "GET http://{host}{path} {headers:?}: {}",
        r.body
    );
    r.backend()
        .unwrap_or_else(|| panic!("GET http://{host}{path}: not an echo answer: {}", r.body))
}

/// A request carrying `value` under the key of `kind`: header `x-key`, cookie `ck`, or query
/// parameter `qk` (`None`: the key is absent).
fn keyed(kind: &str, value: Option<&str>) -> (String, Vec<(&'static str, String)>) {
    match (kind, value) {
        (_, None) => ("/path?other=1".to_string(), vec![]),
        ("header", Some(v)) => ("/path".to_string(), vec![("x-key", v.to_string())]),
        ("cookie", Some(v)) => (
            "/path".to_string(),
            vec![("cookie", format!("a=1; ck={v}; b=2"))],
        ),
        (_, Some(v)) => (format!("/path?x=1&qk={v}"), vec![]),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_with_every_match_type() {
    let dir = ManifestDir::new();
    let _b = backends(&dir, &["main", "canary"]).await;
    // (match type, its annotations, values that select the canary, values that do not).
    type Case = (
        &'static str,
        Vec<(&'static str, &'static str)>,
        Vec<&'static str>,
        Vec<&'static str>,
    );
    let modulo = |op: &'static str| {
        vec![
            ("canary-mod-divisor", "10"),
            ("canary-mod-relational-operator", op),
            ("canary-mod-remainder", "5"),
        ]
    };
    let cases: Vec<Case> = vec![
        (
            "always",
            vec![],
            vec!["always", "ALWAYS", "Always"],
            vec!["yes", "alwaysx", "1"],
        ),
        (
            "list",
            vec![("value", "Alpha||beta||42")],
            vec!["alpha", "ALPHA", "beta", "42"],
            vec!["gamma", "always", "alph", "4"],
        ),
        (
            "mod-eq",
            modulo("=="),
            vec!["5", "15", "123456789012345678901234567895"],
            vec!["16", "4", "13x", "x5", "-5", "1.5"],
        ),
        (
            "mod-gt",
            modulo(">"),
            vec!["6", "19"],
            vec!["5", "15", "4", "6x"],
        ),
        (
            "mod-ge",
            modulo(">="),
            vec!["5", "19"],
            vec!["4", "14", "05a"],
        ),
        (
            "mod-lt",
            modulo("<"),
            vec!["4", "10", "0"],
            vec!["5", "15", "abc"],
        ),
        (
            "mod-le",
            modulo("<="),
            vec!["5", "11"],
            vec!["6", "16", "+5"],
        ),
    ];
    let kinds = [
        (
            "header",
            "canary-by-header",
            "x-key",
            "canary-by-header-value",
        ),
        ("cookie", "canary-by-cookie", "ck", "canary-by-cookie-value"),
        ("query", "canary-by-query", "qk", "canary-by-query-value"),
    ];
    let mut list = Vec::new();
    for (kind, key_annotation, key, value_annotation) in kinds {
        for (name, annotations, _, _) in &cases {
            let host = format!("{kind}-{name}.test");
            let mut own = vec![(key_annotation, key)];
            for (k, v) in annotations {
                own.push((if *k == "value" { value_annotation } else { k }, v));
            }
            list.push(primary(&format!("p-{kind}-{name}"), &host, "main").yaml());
            list.push(canary(&format!("c-{kind}-{name}"), &host, "canary", &own).yaml());
        }
    }
    // A header pattern is an unanchored search.
    list.push(primary("p-pattern", "header-pattern.test", "main").yaml());
    list.push(
        canary(
            "c-pattern",
            "header-pattern.test",
            "canary",
            &[
                ("canary-by-header", "x-key"),
                ("canary-by-header-pattern", "beta-[0-9]+"),
            ],
        )
        .yaml(),
    );
    dir.write("ingresses.yaml", &docs(&list));
    let gw = Gateway::start(&dir, &[]).await;
    gw.wait_backend("header-pattern.test", "/", "main").await;

    let mut conn = HttpConn::plain(gw.http).await.expect("connect");
    for (kind, _, _, _) in kinds {
        for (name, _, hits, misses) in &cases {
            let host = format!("{kind}-{name}.test");
            for (value, expected) in hits
                .iter()
                .map(|v| (Some(*v), "canary"))
                .chain(misses.iter().map(|v| (Some(*v), "main")))
                .chain([(None, "main")])
            {
                let (path, headers) = keyed(kind, value);
                let headers: Vec<(&str, &str)> =
                    headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let got = served_by(&mut conn, &host, &path, &headers).await;
                assert_eq!(
                    got, expected,
                    "{kind} canary matching {name}: value {value:?} (absent when None)"
                );
            }
        }
    }
    // ingress-nginx: `never` on a header or cookie means the primary (the precedence test shows
    // that it also stops later rules, and that on a query it is just another value).
    for (kind, expected) in [("header", "main"), ("cookie", "main")] {
        let (path, headers) = keyed(kind, Some("never"));
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let got = served_by(&mut conn, &format!("{kind}-always.test"), &path, &headers).await;
        assert_eq!(got, expected, "{kind}: never");
    }
    for (value, expected) in [
        ("beta-7", "canary"),
        ("user-beta-42-x", "canary"),
        ("beta-", "main"),
        ("always", "main"),
    ] {
        let got = served_by(&mut conn, "header-pattern.test", "/", &[("x-key", value)]).await;
        assert_eq!(got, expected, "pattern with {value}");
    }
}

/// A request (path, headers) and the backend expected to answer it.
type Request = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precedence_is_header_cookie_query_weight_then_age() {
    let dir = ManifestDir::new();
    let _b = backends(&dir, &["main", "h-old", "h-new", "ck", "qy", "wt"]).await;
    let host = "prec.test";
    let list = [
        created(&primary("prec", host, "main"), "2025-01-01T00:00:00Z"),
        // Created first, evaluated last: weight comes after every other kind.
        created(
            &canary("wt", host, "wt", &[("canary-weight", "100")]),
            "2025-01-02T00:00:00Z",
        ),
        created(
            &canary("qy", host, "qy", &[("canary-by-query", "q")]),
            "2025-01-03T00:00:00Z",
        ),
        created(
            &canary("ck", host, "ck", &[("canary-by-cookie", "c")]),
            "2025-01-04T00:00:00Z",
        ),
        // Two header canaries on the same header: the older is evaluated first.
        created(
            &canary(
                "h-new",
                host,
                "h-new",
                &[
                    ("canary-by-header", "x-h"),
                    ("canary-by-header-value", "always||special"),
                ],
            ),
            "2025-01-06T00:00:00Z",
        ),
        created(
            &canary("h-old", host, "h-old", &[("canary-by-header", "x-h")]),
            "2025-01-05T00:00:00Z",
        ),
    ];
    dir.write("ingresses.yaml", &docs(&list));
    let gw = Gateway::start(&dir, &[]).await;
    gw.wait_backend(host, "/", "wt").await;

    // The admin API lists the rules in evaluation order.
    let routes = gw.routes(host).await;
    let rules: Vec<(String, String)> = routes[0]["canaries"]
        .as_array()
        .expect("canaries listed")
        .iter()
        .map(|c| {
            (
                c["ingress"].as_str().unwrap_or_default().to_string(),
                c["rule"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let expected = [
        ("h-old", "header x-h: always (never: primary)"),
        ("h-new", "header x-h: one of always||special"),
        ("ck", "cookie c: always (never: primary)"),
        ("qy", "query q: always"),
        ("wt", "weight 100 of 100"),
    ];
    assert_eq!(
        rules,
        expected
            .iter()
            .map(|(i, r)| (format!("{NS}/{i}"), r.to_string()))
            .collect::<Vec<_>>(),
        "{routes:?}"
    );

    let mut conn = HttpConn::plain(gw.http).await.expect("connect");
    // (path, headers, expected backend)
    let cases: [Request; 9] = [
        ("/", &[], "wt"),
        ("/?q=always", &[], "qy"),
        ("/?q=always", &[("cookie", "c=always")], "ck"),
        (
            "/?q=always",
            &[("cookie", "c=always"), ("x-h", "always")],
            "h-old",
        ),
        ("/", &[("x-h", "special")], "h-new"),
        // The older header canary's `never` ends evaluation on the primary, weight included.
        ("/?q=always", &[("x-h", "never")], "main"),
        ("/?q=always", &[("cookie", "c=never")], "main"),
        // Keys with other values fall through to the next rule; `never` is only special on
        // headers and cookies.
        ("/?q=no", &[("cookie", "c=no"), ("x-h", "no")], "wt"),
        ("/?q=never", &[], "wt"),
    ];
    for (path, headers, expected) in cases {
        let got = served_by(&mut conn, host, path, headers).await;
        assert_eq!(got, expected, "{path} {headers:?}");
    }
}

/// Sends `total` requests to `host` over `connections` kept-alive connections at once and counts
/// the answering backends.
async fn spread(
    gw: &Gateway,
    host: &str,
    total: usize,
    connections: usize,
) -> HashMap<String, usize> {
    let mut tasks = Vec::new();
    for c in 0..connections {
        let addr = gw.http;
        let host = host.to_string();
        let n = total / connections + usize::from(c < total % connections);
        tasks.push(tokio::spawn(async move {
            let mut conn = HttpConn::plain(addr).await.expect("connect");
            let mut counts: HashMap<String, usize> = HashMap::new();
            for _ in 0..n {
                let r = conn.get(&host, "/").await.expect("request");
                assert_eq!(r.status, 200, "{host}: {}", r.body);
                *counts.entry(backend_named_in(&r.body)).or_default() += 1;
            }
            counts
        }));
    }
    let mut counts = HashMap::new();
    for t in tasks {
        for (k, v) in t.await.expect("load task") {
            *counts.entry(k).or_default() += v;
        }
    }
    counts
}

/// The echo answer's `backend`, found without parsing the whole JSON body (the weight tests
/// read tens of thousands of them).
fn backend_named_in(body: &str) -> String {
    const KEY: &str = "\"backend\":\"";
    body.find(KEY)
        .and_then(|at| body[at + KEY.len()..].split('"').next())
        .unwrap_or_else(|| panic!("not an echo answer: {body}"))
        .to_string()
}

fn assert_shares(host: &str, counts: &HashMap<String, usize>, expected: &[(&str, f64)]) {
    let total: usize = counts.values().sum();
    assert_eq!(
        counts
            .keys()
            .filter(|k| !expected.iter().any(|(n, _)| n == k))
            .count(),
        0,
        "{host}: unexpected backends in {counts:?}"
    );
    for (name, share) in expected {
        let got = counts.get(*name).copied().unwrap_or(0) as f64 / total as f64;
        assert!(
            (got - share).abs() <= 0.02,
            "{host}: {name} got {:.2}% of {total}, expected {:.2}% ± 2 points ({counts:?})",
            got * 100.0,
            share * 100.0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_split_traffic_out_of_the_total_and_overflow_is_rejected() {
    let dir = ManifestDir::new();
    let _b = backends(&dir, &["main", "a", "b", "c"]).await;
    let list = [
        created(
            &primary("w100", "w100.test", "main"),
            "2025-01-01T00:00:00Z",
        ),
        created(
            &canary("w100-a", "w100.test", "a", &[("canary-weight", "20")]),
            "2025-01-02T00:00:00Z",
        ),
        created(
            &canary("w100-b", "w100.test", "b", &[("canary-weight", "30")]),
            "2025-01-03T00:00:00Z",
        ),
        // 20 + 30 + 60 > 100: this one is rejected, the others keep their shares.
        created(
            &canary("w100-c", "w100.test", "c", &[("canary-weight", "60")]),
            "2025-01-04T00:00:00Z",
        ),
        created(
            &primary("w10k", "w10k.test", "main")
                .annotation(&format!("{A}canary-weight-total"), "10000"),
            "2025-01-01T00:00:00Z",
        ),
        created(
            &canary("w10k-a", "w10k.test", "a", &[("canary-weight", "1234")]),
            "2025-01-02T00:00:00Z",
        ),
        created(
            &canary("w10k-b", "w10k.test", "b", &[("canary-weight", "4321")]),
            "2025-01-03T00:00:00Z",
        ),
        created(
            &canary("w10k-c", "w10k.test", "c", &[("canary-weight", "5000")]),
            "2025-01-04T00:00:00Z",
        ),
    ];
    dir.write("ingresses.yaml", &docs(&list));
    let gw = Gateway::start(&dir, &[]).await;
    for host in ["w100.test", "w10k.test"] {
        wait_for(&format!("{host} to be served"), async || {
            let r = gw.get(host, "/").await.ok()?;
            (r.status == 200 && r.backend().is_some()).then_some(())
        })
        .await;
    }
    for (name, w) in [("w100-c", "60"), ("w10k-c", "5000")] {
        let p = gw
            .wait_problem(&format!("{name} rejected"), |p| {
                p["object"]["name"] == name && p["severity"] == "rejected"
            })
            .await;
        let reason = p["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains(&format!("canary-weight {w}"))
                && reason.contains("exceeds the weight total"),
            "{p}"
        );
        assert_eq!(p["field"], "spec.rules[0].http.paths[0]", "{p}");
    }

    let counts = spread(&gw, "w100.test", 10_000, 8).await;
    assert_shares(
        "w100.test",
        &counts,
        &[("a", 0.20), ("b", 0.30), ("main", 0.50)],
    );
    let counts = spread(&gw, "w10k.test", 10_000, 8).await;
    assert_shares(
        "w10k.test",
        &counts,
        &[("a", 0.1234), ("b", 0.4321), ("main", 0.4445)],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_apply_on_header_and_weight_canaries() {
    let dir = ManifestDir::new();
    let _b = backends(&dir, &["main", "canary"]).await;
    let actions = [
        ("canary-request-add-header", "x-add:1||x-ip:$remote_addr"),
        ("canary-request-append-header", "x-list:$host||x-new:fresh"),
        ("canary-request-add-query", "k=v&rid=$request_id"),
        ("canary-response-add-header", "x-resp:$scheme||x-dup:two"),
        (
            "canary-response-append-header",
            "x-resp-append:more||content-type:canary",
        ),
    ];
    let mut list = Vec::new();
    for (host, rule) in [
        ("act-header.test", ("canary-by-header", "x-canary")),
        ("act-weight.test", ("canary-weight", "100")),
    ] {
        let mut annotations = vec![rule];
        annotations.extend_from_slice(&actions);
        list.push(primary(&format!("p-{host}"), host, "main").yaml());
        list.push(canary(&format!("c-{host}"), host, "canary", &annotations).yaml());
    }
    dir.write("ingresses.yaml", &docs(&list));
    let gw = Gateway::start(&dir, &[]).await;
    gw.wait_backend("act-weight.test", "/", "canary").await;

    let mut conn = HttpConn::plain(gw.http).await.expect("connect");
    for host in ["act-header.test", "act-weight.test"] {
        let r = conn
            .send(
                host,
                "/q?x=1",
                &[
                    ("x-canary", "always"),
                    ("x-add", "0"),
                    ("x-list", "a"),
                    ("x-request-id", "rid-123"),
                ],
            )
            .await
            .expect("request");
        assert_eq!(r.backend().as_deref(), Some("canary"), "{host}: {}", r.body);
        let echo = r.echo().expect("echo answer");
        assert_eq!(echo["path"], "/q?x=1&k=v&rid=rid-123", "{host}");
        // Added even though the client sent one (the echo joins repeated headers with ", ").
        assert_eq!(
            r.upstream_header("x-add").as_deref(),
            Some("0, 1"),
            "{host}"
        );
        assert_eq!(
            r.upstream_header("x-ip").as_deref(),
            Some("127.0.0.1"),
            "{host}"
        );
        assert_eq!(
            r.upstream_header("x-list").as_deref(),
            Some(format!("a,{host}").as_str()),
            "{host}"
        );
        assert_eq!(
            r.upstream_header("x-new").as_deref(),
            Some("fresh"),
            "{host}"
        );
        assert_eq!(r.header("x-resp"), Some("http"), "{host}");
        assert_eq!(r.header("x-dup"), Some("two"), "{host}");
        assert_eq!(r.header("x-resp-append"), Some("more"), "{host}");
        assert_eq!(
            r.header("content-type"),
            Some("application/json,canary"),
            "{host}"
        );
    }
    // A request the primary serves gets none of it.
    let r = conn
        .send("act-header.test", "/q?x=1", &[("x-list", "a")])
        .await
        .expect("request");
    assert_eq!(r.backend().as_deref(), Some("main"));
    assert_eq!(r.echo().expect("echo")["path"], "/q?x=1");
    assert_eq!(r.upstream_header("x-list").as_deref(), Some("a"));
    assert!(r.upstream_header("x-add").is_none());
    assert!(r.header("x-resp").is_none());
    assert_eq!(r.header("content-type"), Some("application/json"));
    // Without an existing query the added parameters start one.
    let r = conn
        .send("act-weight.test", "/plain", &[("x-request-id", "r2")])
        .await
        .expect("request");
    assert_eq!(r.echo().expect("echo")["path"], "/plain?k=v&rid=r2");
}

/// Which backend answers a request with these headers on a fresh connection, if any answered.
async fn answer_with(
    gw: &Gateway,
    host: &str,
    headers: &[(&str, &str)],
) -> Option<(u16, Option<String>)> {
    let r = get_with(gw.http, host, "/", headers).await.ok()?;
    Some((r.status, r.backend()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canaries_follow_live_changes_of_ingresses_and_endpoints() {
    let dir = ManifestDir::new();
    let main = Backend::echo("main").await;
    let green = Backend::echo("green").await;
    dir.write("svc-main.yaml", &backend_service(NS, &main));
    // The canary's Service starts without endpoints.
    dir.write("svc-green.yaml", &service_with_slices(NS, "green", &[]));
    dir.write("primary.yaml", &primary("live", "live.test", "main").yaml());
    let gw = Gateway::start(&dir, &[]).await;
    gw.wait_backend("live.test", "/", "main").await;

    dir.write(
        "canary.yaml",
        &canary(
            "live-green",
            "live.test",
            "green",
            &[("canary-by-header", "x-green")],
        )
        .yaml(),
    );
    let on = [("x-green", "always")];
    wait_for("the canary without endpoints to answer 503", async || {
        (answer_with(&gw, "live.test", &on).await? == (503, None)).then_some(())
    })
    .await;
    assert_eq!(
        answer_with(&gw, "live.test", &[]).await,
        Some((200, Some("main".to_string())))
    );

    // An endpoint-only change reaches the canary's backend.
    dir.write("svc-green.yaml", &backend_service(NS, &green));
    wait_for("the canary to reach its new endpoint", async || {
        (answer_with(&gw, "live.test", &on).await? == (200, Some("green".to_string())))
            .then_some(())
    })
    .await;

    // Turning the canary into a weight-100 canary moves all traffic; removing it moves it back.
    dir.write(
        "canary.yaml",
        &canary(
            "live-green",
            "live.test",
            "green",
            &[("canary-weight", "100")],
        )
        .yaml(),
    );
    gw.wait_backend("live.test", "/", "green").await;
    dir.remove("canary.yaml");
    gw.wait_backend("live.test", "/", "main").await;
    assert_eq!(
        answer_with(&gw, "live.test", &on).await,
        Some((200, Some("main".to_string())))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canaries_work_over_http2() {
    let dir = ManifestDir::new();
    let _b = backends(&dir, &["main", "canary"]).await;
    let list = [
        primary("h2", "h2.test", "main").yaml(),
        canary(
            "h2-cookie",
            "h2.test",
            "canary",
            &[
                ("canary-by-cookie", "ck"),
                ("canary-by-cookie-value", "yes"),
                ("canary-request-add-query", "via=canary"),
                ("canary-response-add-header", "x-canary:$host"),
            ],
        )
        .yaml(),
    ];
    dir.write("ingresses.yaml", &docs(&list));
    let gw = Gateway::start(&dir, &[]).await;
    gw.wait_backend("h2.test", "/", "main").await;

    let mut conn = HttpConn::h2c(gw.http).await.expect("h2c connect");
    // HTTP/2 clients may send each cookie in its own header field.
    let r = conn
        .send(
            "h2.test",
            "/p?x=1",
            &[("cookie", "a=1"), ("cookie", "ck=YES")],
        )
        .await
        .expect("request");
    assert_eq!(r.backend().as_deref(), Some("canary"), "{}", r.body);
    assert_eq!(r.echo().expect("echo")["path"], "/p?x=1&via=canary");
    assert_eq!(r.header("x-canary"), Some("h2.test"));
    let r = conn
        .send("h2.test", "/p", &[("cookie", "ck=no")])
        .await
        .expect("request");
    assert_eq!(r.backend().as_deref(), Some("main"), "{}", r.body);
    assert!(r.header("x-canary").is_none());
}
