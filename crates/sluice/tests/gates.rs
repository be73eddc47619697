//! Tengine-Ingress's global-consistency features, end to end with the real binary: the
//! IngressCheckSum/SecretCheckSum gates, `sluice checksum`, and gray rollout per Ingress and per
//! Secret across three instances with their own ordinals and state directories.

mod common;

use common::*;
use serde_json::{Value, json};
use std::path::PathBuf;

const NS: &str = "gates";
const PREFIX: &str = "nginx.ingress.kubernetes.io/";

fn checksum_object(kind: &str, name: &str, checksum: &str, ids: &[&str]) -> String {
    to_yaml(&json!({
        "apiVersion": "tengine.taobao.org/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": NS},
        "spec": {"timestamp": "2024-05-01T00:00:00Z", "checksum": checksum, "ids": ids},
    }))
}

fn gate(snapshot: &Value, which: &str) -> Value {
    snapshot["checksumGate"][which].clone()
}

/// Waits until `gateway` has applied a configuration newer than `after` and `check` holds on its
/// snapshot.
async fn wait_snapshot(gateway: &Gateway, after: u64, what: &str, check: impl Fn(&Value) -> bool) {
    wait_for(what, async || {
        let s = gateway.snapshot().await;
        (s["version"].as_u64().unwrap_or(0) > after && check(&s)).then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_checksum_holds_ingress_changes_while_endpoints_keep_flowing() {
    let (a, a2, b) = (
        Backend::echo("a").await,
        Backend::echo("a2").await,
        Backend::echo("b").await,
    );
    let dir = ManifestDir::new();
    dir.write(
        "web.yaml",
        &service_with_slices(NS, "web", &[(a.port(), true)]),
    );
    dir.write("other.yaml", &backend_service(NS, &b));
    let shop = |version: &str, service: &str| {
        Ingress::new(NS, "shop-100")
            .annotation(&format!("{PREFIX}version"), version)
            .rule("gate.test", vec![prefix("/", service)])
            .yaml()
    };
    dir.write("shop.yaml", &shop("1", "web"));
    // md5("100-1")
    let v1_sum = "77c32878c6fe916f4ad27eae832464b5";
    dir.write(
        "sum.yaml",
        &checksum_object("IngressCheckSum", "ing-sum", v1_sum, &["100-1"]),
    );
    let gw = Gateway::start(&dir, &[]).await;
    assert_eq!(gw.backend_of("gate.test", "/").await, "a");
    let ingress = gate(&gw.snapshot().await, "ingress");
    assert_eq!(ingress["state"], "pass", "{ingress}");
    assert_eq!(ingress["localChecksum"], v1_sum);
    assert_eq!(gate(&gw.snapshot().await, "secret")["state"], "none");

    // The control plane has not confirmed version 2 yet: the change is held.
    let before = gw.version().await;
    dir.write("shop.yaml", &shop("2", "b"));
    wait_snapshot(&gw, before, "the Ingress gate to fail", |s| {
        gate(s, "ingress")["state"] == "fail"
    })
    .await;
    let ingress = gate(&gw.snapshot().await, "ingress");
    assert_eq!(ingress["heldChanges"], 1, "{ingress}");
    assert_eq!(ingress["expected"], v1_sum);
    assert_eq!(ingress["lastDiff"]["missing"], json!(["100-1"]));
    assert_eq!(ingress["lastDiff"]["unexpected"], json!(["100-2"]));
    let problem = gw
        .wait_problem("checksum mismatch", |p| {
            p["reason"]
                .as_str()
                .is_some_and(|r| r.contains("Ingress checksum mismatch"))
        })
        .await;
    assert_eq!(problem["object"]["kind"], "IngressCheckSum", "{problem}");
    assert_eq!(gw.backend_of("gate.test", "/").await, "a");
    let metrics = gw.admin_get("/metrics").await.expect("GET /metrics").body;
    let sample = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /metrics:\n{metrics}"))
    };
    assert!(sample("sluice_checksum_success_total{kind=\"ingress\"}") >= 1);
    assert!(sample("sluice_checksum_errors{kind=\"ingress\"}") >= 1);

    // Endpoints are not Ingress changes: they still apply.
    dir.write(
        "web.yaml",
        &service_with_slices(NS, "web", &[(a2.port(), true)]),
    );
    gw.wait_backend("gate.test", "/", "a2").await;
    assert_eq!(gate(&gw.snapshot().await, "ingress")["state"], "fail");

    // The control plane confirms version 2 (an in-place update of the same object counts).
    dir.write(
        "sum.yaml",
        &checksum_object(
            "IngressCheckSum",
            "ing-sum",
            "9fc2476999a37d4e36cbe4f206122495",
            &["100-2"],
        ),
    );
    gw.wait_backend("gate.test", "/", "b").await;
    let ingress = gate(&gw.snapshot().await, "ingress");
    assert_eq!(ingress["state"], "pass", "{ingress}");
    assert_eq!(ingress["heldChanges"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_checksum_holds_certificate_changes_only() {
    let web = Backend::echo("web").await;
    let other = Backend::echo("other").await;
    let old = TestCert::ecdsa(&["cert.test"]);
    let new = TestCert::ecdsa(&["cert.test"]);
    let dir = ManifestDir::new();
    dir.write("web.yaml", &backend_service(NS, &web));
    dir.write("other.yaml", &backend_service(NS, &other));
    let secret = |cert: &TestCert, version: &str| {
        to_yaml(&json!({
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": "site-5", "namespace": NS,
                "annotations": {format!("{PREFIX}version"): version}},
            "stringData": {"tls.crt": cert.cert_pem, "tls.key": cert.key_pem},
        }))
    };
    dir.write("secret.yaml", &secret(&old, "1"));
    let site = |service: &str| {
        Ingress::new(NS, "site")
            .rule("cert.test", vec![prefix("/", service)])
            .tls(&["cert.test"], "site-5")
            .yaml()
    };
    dir.write("site.yaml", &site("web"));
    // The gateway's own computation of the expected checksum: `sluice checksum` on this dir.
    let sum_of = |dir: &ManifestDir| -> String {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("checksum")
            .arg(dir.path())
            .output()
            .expect("run sluice checksum");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .find_map(|l| l.strip_prefix("Secret checksum: "))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("no Secret checksum in: {text}"))
            .to_string()
    };
    let sum = sum_of(&dir);
    dir.write(
        "sum.yaml",
        &checksum_object("SecretCheckSum", "sec-sum", &sum, &[]),
    );
    let gw = Gateway::start(&dir, &[]).await;
    let presented = async || {
        tls_handshake(gw.https, "cert.test", default_tls_client())
            .await
            .expect("handshake")
            .peer_cert
    };
    assert_eq!(presented().await, old.der);
    assert_eq!(gate(&gw.snapshot().await, "secret")["state"], "pass");

    let before = gw.version().await;
    dir.write("secret.yaml", &secret(&new, "2"));
    wait_snapshot(&gw, before, "the Secret gate to fail", |s| {
        gate(s, "secret")["state"] == "fail" && gate(s, "secret")["heldChanges"] == 1
    })
    .await;
    assert_eq!(presented().await, old.der, "a held certificate was served");

    // Ingress changes are not held by the Secret gate.
    dir.write("site.yaml", &site("other"));
    wait_for("https://cert.test/ to be served by other", async || {
        let r = gw.get_tls("cert.test", "/").await.ok()?;
        (r.backend().as_deref() == Some("other")).then_some(())
    })
    .await;
    assert_eq!(presented().await, old.der);

    let sum = sum_of(&dir);
    dir.write(
        "sum.yaml",
        &checksum_object("SecretCheckSum", "sec-sum", &sum, &[]),
    );
    wait_for("the new certificate", async || {
        (presented().await == new.der).then_some(())
    })
    .await;
    assert_eq!(gate(&gw.snapshot().await, "secret")["state"], "pass");
}

#[test]
fn checksum_command_prints_ids_sorted_as_strings_and_the_md5() {
    let dir = ManifestDir::new();
    for (name, version) in [("shop-27524", "1"), ("shop-123992", "1"), ("no-id", "3")] {
        dir.write(
            &format!("{name}.yaml"),
            &Ingress::new(NS, name)
                .annotation(&format!("{PREFIX}version"), version)
                .rule("x.test", vec![prefix(&format!("/{name}"), "web")])
                .yaml(),
        );
    }
    // Not ours (class filter): never counted.
    dir.write(
        "foreign.yaml",
        &Ingress::new(NS, "foreign-5")
            .class("nginx")
            .annotation(&format!("{PREFIX}version"), "1")
            .rule("y.test", vec![prefix("/", "web")])
            .yaml(),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("checksum")
        .arg(dir.path())
        .output()
        .expect("run sluice checksum");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    assert!(out.status.success());
    assert!(
        text.contains("Ingress checksum: 294560cb5ddc0f5b4ad1fde6916622c0 (2 IDs)"),
        "{text}"
    );
    assert!(text.contains("joined: 123992-1,27524-1"), "{text}");
    assert!(
        text.contains("Secret checksum: d41d8cd98f00b204e9800998ecf8427e (0 IDs)"),
        "{text}"
    );

    dir.write(
        "sum.yaml",
        &checksum_object("IngressCheckSum", "s", "0123", &[]),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("checksum")
        .arg(dir.path())
        .output()
        .expect("run sluice checksum");
    assert_eq!(
        out.status.code(),
        Some(1),
        "a differing checksum object exits 1"
    );
}

/// One gateway of a StatefulSet-like group: its ordinal and its own state directory.
struct Member {
    ordinal: u32,
    state: PathBuf,
}

impl Member {
    fn new(ordinal: u32, root: &ManifestDir) -> Member {
        Member {
            ordinal,
            state: root.path().join(format!("state-{ordinal}")),
        }
    }

    async fn start(&self, dir: &ManifestDir) -> Gateway {
        let ordinal = self.ordinal.to_string();
        let state = self.state.to_string_lossy().into_owned();
        Gateway::start(
            dir,
            &["--instance-ordinal", &ordinal, "--state-dir", &state],
        )
        .await
    }
}

fn rolled_ingress(service: &str, index: Option<&str>) -> String {
    let mut ingress = Ingress::new(NS, "roll-7").rule("roll.test", vec![prefix("/", service)]);
    if let Some(index) = index {
        ingress = ingress
            .annotation(&format!("{PREFIX}ingress-rollout"), "true")
            .annotation(&format!("{PREFIX}ingress-rollout-index-id"), index)
            .annotation(&format!("{PREFIX}ingress-rollout-update-revision"), "r2");
    }
    ingress.yaml()
}

/// Writes the next step of a rollout and waits until every gateway has applied it.
async fn step(dir: &ManifestDir, gateways: &[&Gateway], file: &str, content: &str) {
    let mut versions = Vec::new();
    for gw in gateways {
        versions.push(gw.version().await);
    }
    dir.write(file, content);
    for (gw, before) in gateways.iter().zip(versions) {
        wait_snapshot(gw, before, &format!("{file} applied"), |_| true).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_rollout_moves_instance_by_instance_and_survives_a_restart() {
    let (v1, v2) = (Backend::echo("v1").await, Backend::echo("v2").await);
    let dir = ManifestDir::new();
    let states = ManifestDir::new();
    dir.write("v1.yaml", &backend_service(NS, &v1));
    dir.write("v2.yaml", &backend_service(NS, &v2));
    dir.write("roll.yaml", &rolled_ingress("v1", None));
    let members: Vec<Member> = (0..3).map(|k| Member::new(k, &states)).collect();
    let mut gws = Vec::new();
    for m in &members {
        gws.push(m.start(&dir).await);
    }
    for gw in &gws {
        assert_eq!(gw.backend_of("roll.test", "/").await, "v1");
    }

    let expect = async |gws: &[Gateway], served: [&str; 3]| {
        for (k, (gw, want)) in gws.iter().zip(served).enumerate() {
            assert_eq!(
                gw.backend_of("roll.test", "/").await,
                want,
                "instance with ordinal {k}"
            );
        }
    };
    let all: Vec<&Gateway> = gws.iter().collect();
    step(&dir, &all, "roll.yaml", &rolled_ingress("v2", Some("0"))).await;
    expect(&gws, ["v1", "v1", "v1"]).await;
    assert_eq!(gate(&gws[0].snapshot().await, "ingress")["rolloutHeld"], 1);
    step(&dir, &all, "roll.yaml", &rolled_ingress("v2", Some("1"))).await;
    expect(&gws, ["v2", "v1", "v1"]).await;
    step(&dir, &all, "roll.yaml", &rolled_ingress("v2", Some("2"))).await;
    expect(&gws, ["v2", "v2", "v1"]).await;

    // Ordinal 2 restarts mid-rollout (killed, no clean shutdown): it keeps serving v1.
    drop(all);
    let old = gws.pop().expect("third gateway");
    drop(old);
    gws.push(members[2].start(&dir).await);
    expect(&gws, ["v2", "v2", "v1"]).await;

    let all: Vec<&Gateway> = gws.iter().collect();
    step(&dir, &all, "roll.yaml", &rolled_ingress("v2", Some("-1"))).await;
    expect(&gws, ["v2", "v2", "v2"]).await;

    // Deletes are never held by a rollout.
    let held = rolled_ingress("v1", Some("0"));
    step(&dir, &all, "roll.yaml", &held).await;
    expect(&gws, ["v2", "v2", "v2"]).await;
    dir.remove("roll.yaml");
    for gw in &gws {
        gw.wait_status("roll.test", "/", 404).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_rollout_keeps_the_old_certificate_until_the_index_reaches_the_instance() {
    let web = Backend::echo("web").await;
    let (old, new) = (
        TestCert::ecdsa(&["roll.test"]),
        TestCert::ecdsa(&["roll.test"]),
    );
    let dir = ManifestDir::new();
    let states = ManifestDir::new();
    dir.write("web.yaml", &backend_service(NS, &web));
    dir.write(
        "site.yaml",
        &Ingress::new(NS, "site")
            .rule("roll.test", vec![prefix("/", "web")])
            .tls(&["roll.test"], "roll-cert")
            .yaml(),
    );
    let secret = |cert: &TestCert, index: Option<&str>| {
        let mut v = json!({
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": "roll-cert", "namespace": NS},
            "stringData": {"tls.crt": cert.cert_pem, "tls.key": cert.key_pem},
        });
        if let Some(index) = index {
            v["metadata"]["annotations"] = json!({
                format!("{PREFIX}secret-rollout"): "true",
                format!("{PREFIX}secret-rollout-index-id"): index,
            });
        }
        to_yaml(&v)
    };
    dir.write("cert.yaml", &secret(&old, None));
    let members: Vec<Member> = (0..2).map(|k| Member::new(k, &states)).collect();
    let mut gws = vec![members[0].start(&dir).await, members[1].start(&dir).await];
    let presented = async |gw: &Gateway| {
        tls_handshake(gw.https, "roll.test", default_tls_client())
            .await
            .expect("handshake")
            .peer_cert
    };
    for gw in &gws {
        assert_eq!(presented(gw).await, old.der);
    }

    let all: Vec<&Gateway> = gws.iter().collect();
    step(&dir, &all, "cert.yaml", &secret(&new, Some("1"))).await;
    assert_eq!(
        presented(&gws[0]).await,
        new.der,
        "ordinal 0 is in the batch"
    );
    assert_eq!(presented(&gws[1]).await, old.der, "ordinal 1 is not");

    drop(all);
    let restarted = gws.pop().expect("second gateway");
    drop(restarted);
    gws.push(members[1].start(&dir).await);
    assert_eq!(
        presented(&gws[1]).await,
        old.der,
        "a restart keeps the served certificate"
    );

    let all: Vec<&Gateway> = gws.iter().collect();
    step(&dir, &all, "cert.yaml", &secret(&new, Some("-1"))).await;
    for gw in &gws {
        assert_eq!(presented(gw).await, new.der);
    }
}
