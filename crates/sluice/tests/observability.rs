//! Observability through the real gateway: exact counts and byte sums in `/metrics` and
//! `/api/v1/stats` for a known load, the ingress-nginx compat families, series of removed hosts
//! disappearing, the access log, and the dashboard in a real headless browser.

mod common;

use bytes::Bytes;
use common::*;
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

const NS: &str = "obs";
const SVC: &str = "sized";

/// A backend that answers `?status=S&bytes=N` with status S and N bytes of body, after reading
/// the whole request body.
async fn sized_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = listener.local_addr().expect("backend address");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = service_fn(|req: http::Request<Incoming>| async move {
                    let query: HashMap<String, String> = req
                        .uri()
                        .query()
                        .unwrap_or("")
                        .split('&')
                        .filter_map(|kv| kv.split_once('='))
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect();
                    let _ = req.into_body().collect().await;
                    let status = query
                        .get("status")
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(200);
                    let bytes = query
                        .get("bytes")
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0usize);
                    let mut resp = Response::new(Full::new(Bytes::from(vec![b'x'; bytes])));
                    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                    Ok::<_, Infallible>(resp)
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Three hosts, each with its own Ingress, all served by the sized backend.
async fn three_hosts(dir: &ManifestDir) {
    let backend = sized_backend().await;
    dir.write(
        "svc.yaml",
        &service_with_slices(NS, SVC, &[(backend.port(), true)]),
    );
    dir.write(
        "a.yaml",
        &Ingress::new(NS, "ing-a")
            .rule("obs-a.test", vec![prefix("/", SVC)])
            .yaml(),
    );
    dir.write(
        "b.yaml",
        &Ingress::new(NS, "ing-b")
            .rule("obs-b.test", vec![prefix("/api", SVC)])
            .yaml(),
    );
    dir.write(
        "c.yaml",
        &Ingress::new(NS, "ing-c")
            .rule("obs-c.test", vec![exact("/exact", SVC)])
            .yaml(),
    );
}

/// One sample of a Prometheus text exposition.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A strict parser of the text format 0.0.4: every sample belongs to a family declared by a
/// `# TYPE` line before it, names and labels are well-formed, values are floats, and no family
/// is declared twice.
fn parse_exposition(text: &str) -> (BTreeMap<String, String>, Vec<Sample>) {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    for (number, line) in text.lines().enumerate() {
        let at = |what: &str| format!("line {}: {what}: {line}", number + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .unwrap_or_else(|| panic!("{}", at("TYPE without kind")));
            assert!(valid_name(name), "{}", at("bad family name"));
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{}",
                at("unknown type")
            );
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "{}",
                at("family declared twice")
            );
            continue;
        }
        if line.starts_with('#') {
            assert!(line.starts_with("# HELP "), "{}", at("unknown comment"));
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("{}", at("no value")));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("{}", at("value is not a float"))),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("{}", at("unclosed labels")));
                (
                    name,
                    parse_labels(body).unwrap_or_else(|e| panic!("{}", at(&e))),
                )
            }
        };
        assert!(valid_name(name), "{}", at("bad sample name"));
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                let base = name.strip_suffix(suffix)?;
                matches!(
                    types.get(base).map(String::as_str),
                    Some("histogram" | "summary")
                )
                .then_some(base)
            })
            .unwrap_or(name);
        let kind = types
            .get(family)
            .unwrap_or_else(|| panic!("{}", at("sample before its # TYPE")));
        if name.ends_with("_bucket") && kind == "histogram" {
            assert!(labels.contains_key("le"), "{}", at("bucket without le"));
        }
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    (types, samples)
}

fn parse_labels(body: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    let mut chars = body.chars().peekable();
    while chars.peek().is_some() {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad label name {name:?}"));
        }
        if chars.next() != Some('"') {
            return Err(format!("label {name} value is not quoted"));
        }
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('\\') => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c @ ('\\' | '"')) => value.push(c),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some('"') => break,
                Some(c) => value.push(c),
                None => return Err("unterminated label value".into()),
            }
        }
        if labels.insert(name.clone(), value).is_some() {
            return Err(format!("label {name} repeated"));
        }
        match chars.next() {
            Some(',') | None => {}
            Some(c) => return Err(format!("unexpected {c:?} after label {name}")),
        }
    }
    Ok(labels)
}

/// The sum of `name`'s samples whose labels include all of `filter`.
fn sum(samples: &[Sample], name: &str, filter: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            filter
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

async fn metrics_text(gw: &Gateway) -> String {
    let r = gw.admin_get("/metrics").await.expect("GET /metrics");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    r.body
}

async fn stats(gw: &Gateway, query: &str) -> Value {
    let r = gw
        .admin_get(&format!("/api/v1/stats{query}"))
        .await
        .expect("GET /api/v1/stats");
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).expect("stats JSON")
}

fn host_stats<'a>(stats: &'a Value, host: &str) -> Option<&'a Value> {
    stats["hosts"]
        .as_array()?
        .iter()
        .find(|h| h["host"] == host)
}

/// Waits until the stats count `total` requests across all hosts (requests are recorded when
/// their response body is finished, a moment after the client has it).
async fn wait_for_total(gw: &Gateway, total: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = stats(gw, "").await;
        let counted: u64 = s["hosts"]
            .as_array()
            .map(|hosts| {
                hosts
                    .iter()
                    .map(|h| h["requests"].as_u64().unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0);
        if counted == total {
            return s;
        }
        assert!(
            counted < total && Instant::now() < deadline,
            "stats count {counted} requests, expected {total}: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the client saw, per (host, configured path label, status).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Tally {
    requests: u64,
    bytes_in: u64,
    bytes_out: u64,
}

type Tallies = BTreeMap<(String, String, u16), Tally>;

/// The known load: 1,000 requests over three keep-alive connections, one per host.
/// - obs-a.test: GET /page -> 200 with 100 bytes
/// - obs-b.test: alternately POST /api/x with 50 bytes -> 503 with 5 bytes, GET /api/y -> 404
///   with 1 byte
/// - obs-c.test: GET /exact -> 200 with 2,048 bytes; every 5th request GET /nope, which matches
///   no path (Sluice's own 404)
async fn known_load(gw: &Gateway) -> Tallies {
    let mut tasks = Vec::new();
    for (host_index, host) in ["obs-a.test", "obs-b.test", "obs-c.test"]
        .into_iter()
        .enumerate()
    {
        let addr = gw.http;
        tasks.push(tokio::spawn(async move {
            let mut tallies = Tallies::new();
            let mut conn = HttpConn::plain(addr).await.expect("connect");
            let count = [334, 333, 333][host_index];
            for i in 0..count {
                let (method, path, label, body) = match (host_index, i % 2, i % 5) {
                    (0, _, _) => (Method::GET, "/page?status=200&bytes=100", "/", 0),
                    (1, 0, _) => (Method::POST, "/api/x?status=503&bytes=5", "/api", 50),
                    (1, _, _) => (Method::GET, "/api/y?status=404&bytes=1", "/api", 0),
                    (_, _, 4) => (Method::GET, "/nope", "", 0),
                    _ => (Method::GET, "/exact?status=200&bytes=2048", "/exact", 0),
                };
                let r = conn
                    .request(method, host, path, &[], Bytes::from(vec![b'y'; body]))
                    .await
                    .expect("request through the gateway");
                let t = tallies
                    .entry((host.to_string(), label.to_string(), r.status))
                    .or_default();
                t.requests += 1;
                t.bytes_in += body as u64;
                t.bytes_out += r.body.len() as u64;
            }
            tallies
        }));
    }
    let mut all = Tallies::new();
    for task in tasks {
        all.extend(task.await.expect("load task"));
    }
    assert_eq!(all.values().map(|t| t.requests).sum::<u64>(), 1000);
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_load_is_counted_exactly_in_metrics_and_stats() {
    let dir = ManifestDir::new();
    three_hosts(&dir).await;
    let gw = Gateway::start(&dir, &[]).await;
    let tallies = known_load(&gw).await;
    let s = wait_for_total(&gw, 1000).await;

    // /api/v1/stats: per host totals, statuses, bytes, success rate; busiest first.
    for host in ["obs-a.test", "obs-b.test", "obs-c.test"] {
        let h = host_stats(&s, host).unwrap_or_else(|| panic!("{host} missing from stats: {s:#}"));
        let mine: Vec<(&(String, String, u16), &Tally)> = tallies
            .iter()
            .filter(|((th, _, _), _)| th == host)
            .collect();
        let requests: u64 = mine.iter().map(|(_, t)| t.requests).sum();
        let errors: u64 = mine
            .iter()
            .filter(|((_, _, st), _)| *st >= 500)
            .map(|(_, t)| t.requests)
            .sum();
        assert_eq!(h["requests"], requests, "{host}: {h:#}");
        assert_eq!(
            h["bytesIn"],
            mine.iter().map(|(_, t)| t.bytes_in).sum::<u64>(),
            "{host}"
        );
        assert_eq!(
            h["bytesOut"],
            mine.iter().map(|(_, t)| t.bytes_out).sum::<u64>(),
            "{host}"
        );
        let mut statuses = BTreeMap::new();
        for ((_, _, status), t) in &mine {
            *statuses.entry(status.to_string()).or_insert(0u64) += t.requests;
        }
        let seen: BTreeMap<String, u64> = h["statuses"]
            .as_object()
            .expect("statuses object")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
            .collect();
        assert_eq!(seen, statuses, "{host}");
        let expected_rate = (requests - errors) as f64 / requests as f64;
        let rate = h["successRate"].as_f64().expect("success rate");
        assert!(
            (rate - expected_rate).abs() < 0.001,
            "{host}: {rate} vs {expected_rate}"
        );
        let p50 = h["latencyMs"]["p50"].as_f64().expect("p50");
        let p99 = h["latencyMs"]["p99"].as_f64().expect("p99");
        assert!(p50 > 0.0 && p50 <= p99, "{host}: p50 {p50}, p99 {p99}");
    }
    let order: Vec<&str> = s["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .filter_map(|h| h["host"].as_str())
        .collect();
    assert_eq!(order[0], "obs-a.test", "the busiest host first: {order:?}");

    // ?host= keeps one host.
    let only_b = stats(&gw, "?host=obs-b.test").await;
    let hosts = only_b["hosts"].as_array().expect("hosts");
    assert_eq!(hosts.len(), 1, "{only_b:#}");
    assert_eq!(hosts[0]["requests"], 333);

    // /metrics: the same numbers per route, and a well-formed exposition.
    let text = metrics_text(&gw).await;
    let (types, samples) = parse_exposition(&text);
    assert_eq!(types["sluice_http_requests_total"], "counter");
    assert_eq!(types["sluice_http_request_duration_seconds"], "histogram");
    for ((host, path, status), t) in &tallies {
        let status = status.to_string();
        let route = [("host", host.as_str()), ("path", path.as_str())];
        let mut with_code = route.to_vec();
        with_code.push(("code", &status));
        assert_eq!(
            sum(&samples, "sluice_http_requests_total", &with_code),
            t.requests as f64,
            "{host} {path} {status}"
        );
        let route_total: u64 = tallies
            .iter()
            .filter(|((h, p, _), _)| h == host && p == path)
            .map(|(_, t)| t.requests)
            .sum();
        assert_eq!(
            sum(
                &samples,
                "sluice_http_request_duration_seconds_count",
                &route
            ),
            route_total as f64,
            "{host} {path}"
        );
        let mut inf = route.to_vec();
        inf.push(("le", "+Inf"));
        assert_eq!(
            sum(
                &samples,
                "sluice_http_request_duration_seconds_bucket",
                &inf
            ),
            route_total as f64
        );
    }
    for host in ["obs-a.test", "obs-b.test", "obs-c.test"] {
        let of_host = |pick: fn(&Tally) -> u64| {
            tallies
                .iter()
                .filter(|((h, _, _), _)| h == host)
                .map(|(_, t)| pick(t))
                .sum::<u64>() as f64
        };
        assert_eq!(
            sum(
                &samples,
                "sluice_http_request_body_bytes_total",
                &[("host", host)]
            ),
            of_host(|t| t.bytes_in),
            "{host}"
        );
        assert_eq!(
            sum(
                &samples,
                "sluice_http_response_body_bytes_total",
                &[("host", host)]
            ),
            of_host(|t| t.bytes_out),
            "{host}"
        );
    }
    // Labels are the configured route, never the request's URL.
    assert!(
        sum(
            &samples,
            "sluice_http_requests_total",
            &[
                ("host", "obs-b.test"),
                ("ingress", "ing-b"),
                ("namespace", NS),
                ("service", SVC),
                ("method", "POST"),
                ("code", "503")
            ]
        ) == 167.0,
        "{text}"
    );
    assert!(!text.contains("/api/x"), "raw URLs must not become labels");
    assert!(
        !text.contains("nginx_ingress_controller_"),
        "compat families only on request"
    );
    assert_eq!(
        sum(&samples, "sluice_config_snapshot_version", &[]),
        gw.version().await as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_nginx_compat_names_and_labels() {
    let dir = ManifestDir::new();
    three_hosts(&dir).await;
    let cert = TestCert::ecdsa(&["obs-a.test"]);
    dir.write("cert.yaml", &cert.secret(NS, "obs-a-tls"));
    dir.write(
        "a.yaml",
        &Ingress::new(NS, "ing-a")
            .rule("obs-a.test", vec![prefix("/", SVC)])
            .tls(&["obs-a.test"], "obs-a-tls")
            .yaml(),
    );
    let gw = Gateway::start(&dir, &["--metrics-compat", "ingress-nginx"]).await;
    // The certificate is served once its Secret is applied; the manifests were written before
    // start, so the first snapshot has it.
    let mut conn = HttpConn::plain(gw.http).await.expect("connect");
    for _ in 0..10 {
        let r = conn
            .get("obs-b.test", "/api/v?status=200&bytes=20")
            .await
            .expect("request");
        assert_eq!(r.status, 200);
    }
    wait_for_total(&gw, 10).await;

    let text = metrics_text(&gw).await;
    let (types, samples) = parse_exposition(&text);
    let p = "nginx_ingress_controller_";
    for (family, kind) in [
        ("requests", "counter"),
        ("request_duration_seconds", "histogram"),
        ("response_duration_seconds", "histogram"),
        ("request_size", "histogram"),
        ("response_size", "histogram"),
        ("bytes_sent", "histogram"),
        ("ingress_upstream_latency_seconds", "summary"),
        ("ssl_expire_time_seconds", "gauge"),
        ("config_hash", "gauge"),
        ("config_last_reload_successful", "gauge"),
        ("config_last_reload_successful_timestamp_seconds", "gauge"),
    ] {
        assert_eq!(
            types.get(&format!("{p}{family}")).map(String::as_str),
            Some(kind),
            "{family}"
        );
    }
    assert!(
        !types.contains_key(&format!("{p}requests_total")),
        "no OpenMetrics _total suffix"
    );

    let requests: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == format!("{p}requests"))
        .collect();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let expected: BTreeMap<String, String> = [
        ("canary", ""),
        ("controller_class", "sluice.dev/ingress-controller"),
        ("controller_namespace", ""),
        ("controller_pod", ""),
        ("host", "obs-b.test"),
        ("ingress", "ing-b"),
        ("method", "GET"),
        ("namespace", NS),
        ("path", "/api"),
        ("service", SVC),
        ("status", "200"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(requests[0].labels, expected);
    assert_eq!(requests[0].value, 10.0);
    // Labels are written in name order with `le` last, as client_golang does.
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{p}requests{{")))
        .expect("requests line");
    assert!(
        line.starts_with(&format!("{p}requests{{canary=\"\",controller_class=")),
        "{line}"
    );
    assert!(
        text.contains(",status=\"200\",le=\"10\"} 10\n"),
        "request_duration_seconds buckets"
    );
    assert!(
        text.contains(",status=\"200\",le=\"1e+07\"} 10\n"),
        "bytes_sent buckets as Go writes them"
    );

    let with = |name: &str, extra: &[(&str, &str)]| {
        let mut filter = vec![("host", "obs-b.test")];
        filter.extend_from_slice(extra);
        sum(&samples, &format!("{p}{name}"), &filter)
    };
    assert_eq!(with("request_duration_seconds_count", &[]), 10.0);
    assert_eq!(with("response_size_sum", &[]), 200.0);
    assert_eq!(with("response_size_bucket", &[("le", "20")]), 10.0);
    assert_eq!(with("response_size_bucket", &[("le", "10")]), 0.0);
    assert_eq!(with("bytes_sent_bucket", &[("le", "100")]), 10.0);
    assert_eq!(with("request_size_bucket", &[("le", "10")]), 10.0);
    let latency_count = sum(
        &samples,
        &format!("{p}ingress_upstream_latency_seconds_count"),
        &[("ingress", "ing-b"), ("service", SVC)],
    );
    assert_eq!(latency_count, 10.0);
    for q in ["0.5", "0.9", "0.99"] {
        assert!(
            samples
                .iter()
                .any(|s| s.name == format!("{p}ingress_upstream_latency_seconds")
                    && s.labels.get("quantile").map(String::as_str) == Some(q)
                    && s.labels.get("ingress").map(String::as_str) == Some("ing-b")),
            "quantile {q}"
        );
    }

    let expiry: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == format!("{p}ssl_expire_time_seconds"))
        .collect();
    assert_eq!(expiry.len(), 1, "{expiry:?}");
    let keys: Vec<&str> = expiry[0].labels.keys().map(String::as_str).collect();
    assert_eq!(keys, ["class", "host", "namespace"]);
    assert_eq!(expiry[0].labels["host"], "obs-a.test");
    assert_eq!(expiry[0].labels["namespace"], NS);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!(expiry[0].value > now, "the test certificate is still valid");
    assert_eq!(
        sum(&samples, &format!("{p}config_hash"), &[]),
        gw.version().await as f64
    );
    // The native families are still there.
    assert_eq!(
        sum(
            &samples,
            "sluice_http_requests_total",
            &[("host", "obs-b.test")]
        ),
        10.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_of_removed_hosts_disappear() {
    let dir = ManifestDir::new();
    three_hosts(&dir).await;
    let gw = Gateway::start(&dir, &[]).await;
    let mut conn = HttpConn::plain(gw.http).await.expect("connect");
    for host in ["obs-a.test", "obs-b.test"] {
        for _ in 0..5 {
            conn.get(host, "/api?status=200&bytes=3")
                .await
                .expect("request");
        }
    }
    wait_for_total(&gw, 10).await;
    assert!(metrics_text(&gw).await.contains("host=\"obs-b.test\""));

    let version = gw.version().await;
    dir.remove("b.yaml");
    wait_for("the removal of ing-b to apply", async || {
        (gw.version().await > version).then_some(())
    })
    .await;

    let text = metrics_text(&gw).await;
    assert!(
        !text.contains("obs-b.test"),
        "series of the removed host remain:\n{text}"
    );
    let s = stats(&gw, "").await;
    assert!(host_stats(&s, "obs-b.test").is_none(), "{s:#}");
    // Routes that survive a configuration change keep their counts.
    assert_eq!(
        host_stats(&s, "obs-a.test").expect("obs-a.test")["requests"],
        5
    );
    let (_, samples) = parse_exposition(&text);
    assert_eq!(
        sum(
            &samples,
            "sluice_http_requests_total",
            &[("host", "obs-a.test")]
        ),
        5.0
    );
}

fn scratch_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("sluice-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_has_one_json_line_per_request() {
    let dir = ManifestDir::new();
    three_hosts(&dir).await;
    let cert = TestCert::ecdsa(&["obs-a.test"]);
    dir.write("cert.yaml", &cert.secret(NS, "obs-a-tls"));
    dir.write(
        "a.yaml",
        &Ingress::new(NS, "ing-a")
            .rule("obs-a.test", vec![prefix("/", SVC)])
            .tls(&["obs-a.test"], "obs-a-tls")
            .annotation("nginx.ingress.kubernetes.io/ssl-redirect", "false")
            .yaml(),
    );
    dir.write(
        "quiet.yaml",
        &Ingress::new(NS, "ing-quiet")
            .annotation("nginx.ingress.kubernetes.io/enable-access-log", "false")
            .rule("obs-quiet.test", vec![prefix("/", SVC)])
            .yaml(),
    );
    let scratch = scratch_dir("access-log");
    let log = scratch.join("access.log");
    let log_arg = log.to_string_lossy().into_owned();
    let gw = Gateway::start(&dir, &["--access-log", &log_arg]).await;

    // Requests of the Ingress with enable-access-log "false" first: counted, never logged.
    let mut conn = HttpConn::plain(gw.http).await.expect("connect");
    for _ in 0..5 {
        conn.get("obs-quiet.test", "/q?status=200&bytes=1")
            .await
            .expect("request");
    }
    let mut sent = Vec::new();
    for i in 0..20u64 {
        let body = Bytes::from(vec![b'z'; (i * 3) as usize]);
        let (method, status) = if i % 4 == 0 {
            (Method::POST, 201)
        } else {
            (Method::GET, 200)
        };
        let r = conn
            .request(
                method.clone(),
                "obs-a.test",
                &format!("/item/{i}?status={status}&bytes={i}"),
                &[
                    ("user-agent", "obs-test/1"),
                    ("x-request-id", &format!("req-{i}")),
                ],
                body,
            )
            .await
            .expect("request");
        assert_eq!(r.status, status);
        sent.push((i, method, status));
    }
    let (mut tls, session) = HttpConn::tls(gw.https, "obs-a.test", tls_client(&[b"http/1.1"]))
        .await
        .expect("TLS connection");
    let r = tls
        .get("obs-a.test", "/secure?status=200&bytes=9")
        .await
        .expect("TLS request");
    assert_eq!(r.status, 200);

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let content = std::fs::read_to_string(&log).unwrap_or_default();
        if content.lines().count() >= 21 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} access log lines after 10 s:\n{content}",
            content.lines().count()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_for_total(&gw, 26).await;
    let content = std::fs::read_to_string(&log).expect("read access log");
    let lines: Vec<&str> = content.lines().collect();
    assert_eq!(
        lines.len(),
        21,
        "one line per logged request, none for obs-quiet.test:\n{content}"
    );
    let entries: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        entries.iter().all(|e| e["host"] == "obs-a.test"),
        "{content}"
    );

    for (i, method, status) in &sent {
        let e = entries
            .iter()
            .find(|e| e["request_id"] == format!("req-{i}"))
            .unwrap_or_else(|| panic!("no line for request {i}:\n{content}"));
        assert_eq!(e["method"], method.as_str());
        assert_eq!(e["path"], format!("/item/{i}"));
        assert_eq!(e["query"], format!("status={status}&bytes={i}"));
        assert_eq!(e["status"], *status);
        assert_eq!(e["request_bytes"], i * 3);
        assert_eq!(e["response_bytes"], *i);
        assert_eq!(e["client"], "127.0.0.1");
        assert_eq!(e["protocol"], "HTTP/1.1");
        assert_eq!(e["namespace"], NS);
        assert_eq!(e["ingress"], "ing-a");
        assert_eq!(e["service"], SVC);
        assert_eq!(e["route_path"], "/");
        assert_eq!(e["user_agent"], "obs-test/1");
        assert_eq!(e["canary"], false);
        assert_eq!(e["tls_version"], Value::Null);
        assert!(
            e["upstream_addr"]
                .as_str()
                .is_some_and(|a| a.starts_with("127.0.0.1:")),
            "{e}"
        );
        assert!(
            e["upstream_latency_ms"]
                .as_f64()
                .is_some_and(|ms| ms >= 0.0),
            "{e}"
        );
        assert!(
            e["duration_ms"]
                .as_f64()
                .is_some_and(|ms| ms >= e["upstream_latency_ms"].as_f64().unwrap_or(0.0)),
            "{e}"
        );
        assert!(
            e["time"]
                .as_str()
                .is_some_and(|t| t.len() == 24 && t.ends_with('Z')),
            "{e}"
        );
    }
    let secure = entries
        .iter()
        .find(|e| e["path"] == "/secure")
        .unwrap_or_else(|| panic!("no line for the TLS request:\n{content}"));
    let version = match session.version {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        other => panic!("unexpected TLS version {other:?}"),
    };
    assert_eq!(secure["tls_version"], version);
    let cipher = session
        .cipher_suite
        .and_then(|c| c.as_str())
        .expect("cipher suite");
    assert_eq!(secure["tls_cipher"], cipher);
    assert!(
        secure["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "a generated request id is logged"
    );
    let _ = std::fs::remove_dir_all(&scratch);
}

/// Sends requests to `host` until stopped.
struct Traffic {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
}

impl Traffic {
    fn start(addr: SocketAddr, host: &'static str) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (s, n) = (stop.clone(), sent.clone());
        tokio::spawn(async move {
            let mut conn = HttpConn::plain(addr).await.expect("connect");
            while !s.load(Ordering::Relaxed) {
                if conn.get(host, "/live?status=200&bytes=512").await.is_ok() {
                    n.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        Traffic { stop, sent }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn chromium() -> String {
    std::env::var("SLUICE_CHROMIUM").unwrap_or_else(|_| "chromium".to_string())
}

/// Runs headless chromium on `url` with `mode` (`--dump-dom` or `--screenshot=FILE`).
async fn run_chromium(url: &str, mode: &str, profile: &std::path::Path) -> String {
    let run = tokio::process::Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,900",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(mode)
        .arg(url)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("chromium finished within 90 s")
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}); install Debian's chromium (apt-get install -y chromium) or \
                 point SLUICE_CHROMIUM at a Chromium binary",
                chromium()
            )
        });
    assert!(
        out.status.success(),
        "chromium failed: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `data-*` attributes of the dashboard row of `host`.
fn dashboard_row(dom: &str, host: &str) -> Option<HashMap<String, String>> {
    let start = dom.find(&format!("<tr data-host=\"{host}\""))?;
    let tag = &dom[start..start + dom[start..].find('>')?];
    Some(
        tag.split(" data-")
            .skip(1)
            .filter_map(|attr| {
                let (k, v) = attr.split_once('=')?;
                Some((k.to_string(), v.trim_matches('"').to_string()))
            })
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_live_numbers_in_a_headless_browser() {
    let dir = ManifestDir::new();
    three_hosts(&dir).await;
    let gw = Gateway::start(&dir, &[]).await;
    let traffic = Traffic::start(gw.http, "obs-a.test");
    let page = gw.admin_get("/").await.expect("GET /");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let without_svg_namespace = page.body.replace("http://www.w3.org/2000/svg", "");
    assert!(
        !without_svg_namespace.contains("http://") && !without_svg_namespace.contains("https://"),
        "the page refers to nothing outside itself"
    );
    assert!(
        !page.body.contains("<script src") && !page.body.contains("<link"),
        "no external assets"
    );

    // Wait until a whole second of traffic has been counted, so QPS 1s is live.
    wait_for("a non-zero 1 s rate for obs-a.test", async || {
        let s = stats(&gw, "?host=obs-a.test").await;
        (s["hosts"][0]["qps1s"].as_f64().unwrap_or(0.0) > 0.0).then_some(())
    })
    .await;

    let url = format!("http://{}/", gw.admin);
    let profile = scratch_dir("chromium");
    let dom = run_chromium(&url, "--dump-dom", &profile.join("dom")).await;
    let row = dashboard_row(&dom, "obs-a.test")
        .unwrap_or_else(|| panic!("the dashboard shows no row for obs-a.test:\n{dom}"));
    let qps: f64 = row.get("qps1").and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let requests: u64 = row
        .get("requests")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(qps > 0.0, "QPS on the dashboard: {row:?}");
    assert!(requests > 0, "requests on the dashboard: {row:?}");
    let version = dom
        .split_once("id=\"version\">")
        .and_then(|(_, rest)| rest.split_once('<'))
        .map(|(v, _)| v.to_string())
        .unwrap_or_default();
    assert!(
        version.parse::<u64>().is_ok_and(|v| v >= 1),
        "snapshot version shown: {version:?}"
    );
    assert!(
        dom.contains("live · updated"),
        "the page reached the admin API"
    );

    let screenshot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    run_chromium(
        &url,
        &format!("--screenshot={}", screenshot.display()),
        &profile.join("shot"),
    )
    .await;
    let png = std::fs::read(&screenshot).expect("chromium wrote the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "the screenshot is a PNG");
    println!(
        "dashboard screenshot: {} ({} bytes, {} requests sent while it loaded)",
        screenshot.display(),
        png.len(),
        traffic.sent.load(Ordering::Relaxed)
    );
    drop(traffic);
    let _ = std::fs::remove_dir_all(&profile);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_requests_are_labelled() {
    let dir = ManifestDir::new();
    let backend = sized_backend().await;
    dir.write(
        "svc.yaml",
        &service_with_slices(NS, SVC, &[(backend.port(), true)]),
    );
    dir.write(
        "svc-canary.yaml",
        &service_with_slices(NS, "sized-canary", &[(backend.port(), true)]),
    );
    dir.write(
        "primary.yaml",
        &Ingress::new(NS, "ing-main")
            .rule("obs-canary.test", vec![prefix("/", SVC)])
            .yaml(),
    );
    dir.write(
        "canary.yaml",
        &Ingress::new(NS, "ing-canary")
            .annotation("nginx.ingress.kubernetes.io/canary", "true")
            .annotation("nginx.ingress.kubernetes.io/canary-by-header", "x-canary")
            .rule("obs-canary.test", vec![prefix("/", "sized-canary")])
            .yaml(),
    );
    let gw = Gateway::start(&dir, &["--metrics-compat", "ingress-nginx"]).await;
    let mut conn = HttpConn::plain(gw.http).await.expect("connect");
    for canary in [true, false, true, false, true] {
        let headers: &[(&str, &str)] = if canary {
            &[("x-canary", "always")]
        } else {
            &[]
        };
        let r = conn
            .send("obs-canary.test", "/c?status=200&bytes=4", headers)
            .await
            .expect("request");
        assert_eq!(r.status, 200);
    }
    wait_for_total(&gw, 5).await;
    let text = metrics_text(&gw).await;
    let (_, samples) = parse_exposition(&text);
    let host = ("host", "obs-canary.test");
    // Canary requests count under the primary route, marked as canary.
    assert_eq!(
        sum(
            &samples,
            "sluice_http_requests_total",
            &[host, ("ingress", "ing-main"), ("canary", "true")]
        ),
        3.0,
        "{text}"
    );
    assert_eq!(
        sum(
            &samples,
            "sluice_http_requests_total",
            &[host, ("canary", "false")]
        ),
        2.0
    );
    assert_eq!(
        sum(
            &samples,
            "nginx_ingress_controller_requests",
            &[host, ("canary", "canary")]
        ),
        3.0
    );
    assert_eq!(
        sum(
            &samples,
            "nginx_ingress_controller_requests",
            &[host, ("canary", "")]
        ),
        2.0
    );
}
