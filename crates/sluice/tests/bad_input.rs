//! Bad input is quarantined, never contagious: each broken file, path, reference, Secret or
//! annotation is reported with its place and reason, and everything else keeps serving.
//! `sluice check` reports the same problems and sets its exit code.

mod common;

use common::*;
use serde_json::{Value, json};
use std::path::Path;

const NS: &str = "bad";

fn origin_file(problem: &Value) -> &str {
    problem["origin"]["path"].as_str().unwrap_or("")
}

fn origin_line(problem: &Value) -> u64 {
    problem["origin"]["line"].as_u64().unwrap_or(0)
}

fn is_object(problem: &Value, kind: &str, name: &str) -> bool {
    problem["object"]["kind"] == kind
        && problem["object"]["namespace"] == NS
        && problem["object"]["name"] == name
}

/// Text of a problem for substring checks on what it says.
fn said(problem: &Value) -> String {
    format!(
        "{} {}",
        problem["field"].as_str().unwrap_or(""),
        problem["reason"].as_str().unwrap_or("")
    )
}

const BROKEN_YAML: &str = "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: kept
  namespace: bad
spec: [this list is never closed
  rules: {
";

/// Writes the bad objects (plus good ones) used by both tests below.
fn write_bad_objects(dir: &ManifestDir, backend: &Backend) {
    dir.write("svc.yaml", &backend_service(NS, backend));
    dir.write(
        "good.yaml",
        &Ingress::new(NS, "good")
            .rule("good.test", vec![prefix("/", "good")])
            .yaml(),
    );
    // Exact path without a leading '/': that path only is rejected.
    dir.write(
        "exact-no-slash.yaml",
        &Ingress::new(NS, "paths")
            .rule(
                "paths.test",
                vec![exact("foo", "good"), prefix("/ok", "good")],
            )
            .yaml(),
    );
    // A Service that does not exist: 503 for its paths only.
    dir.write(
        "missing-service.yaml",
        &Ingress::new(NS, "missing")
            .rule(
                "missing.test",
                vec![prefix("/gone", "no-such-service"), prefix("/here", "good")],
            )
            .yaml(),
    );
    // A TLS Secret whose PEM is garbage: reported; the host is served with the default cert.
    let garbage = to_secret_with_garbage("garbage");
    dir.write(
        "garbage-secret.yaml",
        &docs(&[
            garbage,
            Ingress::new(NS, "garbage")
                .tls(&["garbage.test"], "garbage")
                .rule("garbage.test", vec![prefix("/", "good")])
                .yaml(),
        ]),
    );
    // A malformed annotation value: that Ingress is rejected.
    dir.write(
        "bad-annotation.yaml",
        &Ingress::new(NS, "slow")
            .annotation("nginx.ingress.kubernetes.io/proxy-read-timeout", "abc")
            .rule("slow.test", vec![prefix("/", "good")])
            .yaml(),
    );
}

fn to_secret_with_garbage(name: &str) -> String {
    tls_secret(
        NS,
        name,
        "-----BEGIN CERTIFICATE-----\nthis is not a certificate\n-----END CERTIFICATE-----\n",
        "-----BEGIN PRIVATE KEY-----\nnor is this a key\n-----END PRIVATE KEY-----\n",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_objects_are_quarantined_and_reported() {
    let dir = ManifestDir::new();
    let good = Backend::echo("good").await;
    write_bad_objects(&dir, &good);
    dir.write(
        "kept.yaml",
        &Ingress::new(NS, "kept")
            .rule("kept.test", vec![prefix("/", "good")])
            .yaml(),
    );
    let gw = Gateway::start(&dir, &[]).await;

    assert_eq!(gw.backend_of("good.test", "/").await, "good");
    assert_eq!(gw.backend_of("kept.test", "/").await, "good");

    // Exact "foo": only that path is rejected.
    assert_eq!(gw.backend_of("paths.test", "/ok").await, "good");
    assert_eq!(gw.status_of("paths.test", "/foo").await, 404);
    let problems = gw.problems().await;
    let p = problems
        .iter()
        .find(|p| is_object(p, "Ingress", "paths"))
        .unwrap_or_else(|| panic!("no problem reported for Ingress bad/paths: {problems:#?}"));
    assert_eq!(p["severity"], "rejected", "{p}");
    assert!(origin_file(p).ends_with("exact-no-slash.yaml"), "{p}");
    assert_eq!(origin_line(p), 1, "the Ingress starts on line 1: {p}");
    assert!(
        p["field"].as_str().is_some_and(|f| f.contains("paths[0]")),
        "the field must name the bad path: {p}"
    );

    // Missing Service: 503 for its path, the rest of the Ingress serves.
    assert_eq!(gw.status_of("missing.test", "/gone").await, 503);
    let r = gw
        .get("missing.test", "/gone")
        .await
        .expect("GET missing.test/gone");
    assert!(!r.body.trim().is_empty(), "503 needs a body saying why");
    assert_eq!(gw.backend_of("missing.test", "/here").await, "good");
    let p = problems
        .iter()
        .find(|p| is_object(p, "Ingress", "missing"))
        .unwrap_or_else(|| panic!("no problem reported for the missing Service: {problems:#?}"));
    assert_eq!(p["severity"], "warning", "{p}");
    assert!(
        p["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no-such-service") && r.contains("503")),
        "{p}"
    );

    // Garbage PEM: reported, and the host is served over TLS with the default (fake) certificate.
    let p = problems
        .iter()
        .find(|p| p["object"]["name"] == "garbage" && p["object"]["namespace"] == NS)
        .unwrap_or_else(|| panic!("no problem reported for the garbage Secret: {problems:#?}"));
    assert!(origin_file(p).ends_with("garbage-secret.yaml"), "{p}");
    assert!(!said(p).trim().is_empty(), "{p}");
    let session = tls_handshake(gw.https, "garbage.test", default_tls_client())
        .await
        .expect("TLS handshake for garbage.test");
    assert!(
        session
            .peer_cert
            .windows(b"Sluice Fake Certificate".len())
            .any(|w| w == b"Sluice Fake Certificate"),
        "garbage.test must be served with the default certificate"
    );
    let r = gw
        .get_tls("garbage.test", "/")
        .await
        .expect("GET https://garbage.test/");
    assert_eq!(r.backend().as_deref(), Some("good"), "{}", r.body);

    // Malformed annotation: that Ingress is rejected and reported; others serve.
    assert_eq!(gw.status_of("slow.test", "/").await, 404);
    let p = problems
        .iter()
        .find(|p| is_object(p, "Ingress", "slow"))
        .unwrap_or_else(|| panic!("no problem reported for Ingress bad/slow: {problems:#?}"));
    assert_eq!(p["severity"], "rejected", "{p}");
    assert!(
        said(p).contains("proxy-read-timeout"),
        "must name the annotation: {p}"
    );
    assert!(origin_file(p).ends_with("bad-annotation.yaml"), "{p}");

    // A file turns into invalid YAML: reported with file:line; what it held stays served.
    let version = gw.version().await;
    dir.write("kept.yaml", BROKEN_YAML);
    let p = gw
        .wait_problem("kept.yaml unreadable", |p| {
            origin_file(p).ends_with("kept.yaml")
        })
        .await;
    assert_eq!(p["severity"], "rejected", "{p}");
    let line = origin_line(&p);
    assert!(
        (1..=BROKEN_YAML.lines().count() as u64 + 1).contains(&line),
        "line {line} is not in the file: {p}"
    );
    assert!(!said(&p).trim().is_empty(), "{p}");
    assert_eq!(gw.backend_of("kept.test", "/").await, "good");
    assert_eq!(gw.backend_of("good.test", "/").await, "good");
    assert_eq!(gw.backend_of("paths.test", "/ok").await, "good");
    assert!(gw.version().await >= version);

    // Fixed again (now pointing elsewhere): applied, and the problem is gone.
    dir.write(
        "kept.yaml",
        &Ingress::new(NS, "kept")
            .rule("kept.test", vec![prefix("/", "good")])
            .rule("kept-again.test", vec![prefix("/", "good")])
            .yaml(),
    );
    gw.wait_backend("kept-again.test", "/", "good").await;
    wait_for("the kept.yaml problem to clear", async || {
        let problems = gw.problems().await;
        (!problems
            .iter()
            .any(|p| origin_file(p).ends_with("kept.yaml")))
        .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_file_line_object_and_reason() {
    let dir = ManifestDir::new();
    let good = Backend::echo("good").await;
    write_bad_objects(&dir, &good);
    dir.write("broken.yaml", BROKEN_YAML);

    let (code, out) = run_check(dir.path(), &[]);
    assert_eq!(code, 1, "rejected objects must make check exit 1:\n{out}");
    let expect_line = |needle: &str| {
        assert!(
            out.lines().any(|l| l.contains(needle)),
            "no line containing {needle:?} in:\n{out}"
        );
    };
    expect_line("exact-no-slash.yaml:1: Ingress bad/paths rejected at spec.rules[0].http.paths[0]");
    expect_line("bad-annotation.yaml:1: Ingress bad/slow rejected");
    assert!(
        out.lines()
            .any(|l| l.contains("Ingress bad/slow rejected") && l.contains("proxy-read-timeout")),
        "the annotation problem must name the annotation:\n{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("broken.yaml:") && l.contains("rejected")),
        "the unreadable file must be reported with file:line:\n{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("garbage-secret.yaml:") && l.contains("garbage")),
        "the garbage Secret must be reported:\n{out}"
    );
    // The problems also carry the reason after the last ": ".
    for line in out.lines().filter(|l| l.contains(" rejected")) {
        let reason = line.rsplit_once(": ").map(|(_, r)| r.trim()).unwrap_or("");
        assert!(!reason.is_empty(), "problem without a reason: {line}");
    }

    // Only good objects: exit 0.
    let clean = ManifestDir::new();
    clean.write("svc.yaml", &backend_service(NS, &good));
    clean.write(
        "good.yaml",
        &Ingress::new(NS, "good")
            .rule("good.test", vec![prefix("/", "good")])
            .yaml(),
    );
    let (code, out) = run_check(clean.path(), &[]);
    assert_eq!(code, 0, "a clean directory must pass:\n{out}");

    // The shipped example passes.
    let quickstart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart");
    let (code, out) = run_check(&quickstart, &[]);
    assert_eq!(code, 0, "examples/quickstart must pass check:\n{out}");
    assert!(
        !out.lines()
            .any(|l| l.contains(" rejected at ") || l.contains(" rejected: ")),
        "{out}"
    );
}

#[test]
fn yaml_builder_emits_block_style() {
    // The harness itself: lists of maps and nested keys come out as ordinary manifests.
    let v = json!({"a": {"b": [{"c": 1, "d": "x"}, "y"], "e": []}});
    assert_eq!(
        manifests_to_yaml(&v),
        "a:\n  b:\n    - c: 1\n      d: \"x\"\n    - \"y\"\n  e: []\n"
    );
}

fn manifests_to_yaml(v: &Value) -> String {
    common::manifests::to_yaml(v)
}
