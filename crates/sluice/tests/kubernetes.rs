//! `sluice serve --kubernetes` against a real kube-apiserver + etcd (scripts/kube-fixture),
//! running as its own identity under the shipped RBAC, with backends in a network namespace.

mod common;

use common::kube::{
    KubeCluster, NetNs, demo_backend, endpoint_slice, ingress, ingress_class, namespace, service,
    tls_secret,
};
use common::{Gateway, TestCert, default_tls_client, tls_handshake, wait_for};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const APPS: &str = "apps";
const NETWORKING: &str = "networking.k8s.io/v1";

/// Polls `check` every 20 ms until it yields a value; panics after `within`.
async fn wait_long<T>(
    what: &str,
    within: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Which demo backend serves `host` `/` now (None for anything but a backend's 200).
async fn served_by(gw: &Gateway, host: &str) -> Option<String> {
    let r = gw.get(host, "/").await.ok()?;
    if r.status != 200 {
        return None;
    }
    demo_backend(&r)
}

/// Waits until `host` is served by `backend`; returns how long that took.
async fn wait_served_by(gw: &Gateway, host: &str, backend: &str) -> Duration {
    let started = Instant::now();
    wait_for(&format!("{host} to be served by {backend}"), async || {
        (served_by(gw, host).await.as_deref() == Some(backend)).then_some(())
    })
    .await;
    started.elapsed()
}

/// The cluster with class `sluice`, namespace `apps`, and a network namespace for backends.
async fn cluster() -> (KubeCluster, NetNs) {
    let cluster = KubeCluster::start().await;
    cluster.apply(namespace(APPS)).await;
    cluster.apply(ingress_class("sluice")).await;
    (cluster, NetNs::create())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingresses_route_update_and_delete_live_and_an_empty_list_is_refused() {
    require_netns!();
    let (cluster, mut netns) = cluster().await;
    let ip = netns.add_address();
    netns.backend(ip, 8080, "blue").await;
    netns.backend(ip, 8081, "green").await;
    cluster.apply(service(APPS, "blue", 8080)).await;
    cluster
        .apply(endpoint_slice(APPS, "blue", &[ip], 8080))
        .await;
    cluster.apply(service(APPS, "green", 8081)).await;
    cluster
        .apply(endpoint_slice(APPS, "green", &[ip], 8081))
        .await;
    cluster
        .apply(ingress(APPS, "web", "web.test", "blue"))
        .await;
    cluster
        .apply(ingress(APPS, "api", "api.test", "green"))
        .await;

    // The Service in front of Sluice: its cluster IP is what the Ingresses' status publishes.
    let front = cluster
        .apply(service(&cluster.sluice_namespace, "sluice", 80))
        .await;
    let front_ip = front["spec"]["clusterIP"]
        .as_str()
        .expect("a cluster IP")
        .to_string();
    let publish = format!("{}/sluice", cluster.sluice_namespace);

    // No IngressCheckSum/SecretCheckSum CRDs are installed here: Sluice must still get ready.
    let gw = cluster
        .sluice("sluice-0", &["--publish-service", &publish])
        .await;
    assert_eq!(served_by(&gw, "web.test").await.as_deref(), Some("blue"));
    wait_for(
        "the --publish-service address in the Ingress status",
        async || (status_address(&cluster, "api").await? == front_ip).then_some(()),
    )
    .await;
    assert_eq!(served_by(&gw, "api.test").await.as_deref(), Some("green"));

    cluster
        .apply(ingress(APPS, "web", "web.test", "green"))
        .await;
    let latency = wait_served_by(&gw, "web.test", "green").await;
    eprintln!("Ingress update applied (API write -> first request served) in {latency:?}");
    assert!(latency < Duration::from_secs(2), "update took {latency:?}");

    cluster
        .apply(ingress(APPS, "new", "new.test", "blue"))
        .await;
    let latency = wait_served_by(&gw, "new.test", "blue").await;
    eprintln!("Ingress creation applied in {latency:?}");

    cluster.delete(NETWORKING, "Ingress", APPS, "new").await;
    gw.wait_status("new.test", "/", 404).await;
    cluster.delete(NETWORKING, "Ingress", APPS, "api").await;
    gw.wait_status("api.test", "/", 404).await;

    // The last Ingress goes: --refuse-empty-config (on by default) keeps serving it.
    cluster.delete(NETWORKING, "Ingress", APPS, "web").await;
    gw.wait_problem("the refused empty configuration", |p| {
        p["reason"]
            .as_str()
            .is_some_and(|r| r.contains("--refuse-empty-config"))
    })
    .await;
    assert_eq!(served_by(&gw, "web.test").await.as_deref(), Some("green"));
    cluster
        .apply(ingress(APPS, "back", "back.test", "blue"))
        .await;
    wait_served_by(&gw, "back.test", "blue").await;
    gw.wait_status("web.test", "/", 404).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_secret_is_served_on_the_next_handshake_and_endpoints_follow_scaling() {
    require_netns!();
    let (cluster, mut netns) = cluster().await;
    let ips: Vec<_> = (0..3).map(|_| netns.add_address()).collect();
    for (i, ip) in ips.iter().enumerate() {
        netns.backend(*ip, 8080, &format!("pod-{i}")).await;
    }
    cluster.apply(service(APPS, "shop", 8080)).await;
    cluster
        .apply(endpoint_slice(APPS, "shop", &ips[..1], 8080))
        .await;
    let first = TestCert::ecdsa(&["shop.test"]);
    cluster
        .apply(tls_secret(
            APPS,
            "shop-tls",
            &first.cert_pem,
            &first.key_pem,
        ))
        .await;
    let mut shop = ingress(APPS, "shop", "shop.test", "shop");
    shop["spec"]["tls"] = json!([{"hosts": ["shop.test"], "secretName": "shop-tls"}]);
    cluster.apply(shop).await;

    let gw = cluster.sluice("sluice-0", &[]).await;
    let session = tls_handshake(gw.https, "shop.test", default_tls_client())
        .await
        .expect("TLS handshake");
    assert_eq!(session.peer_cert, first.der, "the Secret's certificate");

    let renewed = TestCert::ecdsa(&["shop.test"]);
    cluster
        .apply(tls_secret(
            APPS,
            "shop-tls",
            &renewed.cert_pem,
            &renewed.key_pem,
        ))
        .await;
    let started = Instant::now();
    wait_for("the renewed certificate", async || {
        let s = tls_handshake(gw.https, "shop.test", default_tls_client())
            .await
            .ok()?;
        (s.peer_cert == renewed.der).then_some(())
    })
    .await;
    eprintln!("renewed Secret served after {:?}", started.elapsed());

    // One endpoint -> three: every pod gets traffic.
    let r = gw.get_tls("shop.test", "/").await.expect("HTTPS request");
    assert_eq!(demo_backend(&r).as_deref(), Some("pod-0"));
    cluster
        .apply(endpoint_slice(APPS, "shop", &ips, 8080))
        .await;
    wait_for("traffic on all three endpoints", async || {
        let mut seen = BTreeMap::new();
        for _ in 0..30 {
            let r = gw.get_tls("shop.test", "/").await.ok()?;
            *seen.entry(demo_backend(&r)?).or_insert(0) += 1;
        }
        (seen.len() == 3).then_some(())
    })
    .await;
    // Three -> only the last one: the others get nothing more.
    cluster
        .apply(endpoint_slice(APPS, "shop", &ips[2..], 8080))
        .await;
    wait_for("traffic only on pod-2", async || {
        for _ in 0..20 {
            let r = gw.get_tls("shop.test", "/").await.ok()?;
            if demo_backend(&r).as_deref() != Some("pod-2") {
                return None;
            }
        }
        Some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_restarting_under_traffic_fails_no_request_and_later_changes_apply() {
    require_netns!();
    let (cluster, mut netns) = cluster().await;
    let ip = netns.add_address();
    netns.backend(ip, 8080, "steady").await;
    cluster.apply(service(APPS, "steady", 8080)).await;
    cluster
        .apply(endpoint_slice(APPS, "steady", &[ip], 8080))
        .await;
    cluster
        .apply(ingress(APPS, "steady", "steady.test", "steady"))
        .await;
    let gw = Arc::new(cluster.sluice("sluice-0", &[]).await);

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let traffic = tokio::spawn({
        let (gw, stop, ok, failed) = (gw.clone(), stop.clone(), ok.clone(), failed.clone());
        async move {
            // Bounded: stops when told, or after 10,000 requests at most.
            for _ in 0..10_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match served_by(&gw, "steady.test").await.as_deref() {
                    Some("steady") => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        eprintln!("failed request: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    let served_now = || ok.load(Ordering::Relaxed);
    let at_least = served_now() + 20;
    wait_for("traffic before the restart", async || {
        (served_now() >= at_least).then_some(())
    })
    .await;

    let argv = cluster.stop_apiserver().await;
    let at_least = served_now() + 100;
    wait_for("traffic while the API server is down", async || {
        (served_now() >= at_least).then_some(())
    })
    .await;
    cluster.restart_apiserver(&argv).await;
    let restarted = Instant::now();

    cluster
        .apply(ingress(APPS, "after", "after.test", "steady"))
        .await;
    // The watches resume after a retry delay (at most 5 s), so allow for that.
    wait_long(
        "a change made after the restart",
        Duration::from_secs(30),
        async || (served_by(&gw, "after.test").await.as_deref() == Some("steady")).then_some(()),
    )
    .await;
    eprintln!(
        "change after the API server restart applied {:?} after it was ready again",
        restarted.elapsed()
    );
    let at_least = served_now() + 20;
    wait_for("traffic after the restart", async || {
        (served_now() >= at_least).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    traffic.await.expect("traffic task");
    eprintln!(
        "requests: {} ok, {} failed",
        served_now(),
        failed.load(Ordering::Relaxed)
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during the API server restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_until_every_kind_is_listed_which_a_missing_permission_prevents() {
    require_netns!();
    let (cluster, mut netns) = cluster().await;
    let ip = netns.add_address();
    netns.backend(ip, 8080, "web").await;
    cluster.apply(service(APPS, "web", 8080)).await;
    cluster
        .apply(endpoint_slice(APPS, "web", &[ip], 8080))
        .await;
    cluster.apply(ingress(APPS, "web", "web.test", "web")).await;
    // Without its ClusterRoleBinding Sluice may list nothing: it must not turn ready.
    cluster
        .delete(
            "rbac.authorization.k8s.io/v1",
            "ClusterRoleBinding",
            "",
            "sluice",
        )
        .await;
    let gw = cluster.spawn_sluice("sluice-0", &[]).await;
    let unready = wait_for("/readyz to answer", async || {
        gw.admin_get("/readyz").await.ok().map(|r| r.status)
    })
    .await;
    assert_eq!(unready, 503, "ready although nothing could be listed");
    // Several list retries later it still is not ready.
    let watch_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < watch_until {
        let r = gw.admin_get("/readyz").await.expect("/readyz");
        assert_eq!(r.status, 503, "ready although nothing could be listed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.apply_shipped_rbac().await;
    gw.wait_ready().await;
    assert_eq!(served_by(&gw, "web.test").await.as_deref(), Some("web"));
}

/// The address an Ingress's status publishes, if any.
async fn status_address(cluster: &KubeCluster, name: &str) -> Option<String> {
    let ing = cluster.get(NETWORKING, "Ingress", APPS, name).await?;
    ing["status"]["loadBalancer"]["ingress"][0]["ip"]
        .as_str()
        .map(str::to_string)
}

async fn lease_holder(cluster: &KubeCluster) -> Option<String> {
    let lease = cluster
        .get(
            "coordination.k8s.io/v1",
            "Lease",
            &cluster.sluice_namespace,
            "sluice-leader",
        )
        .await?;
    lease["spec"]["holderIdentity"].as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_leads_writes_status_and_events_and_the_other_takes_over() {
    require_netns!();
    let (cluster, mut netns) = cluster().await;
    let ip = netns.add_address();
    netns.backend(ip, 8080, "web").await;
    cluster.apply(service(APPS, "web", 8080)).await;
    cluster
        .apply(endpoint_slice(APPS, "web", &[ip], 8080))
        .await;
    cluster.apply(ingress(APPS, "web", "web.test", "web")).await;
    let mut bad = ingress(APPS, "bad", "bad.test", "web");
    bad["metadata"]["annotations"] =
        json!({"nginx.ingress.kubernetes.io/configuration-snippet": "return 200;"});
    cluster.apply(bad).await;

    // Each replica publishes its own address, so the status shows which one wrote it. They
    // watch only the `apps` namespace (the Lease stays in their own).
    let election = [
        "--election-lease-duration",
        "4s",
        "--election-renew-interval",
        "1s",
        "--watch-namespace",
        APPS,
    ];
    let replica = |name: &'static str, address: &'static str| {
        let mut flags = vec!["--publish-status-address", address];
        flags.extend_from_slice(&election);
        (name, address, flags)
    };
    let (a_name, a_addr, a_flags) = replica("sluice-0", "192.0.2.10");
    let (b_name, b_addr, b_flags) = replica("sluice-1", "192.0.2.11");
    let a = cluster.sluice(a_name, &a_flags).await;
    let b = cluster.sluice(b_name, &b_flags).await;

    let leader = wait_for("a Lease holder", async || lease_holder(&cluster).await).await;
    let (leader_addr, follower_name, follower_addr) = if leader == a_name {
        (a_addr, b_name, b_addr)
    } else {
        assert_eq!(leader, b_name, "the Lease holder is one of the replicas");
        (b_addr, a_name, a_addr)
    };
    wait_for("the leader's status address", async || {
        (status_address(&cluster, "web").await.as_deref() == Some(leader_addr)).then_some(())
    })
    .await;
    // Several renewals later the follower still has written nothing.
    let watch_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < watch_until {
        assert_eq!(
            status_address(&cluster, "web").await.as_deref(),
            Some(leader_addr)
        );
        assert_eq!(
            lease_holder(&cluster).await.as_deref(),
            Some(leader.as_str())
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The rejected Ingress got exactly one Event, saying what /api/v1/problems says.
    let problem = a
        .wait_problem("the rejected snippet", |p| p["object"]["name"] == "bad")
        .await;
    let events = wait_for("an Event for the rejected Ingress", async || {
        let events: Vec<Value> = cluster
            .list("v1", "Event", APPS)
            .await
            .into_iter()
            .filter(|e| e["involvedObject"]["name"] == "bad")
            .collect();
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(events.len(), 1, "one Event per problem: {events:#?}");
    assert_eq!(events[0]["reason"], "Rejected");
    let message = events[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(problem["reason"].as_str().unwrap_or("?")),
        "Event message {message:?} vs problem {problem}"
    );

    // Kill the leader outright (no Lease release): the follower takes over after the lease.
    let killed = Instant::now();
    let new_leader = if leader == a_name {
        drop(a);
        b
    } else {
        drop(b);
        a
    };
    wait_long(
        "the follower to take the Lease",
        Duration::from_secs(20),
        async || (lease_holder(&cluster).await.as_deref() == Some(follower_name)).then_some(()),
    )
    .await;
    let took_over = killed.elapsed();
    wait_for("the new leader's status address", async || {
        (status_address(&cluster, "web").await.as_deref() == Some(follower_addr)).then_some(())
    })
    .await;
    eprintln!(
        "the follower took over {took_over:?} after the leader was killed (lease 4 s, renew 1 s); status rewritten after {:?}",
        killed.elapsed()
    );
    assert!(
        took_over < Duration::from_secs(10),
        "takeover took {took_over:?}"
    );

    // A leader that is shut down (SIGTERM) releases the Lease: a third replica takes over
    // without waiting for the lease to run out.
    let (c_name, _, c_flags) = replica("sluice-2", "192.0.2.12");
    let _c = cluster.sluice(c_name, &c_flags).await;
    new_leader.terminate();
    let terminated = Instant::now();
    wait_long(
        "the third replica to take the released Lease",
        Duration::from_secs(20),
        async || (lease_holder(&cluster).await.as_deref() == Some(c_name)).then_some(()),
    )
    .await;
    let handed_over = terminated.elapsed();
    eprintln!("a released Lease was taken over after {handed_over:?} (lease 4 s)");
    assert!(
        handed_over < Duration::from_millis(3500),
        "the Lease was not released: takeover took {handed_over:?}"
    );
}

/// Resident and peak memory of a process, in MiB (VmRSS, VmHWM).
fn memory_mib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kib| kib / 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Measures the initial sync of many Ingresses (each with its own Service and EndpointSlice):
/// time from start to ready, and memory. Not a pass/fail test; run it with
/// `cargo test -p sluice --release --test kubernetes -- --ignored --nocapture initial_sync`
/// (`SLUICE_BENCH_INGRESSES`, default 20000).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement that takes minutes; run it by hand"]
async fn initial_sync_of_many_ingresses() {
    require_netns!();
    let count: usize = std::env::var("SLUICE_BENCH_INGRESSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let cluster = KubeCluster::start().await;
    cluster.apply(namespace(APPS)).await;
    cluster.apply(ingress_class("sluice")).await;
    // Every endpoint is the one backend in the test's own network namespace: requests must
    // only ever reach addresses this test made.
    let mut netns = NetNs::create();
    let ip = netns.add_address();
    netns.backend(ip, 8080, "bench").await;
    let created = Instant::now();
    for kind in ["Service", "EndpointSlice", "Ingress"] {
        let objects: Vec<Value> = (0..count)
            .map(|i| {
                let name = format!("app-{i}");
                match kind {
                    // Headless: allocating 20,000 cluster IPs only slows the set-up down, and
                    // Sluice routes to the endpoints, not to the cluster IP.
                    "Service" => {
                        let mut headless = service(APPS, &name, 8080);
                        headless["spec"]["clusterIP"] = json!("None");
                        headless
                    }
                    "EndpointSlice" => endpoint_slice(APPS, &name, &[ip], 8080),
                    _ => ingress(APPS, &name, &format!("app-{i}.bench.test"), &name),
                }
            })
            .collect();
        cluster.create_many(objects, 32).await;
        eprintln!("created {count} {kind}s after {:?}", created.elapsed());
    }
    let started = Instant::now();
    let gw = cluster.sluice("sluice-0", &[]).await;
    let ready = started.elapsed();
    let (rss, peak) = memory_mib(gw.pid());
    let r = gw
        .get(&format!("app-{}.bench.test", count - 1), "/")
        .await
        .expect("request");
    assert_eq!(
        demo_backend(&r).as_deref(),
        Some("bench"),
        "the last Ingress is routed: {}",
        r.body
    );
    eprintln!(
        "initial sync of {count} Ingresses + {count} Services + {count} EndpointSlices: ready after {ready:?}; RSS {rss} MiB (peak {peak} MiB)"
    );
    // One more change after the big sync: how long a single update takes at this size.
    cluster
        .apply(ingress(APPS, "late", "late.bench.test", "app-0"))
        .await;
    let applied = Instant::now();
    wait_long("the late Ingress", Duration::from_secs(60), async || {
        (served_by(&gw, "late.bench.test").await.as_deref() == Some("bench")).then_some(())
    })
    .await;
    let (rss, peak) = memory_mib(gw.pid());
    eprintln!(
        "one more Ingress applied after {:?} at this size; RSS {rss} MiB (peak {peak} MiB)",
        applied.elapsed()
    );
}
