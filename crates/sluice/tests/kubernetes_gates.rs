//! The checksum gate and gray rollout in Kubernetes mode, against a real kube-apiserver with the
//! shipped checksum CRDs: replicas take their ordinal from `POD_NAME` and the gate reads
//! IngressCheckSum objects from the API server.

mod common;

use common::kube::{KubeCluster, NetNs, demo_backend, endpoint_slice, ingress, ingress_class};
use common::kube::{namespace, service};
use common::{Gateway, wait_for};
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
use serde_json::{Value, json};
use std::path::Path;

const APPS: &str = "apps";
const PREFIX: &str = "nginx.ingress.kubernetes.io/";

async fn served_by(gw: &Gateway, host: &str) -> Option<String> {
    let r = gw.get(host, "/").await.ok()?;
    (r.status == 200).then(|| demo_backend(&r)).flatten()
}

async fn wait_served_by(gw: &Gateway, host: &str, backend: &str) {
    wait_for(&format!("{host} to be served by {backend}"), async || {
        (served_by(gw, host).await.as_deref() == Some(backend)).then_some(())
    })
    .await
}

/// Installs the shipped CRDs and waits until the API server serves their resources.
async fn install_checksum_crds(cluster: &KubeCluster) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/crds");
    for file in [
        "tengine.taobao.org_ingresschecksums.yaml",
        "tengine.taobao.org_secretchecksums.yaml",
    ] {
        let text = std::fs::read_to_string(dir.join(file)).expect("read the shipped CRD");
        let crd: Value = serde_saphyr::from_str(&text).expect("CRD YAML");
        cluster.apply(crd).await;
    }
    let gvk = GroupVersionKind::gvk("tengine.taobao.org", "v1", "IngressCheckSum");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "ingresschecksums");
    let api: Api<DynamicObject> = Api::namespaced_with(cluster.client.clone(), APPS, &resource);
    wait_for("the IngressCheckSum CRD to be served", async || {
        api.list(&ListParams::default()).await.ok().map(|_| ())
    })
    .await;
}

fn versioned(name: &str, host: &str, service: &str, annotations: &[(&str, &str)]) -> Value {
    let mut v = ingress(APPS, name, host, service);
    let map: serde_json::Map<String, Value> = annotations
        .iter()
        .map(|(k, v)| (format!("{PREFIX}{k}"), json!(v)))
        .collect();
    v["metadata"]["annotations"] = Value::Object(map);
    v
}

fn ingress_checksum(name: &str, checksum: &str) -> Value {
    json!({"apiVersion": "tengine.taobao.org/v1", "kind": "IngressCheckSum",
        "metadata": {"name": name, "namespace": APPS},
        "spec": {"timestamp": "2024-05-01T00:00:00Z", "checksum": checksum}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checksum_gate_and_rollout_from_the_api_server() {
    require_netns!();
    let cluster = KubeCluster::start().await;
    cluster.apply(namespace(APPS)).await;
    cluster.apply(ingress_class("sluice")).await;
    install_checksum_crds(&cluster).await;
    let mut netns = NetNs::create();
    let ip = netns.add_address();
    netns.backend(ip, 8080, "blue").await;
    netns.backend(ip, 8081, "green").await;
    for (name, port) in [("blue", 8080), ("green", 8081)] {
        cluster.apply(service(APPS, name, port)).await;
        cluster.apply(endpoint_slice(APPS, name, &[ip], port)).await;
    }
    cluster
        .apply(versioned(
            "shop-100",
            "shop.test",
            "blue",
            &[("version", "1")],
        ))
        .await;
    // md5("100-1")
    cluster
        .apply(ingress_checksum(
            "ing-sum",
            "77c32878c6fe916f4ad27eae832464b5",
        ))
        .await;

    let gw0 = cluster.sluice("sluice-0", &[]).await;
    let gw1 = cluster.sluice("sluice-1", &[]).await;
    for gw in [&gw0, &gw1] {
        assert_eq!(served_by(gw, "shop.test").await.as_deref(), Some("blue"));
        let gate = &gw.snapshot().await["checksumGate"];
        assert_eq!(gate["ingress"]["state"], "pass", "{gate}");
    }
    assert_eq!(gw1.snapshot().await["checksumGate"]["instanceOrdinal"], 1);

    // Version 2, not yet confirmed by the control plane: held on both replicas.
    cluster
        .apply(versioned(
            "shop-100",
            "shop.test",
            "green",
            &[("version", "2")],
        ))
        .await;
    for gw in [&gw0, &gw1] {
        wait_for("the Ingress gate to fail", async || {
            let s = gw.snapshot().await;
            (s["checksumGate"]["ingress"]["state"] == "fail").then_some(())
        })
        .await;
        assert_eq!(served_by(gw, "shop.test").await.as_deref(), Some("blue"));
    }

    // Confirmed (md5("100-2")), but rolled out to ordinal 0 only.
    cluster
        .apply(versioned(
            "shop-100",
            "shop.test",
            "green",
            &[
                ("version", "2"),
                ("ingress-rollout", "true"),
                ("ingress-rollout-index-id", "1"),
            ],
        ))
        .await;
    cluster
        .apply(ingress_checksum(
            "ing-sum",
            "9fc2476999a37d4e36cbe4f206122495",
        ))
        .await;
    wait_served_by(&gw0, "shop.test", "green").await;
    wait_for(
        "replica 1 to apply the confirmed configuration",
        async || {
            let s = gw1.snapshot().await;
            let gate = &s["checksumGate"]["ingress"];
            (gate["state"] == "pass" && gate["rolloutHeld"] == 1).then_some(())
        },
    )
    .await;
    assert_eq!(served_by(&gw1, "shop.test").await.as_deref(), Some("blue"));

    // The rollout finishes.
    cluster
        .apply(versioned(
            "shop-100",
            "shop.test",
            "green",
            &[
                ("version", "2"),
                ("ingress-rollout", "true"),
                ("ingress-rollout-index-id", "-1"),
            ],
        ))
        .await;
    wait_served_by(&gw1, "shop.test", "green").await;
}
