//! Kubernetes-mode fixtures: a real kube-apiserver + etcd (`scripts/kube-fixture`), Sluice's
//! identity bound to the shipped RBAC (`deploy/rbac.yaml`), objects written as the cluster's
//! controllers would, and backends on addresses of a network namespace (the API server refuses
//! loopback endpoint addresses).

use super::client::Resp;
use super::gateway::Gateway;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static NEXT: AtomicU32 = AtomicU32::new(0);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture_script(name: &str) -> PathBuf {
    repo_root().join("scripts/kube-fixture").join(name)
}

/// Builds kube-apiserver and etcd once per test process (a no-op when they are cached).
fn build_once() {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let out = Command::new("bash")
            .arg(fixture_script("build.sh"))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("run build.sh: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "scripts/kube-fixture/build.sh failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(err) = built {
        panic!("{err}");
    }
}

/// True when this machine can make network namespaces (root and iproute2). The Kubernetes
/// tests need them for their backends.
pub fn netns_available() -> bool {
    Command::new("ip")
        .args(["netns", "list"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Skips the calling test (returning early) when network namespaces cannot be made here.
#[macro_export]
macro_rules! require_netns {
    () => {
        if !$crate::common::kube::netns_available() {
            eprintln!(
                "SKIPPED: `ip netns` is unavailable (needs root and iproute2); the Kubernetes tests put their backends in a network namespace"
            );
            return;
        }
    };
}

/// One throwaway API server (and its etcd), stopped and deleted when dropped.
pub struct KubeCluster {
    pub dir: PathBuf,
    /// Cluster admin.
    pub client: Client,
    /// Sluice's own identity (bound to the shipped RBAC only).
    pub sluice_kubeconfig: PathBuf,
    /// The namespace of Sluice's ServiceAccount (the pods' namespace: the Lease lives there).
    pub sluice_namespace: String,
}

impl KubeCluster {
    /// Starts the API server, creates Sluice's namespace and applies `deploy/rbac.yaml` for
    /// Sluice's identity.
    pub async fn start() -> KubeCluster {
        build_once();
        let dir = std::env::temp_dir().join(format!(
            "sluice-kube-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let started = Instant::now();
        let out = Command::new("bash")
            .arg(fixture_script("start.sh"))
            .arg(&dir)
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/kube-fixture/start.sh");
        assert!(
            out.status.success(),
            "scripts/kube-fixture/start.sh {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "kube-apiserver {} up in {:?}",
            String::from_utf8_lossy(&out.stdout).trim(),
            started.elapsed()
        );
        let client = client_for(&dir.join("admin.kubeconfig")).await;
        let env = std::fs::read_to_string(dir.join("env")).expect("fixture env file");
        let user = env
            .lines()
            .find_map(|l| l.strip_prefix("KUBE_FIXTURE_SLUICE_USER="))
            .expect("KUBE_FIXTURE_SLUICE_USER in the fixture env");
        // system:serviceaccount:<namespace>:<name>
        let sluice_namespace = user
            .split(':')
            .nth(2)
            .expect("a ServiceAccount user name")
            .to_string();
        let cluster = KubeCluster {
            sluice_kubeconfig: dir.join("sluice.kubeconfig"),
            dir,
            client,
            sluice_namespace,
        };
        cluster.apply(namespace(&cluster.sluice_namespace)).await;
        cluster.apply_shipped_rbac().await;
        cluster
    }

    /// The shipped RBAC, with its ServiceAccount namespace set to the fixture's (the static
    /// token is named after that ServiceAccount), so a permission the file lacks fails a test.
    pub async fn apply_shipped_rbac(&self) {
        let path = repo_root().join("deploy/rbac.yaml");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let shipped_namespace = shipped_namespace(&text);
        for mut doc in serde_saphyr::from_multiple::<Value>(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        {
            if doc.is_null() {
                continue;
            }
            retarget_namespace(&mut doc, &shipped_namespace, &self.sluice_namespace);
            self.apply(doc).await;
        }
    }

    /// Creates or updates an object (server-side apply, as the test's field manager).
    pub async fn apply(&self, object: Value) -> Value {
        let (api, name) = self.api_for(&object);
        let applied = api
            .patch(
                &name,
                &PatchParams::apply("sluice-tests").force(),
                &Patch::Apply(&object),
            )
            .await
            .unwrap_or_else(|e| panic!("apply {}: {e}", describe(&object)));
        serde_json::to_value(applied).expect("object as JSON")
    }

    pub async fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Option<Value> {
        let stub = json!({"apiVersion": api_version, "kind": kind,
            "metadata": {"name": name, "namespace": namespace}});
        let (api, _) = self.api_for(&stub);
        api.get_opt(name)
            .await
            .unwrap_or_else(|e| panic!("get {kind} {namespace}/{name}: {e}"))
            .map(|o| serde_json::to_value(o).expect("object as JSON"))
    }

    pub async fn delete(&self, api_version: &str, kind: &str, namespace: &str, name: &str) {
        let stub = json!({"apiVersion": api_version, "kind": kind,
            "metadata": {"name": name, "namespace": namespace}});
        let (api, _) = self.api_for(&stub);
        api.delete(name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("delete {kind} {namespace}/{name}: {e}"));
    }

    /// Creates many objects, `concurrency` requests at a time (for load and scale tests).
    pub async fn create_many(&self, objects: Vec<Value>, concurrency: usize) {
        use futures_util::StreamExt;
        let creates: Vec<_> = objects
            .into_iter()
            .map(|object| {
                let (api, _) = self.api_for(&object);
                async move {
                    let typed: DynamicObject =
                        serde_json::from_value(object.clone()).expect("a Kubernetes object");
                    api.create(&Default::default(), &typed)
                        .await
                        .unwrap_or_else(|e| panic!("create {}: {e}", describe(&object)));
                }
            })
            .collect();
        futures_util::stream::iter(creates)
            .buffer_unordered(concurrency)
            .collect::<Vec<()>>()
            .await;
    }

    /// Objects of a kind in a namespace, as JSON.
    pub async fn list(&self, api_version: &str, kind: &str, namespace: &str) -> Vec<Value> {
        let stub = json!({"apiVersion": api_version, "kind": kind,
            "metadata": {"name": "x", "namespace": namespace}});
        let (api, _) = self.api_for(&stub);
        api.list(&Default::default())
            .await
            .unwrap_or_else(|e| panic!("list {kind} in {namespace}: {e}"))
            .items
            .into_iter()
            .map(|o| serde_json::to_value(o).expect("object as JSON"))
            .collect()
    }

    fn api_for(&self, object: &Value) -> (Api<DynamicObject>, String) {
        let api_version = object["apiVersion"].as_str().expect("apiVersion");
        let kind = object["kind"].as_str().expect("kind");
        let name = object["metadata"]["name"].as_str().expect("metadata.name");
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let (plural, namespaced) = match kind {
            "Namespace" => ("namespaces", false),
            "ServiceAccount" => ("serviceaccounts", true),
            "ClusterRole" => ("clusterroles", false),
            "ClusterRoleBinding" => ("clusterrolebindings", false),
            "Role" => ("roles", true),
            "RoleBinding" => ("rolebindings", true),
            "IngressClass" => ("ingressclasses", false),
            "Ingress" => ("ingresses", true),
            "Service" => ("services", true),
            "EndpointSlice" => ("endpointslices", true),
            "Secret" => ("secrets", true),
            "ConfigMap" => ("configmaps", true),
            "Lease" => ("leases", true),
            "Event" => ("events", true),
            "CustomResourceDefinition" => ("customresourcedefinitions", false),
            "IngressCheckSum" => ("ingresschecksums", true),
            "SecretCheckSum" => ("secretchecksums", true),
            other => panic!("the test helper does not know the kind {other}"),
        };
        let resource =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        let api = if namespaced {
            let ns = object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default");
            Api::namespaced_with(self.client.clone(), ns, &resource)
        } else {
            Api::all_with(self.client.clone(), &resource)
        };
        (api, name.to_string())
    }

    /// `sluice serve --kubernetes` as Sluice's own identity, in its pod namespace, named
    /// `pod_name`; returns once it is ready.
    pub async fn sluice(&self, pod_name: &str, extra: &[&str]) -> Gateway {
        let gateway = self.spawn_sluice(pod_name, extra).await;
        gateway.wait_ready().await;
        gateway
    }

    /// Like [`Self::sluice`] but returns once it listens, ready or not.
    pub async fn spawn_sluice(&self, pod_name: &str, extra: &[&str]) -> Gateway {
        let kubeconfig = self.sluice_kubeconfig.to_str().expect("UTF-8 path");
        let mut args = vec!["--kubernetes", "--kubeconfig", kubeconfig];
        args.extend_from_slice(extra);
        Gateway::spawn_with(
            &args,
            &[
                ("POD_NAME", pod_name),
                ("POD_NAMESPACE", &self.sluice_namespace),
            ],
        )
        .await
    }

    /// Stops kube-apiserver (etcd keeps running): SIGTERM, and SIGKILL if it has not exited
    /// 5 s later (it stops listening at once but may linger over open watches). Returns its
    /// command line for [`Self::restart_apiserver`].
    pub async fn stop_apiserver(&self) -> Vec<String> {
        let pid_file = self.dir.join("kube-apiserver.pid");
        let pid = std::fs::read_to_string(&pid_file).expect("kube-apiserver.pid");
        let pid = pid.trim().to_string();
        let cmdline =
            std::fs::read(format!("/proc/{pid}/cmdline")).expect("kube-apiserver cmdline");
        let argv: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        for (signal, grace) in [("-TERM", 5), ("-KILL", 30)] {
            let _ = Command::new("kill").args([signal, &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(grace);
            while is_running(&pid) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if !is_running(&pid) {
                return argv;
            }
        }
        panic!("kube-apiserver {pid} did not exit after SIGKILL");
    }

    /// Starts kube-apiserver again with the command line it had, and waits until it is ready.
    pub async fn restart_apiserver(&self, argv: &[String]) {
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.dir.join("kube-apiserver.log"))
            .expect("kube-apiserver.log");
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("restart kube-apiserver");
        std::fs::write(self.dir.join("kube-apiserver.pid"), child.id().to_string())
            .expect("write kube-apiserver.pid");
        // The fixture's stop.sh stops it by its pid file; nothing waits for the Child here.
        std::mem::forget(child);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let ready = Api::<k8s_openapi::api::core::v1::Namespace>::all(self.client.clone())
                .get_opt("default")
                .await
                .is_ok();
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "kube-apiserver not ready again within 120 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for KubeCluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(fixture_script("stop.sh"))
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("kube fixture kept for inspection: {}", self.dir.display());
        }
    }
}

fn is_running(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

async fn client_for(kubeconfig: &Path) -> Client {
    let config = kube::config::Kubeconfig::read_from(kubeconfig).expect("read kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(config, &Default::default())
        .await
        .expect("kubeconfig");
    Client::try_from(config).expect("kube client")
}

/// The namespace of the ServiceAccount in the shipped RBAC.
fn shipped_namespace(rbac: &str) -> String {
    serde_saphyr::from_multiple::<Value>(rbac)
        .expect("deploy/rbac.yaml is YAML")
        .into_iter()
        .find(|d| d["kind"] == "ServiceAccount")
        .and_then(|d| d["metadata"]["namespace"].as_str().map(str::to_string))
        .expect("deploy/rbac.yaml has a ServiceAccount with a namespace")
}

fn retarget_namespace(doc: &mut Value, from: &str, to: &str) {
    if doc["metadata"]["namespace"] == from {
        doc["metadata"]["namespace"] = json!(to);
    }
    if let Some(subjects) = doc.get_mut("subjects").and_then(Value::as_array_mut) {
        for subject in subjects {
            if subject["namespace"] == from {
                subject["namespace"] = json!(to);
            }
        }
    }
}

fn describe(object: &Value) -> String {
    format!(
        "{} {}/{}",
        object["kind"].as_str().unwrap_or("?"),
        object["metadata"]["namespace"].as_str().unwrap_or(""),
        object["metadata"]["name"].as_str().unwrap_or("?")
    )
}

pub fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

pub fn ingress_class(name: &str) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": name},
        "spec": {"controller": "sluice.dev/ingress-controller"}})
}

/// A Service with one named port `http` (80 -> `target_port`).
pub fn service(namespace: &str, name: &str, target_port: u16) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": target_port}]}})
}

/// The EndpointSlice the EndpointSlice controller would write for `service`: ready endpoints
/// at `addresses`, port `http` = `port`.
pub fn endpoint_slice(namespace: &str, service: &str, addresses: &[Ipv4Addr], port: u16) -> Value {
    let endpoints: Vec<Value> = addresses
        .iter()
        .map(|a| json!({"addresses": [a.to_string()], "conditions": {"ready": true}}))
        .collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{service}-slice"), "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": endpoints})
}

pub fn tls_secret(namespace: &str, name: &str, cert_pem: &str, key_pem: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": {"tls.crt": cert_pem, "tls.key": key_pem}})
}

/// An Ingress of class `sluice` routing `host` `/` (Prefix) to `service` port `http`.
pub fn ingress(namespace: &str, name: &str, host: &str, service: &str) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"ingressClassName": "sluice", "rules": [{"host": host, "http": {"paths": [
            {"path": "/", "pathType": "Prefix",
             "backend": {"service": {"name": service, "port": {"name": "http"}}}}]}}]}})
}

/// Which `sluice demo-backend` answered (it says `Hello from backend "NAME"`).
pub fn demo_backend(resp: &Resp) -> Option<String> {
    let rest = resp.body.strip_prefix("Hello from backend \"")?;
    Some(rest[..rest.find('"')?].to_string())
}

/// A network namespace joined to the host by a veth pair: the host side is 10.244.N.1, each
/// backend address 10.244.N.2, .3, ... is inside. Backends run there as `sluice demo-backend`.
/// Everything is removed when dropped.
pub struct NetNs {
    pub name: String,
    subnet: u8,
    next_host: u8,
    host_if: String,
    backends: Vec<Child>,
}

impl NetNs {
    pub fn create() -> NetNs {
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let taken = run_output(&["ip", "-4", "-o", "addr", "show"]);
        let subnet = (0..200u32)
            .map(|i| u8::try_from(20 + (pid + n * 37 + i) % 200).expect("fits"))
            .find(|s| !taken.contains(&format!("10.244.{s}.")))
            .expect("a free 10.244.N.0/24 subnet");
        let name = format!("sluice-test-{pid}-{n}");
        let host_if = format!("slh{:x}{n}", pid & 0xffff);
        let ns_if = format!("sln{:x}{n}", pid & 0xffff);
        let netns = NetNs {
            name: name.clone(),
            subnet,
            next_host: 2,
            host_if: host_if.clone(),
            backends: Vec::new(),
        };
        run(&["ip", "netns", "add", &name]);
        run(&[
            "ip", "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]);
        run(&["ip", "link", "set", &ns_if, "netns", &name]);
        run(&[
            "ip",
            "addr",
            "add",
            &format!("10.244.{subnet}.1/24"),
            "dev",
            &host_if,
        ]);
        run(&["ip", "link", "set", &host_if, "up"]);
        run(&[
            "ip", "netns", "exec", &name, "ip", "link", "set", "lo", "up",
        ]);
        run(&[
            "ip", "netns", "exec", &name, "ip", "link", "set", &ns_if, "up",
        ]);
        netns
    }

    /// A new address inside the namespace.
    pub fn add_address(&mut self) -> Ipv4Addr {
        let ip = Ipv4Addr::new(10, 244, self.subnet, self.next_host);
        self.next_host += 1;
        let ns_if = self.host_if.replacen("slh", "sln", 1);
        run(&[
            "ip",
            "netns",
            "exec",
            &self.name,
            "ip",
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            &ns_if,
        ]);
        ip
    }

    /// `sluice demo-backend --name NAME` on `ip:port` inside the namespace; returns once it
    /// accepts connections (through the veth, as Sluice will reach it).
    pub async fn backend(&mut self, ip: Ipv4Addr, port: u16, name: &str) -> SocketAddr {
        let addr = SocketAddr::from((ip, port));
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .arg(env!("CARGO_BIN_EXE_sluice"))
            .args([
                "demo-backend",
                "--listen",
                &addr.to_string(),
                "--name",
                name,
            ])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start a demo backend in the network namespace");
        self.backends.push(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "backend {name} at {addr} not reachable within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        addr
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        for child in &mut self.backends {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .stderr(Stdio::null())
            .status();
    }
}

fn run(argv: &[&str]) {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", argv.join(" ")));
    assert!(
        out.status.success(),
        "{} failed: {}",
        argv.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run_output(argv: &[&str]) -> String {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", argv.join(" ")));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
