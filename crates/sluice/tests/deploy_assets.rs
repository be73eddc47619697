//! The shipped deploy assets against a real kube-apiserver (scripts/kube-fixture): every manifest
//! under deploy/, and the Helm chart rendered for its defaults and for a StatefulSet watching one
//! namespace, must be accepted by the server (server-side dry run, strict field validation, no
//! warnings); the pods they describe must pass the "restricted" Pod Security level that
//! deploy/namespace.yaml enforces; and the shipped RBAC must grant Sluice what it needs and
//! nothing more.
//!
//! kube-apiserver and Helm are built once per machine by scripts/kube-fixture/build.sh and
//! scripts/helm.sh; both are no-ops when their cache is filled (`.ci/run` fills it before the
//! tests run).

#[path = "deploy_assets/kube_api.rs"]
mod kube_api;

use http::StatusCode;
use kube_api::{Fixture, Identity, access, status_access, wrong_answers};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The namespace the plain manifests install into, and the release namespace of the chart here.
const NAMESPACE: &str = "sluice-system";
/// The namespace the chart's watchNamespace variant is confined to.
const WATCHED: &str = "apps";
/// The Kubernetes release of the fixture; the chart is rendered for it.
const KUBE_VERSION: &str = "1.34.4";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the crate lives in <repo>/crates/sluice")
}

/// Runs one of the repo's build scripts, which prints a path on stdout when the tool is ready.
fn build_script(script: &str) -> PathBuf {
    let out = Command::new(repo().join(script))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
    assert!(
        out.status.success(),
        "{script} failed ({}); it needs Go and the Go module proxy:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// The helm binary. Built (or found in the cache) once per test process, so tests running in
/// parallel never race two builds into the same cache directory.
fn helm() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| build_script("scripts/helm.sh"))
}

fn kube_fixture_built() {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build_script("scripts/kube-fixture/build.sh"));
}

fn scratch_dir(what: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "sluice-deploy-{what}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// Every object of a multi-document YAML text (empty and comment-only documents skipped).
fn documents(text: &str, origin: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(text)
        .unwrap_or_else(|e| panic!("{origin} is not valid YAML: {e}"))
        .into_iter()
        .filter(|doc| !doc.is_null())
        .collect()
}

/// Every manifest file below deploy/, in path order, with its objects.
fn shipped_manifests() -> Vec<(PathBuf, Vec<Value>)> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("read a deploy/ entry").path();
            if path.is_dir() {
                walk(&path, found);
            } else if path
                .extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml")
            {
                found.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&repo().join("deploy"), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let objects = documents(&text, &path.display().to_string());
            (path, objects)
        })
        .collect()
}

fn shipped_objects() -> Vec<Value> {
    shipped_manifests()
        .into_iter()
        .flat_map(|(_, objects)| objects)
        .collect()
}

fn shipped_file(relative: &str) -> Vec<Value> {
    let path = repo().join("deploy").join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{relative}: {e}"));
    documents(&text, relative)
}

/// Runs `helm template` of charts/sluice into the release namespace, with `--set` overrides.
fn helm_template(release: &str, sets: &[&str]) -> std::process::Output {
    let home = scratch_dir("helm-home");
    let mut cmd = Command::new(helm());
    cmd.arg("template")
        .arg(release)
        .arg(repo().join("charts/sluice"))
        .args(["--namespace", NAMESPACE, "--kube-version", KUBE_VERSION]);
    for set in sets {
        cmd.args(["--set", set]);
    }
    // Helm keeps caches and settings under these; none of the user's own are read or written.
    for var in ["HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"] {
        cmd.env(var, &home);
    }
    let out = cmd.output().expect("run helm template");
    let _ = std::fs::remove_dir_all(&home);
    out
}

/// The objects `helm template` renders; panics with Helm's message if it fails.
fn render_chart(release: &str, sets: &[&str]) -> Vec<Value> {
    let out = helm_template(release, sets);
    let what = format!("helm template {release} charts/sluice {sets:?}");
    assert!(
        out.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    documents(&String::from_utf8_lossy(&out.stdout), &what)
}

fn kind_of(object: &Value) -> &str {
    object["kind"].as_str().unwrap_or("")
}

fn name_of(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or("")
}

fn describe(object: &Value) -> String {
    match object["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{} {ns}/{}", kind_of(object), name_of(object)),
        None => format!("{} {}", kind_of(object), name_of(object)),
    }
}

fn find<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| kind_of(o) == kind).collect()
}

/// A Pod as the workload's controller would create it from its pod template.
fn pod_of(workload: &Value) -> Value {
    let template = &workload["spec"]["template"];
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("{}-0", name_of(workload)),
            "namespace": workload["metadata"]["namespace"],
            "labels": template["metadata"]["labels"],
            "annotations": template["metadata"]["annotations"],
        },
        "spec": template["spec"],
    })
}

/// Every (apiGroup, resource, verb, resourceName) a Role or ClusterRole grants, so two roles
/// written differently compare by what they allow.
fn grants(role: &Value) -> BTreeSet<(String, String, String, String)> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().into_iter().flatten() {
        let names = match strings(&rule["resourceNames"]) {
            names if names.is_empty() => vec![String::new()],
            names => names,
        };
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    for name in &names {
                        out.insert((group.clone(), resource.clone(), verb.clone(), name.clone()));
                    }
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Tests without an API server: the copies that must not drift apart.

#[test]
fn chart_ships_the_same_crds_as_deploy() {
    let list = |dir: &Path| -> Vec<(String, String)> {
        let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| {
                let path = entry.expect("read a CRD file").path();
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                let text = std::fs::read_to_string(&path).expect("read a CRD file");
                (name.unwrap_or_default(), text)
            })
            .collect();
        files.sort();
        files
    };
    let deploy = list(&repo().join("deploy/crds"));
    let chart = list(&repo().join("charts/sluice/files/crds"));
    assert_eq!(
        deploy.iter().map(|(name, _)| name).collect::<Vec<_>>(),
        [
            "tengine.taobao.org_ingresschecksums.yaml",
            "tengine.taobao.org_secretchecksums.yaml"
        ]
    );
    assert!(
        deploy == chart,
        "charts/sluice/files/crds/ differs from deploy/crds/: copy deploy/crds/*.yaml there"
    );
}

#[test]
fn deployment_and_statefulset_run_the_same_pod() {
    let deployment = shipped_file("deployment/deployment.yaml");
    let statefulset = shipped_file("statefulset/statefulset.yaml");
    let deployment = find(&deployment, "Deployment");
    let statefulset = find(&statefulset, "StatefulSet");
    assert_eq!((deployment.len(), statefulset.len()), (1, 1));
    assert_eq!(
        deployment[0]["spec"]["template"], statefulset[0]["spec"]["template"],
        "deploy/deployment/ and deploy/statefulset/ must run the same pod; edit both"
    );
    assert!(statefulset[0]["spec"]["serviceName"].is_string());
}

#[test]
fn chart_rbac_grants_what_deploy_rbac_grants() {
    let shipped = shipped_file("rbac.yaml");
    let rendered = render_chart("sluice", &[]);
    for kind in ["ClusterRole", "Role"] {
        let shipped_roles = find(&shipped, kind);
        let rendered_roles = find(&rendered, kind);
        assert_eq!(
            (shipped_roles.len(), rendered_roles.len()),
            (1, 1),
            "{kind}"
        );
        assert_eq!(
            grants(shipped_roles[0]),
            grants(rendered_roles[0]),
            "the chart's {kind} (watchNamespace unset) must grant exactly what deploy/rbac.yaml grants"
        );
    }
}

#[test]
fn chart_rejects_an_unknown_workload_kind() {
    let out = helm_template("sluice", &["kind=DaemonSet"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("values.kind is \"DaemonSet\"; set it to Deployment or StatefulSet"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// Tests against the real API server.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shipped_object_and_the_rendered_chart_pass_a_server_side_dry_run() {
    let fixture = Fixture::start("dry-run");
    let api = &fixture.api;
    let shipped = shipped_objects();
    let kinds: BTreeSet<&str> = shipped.iter().map(kind_of).collect();
    for kind in [
        "CustomResourceDefinition",
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "IngressClass",
        "Service",
        "Deployment",
        "StatefulSet",
    ] {
        assert!(kinds.contains(kind), "deploy/ ships no {kind}");
    }

    // Dry runs of custom resources, and of anything in a namespace, need the CRD, the namespace
    // and (for Pods) the ServiceAccount to exist for real.
    let crds = find(&shipped, "CustomResourceDefinition");
    fixture.create_all(crds.iter().copied()).await;
    for crd in &crds {
        api.wait_established(crd).await;
    }
    fixture.create_all(find(&shipped, "Namespace")).await;
    fixture
        .create_all([
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": WATCHED}}),
        ])
        .await;
    fixture.create_all(find(&shipped, "ServiceAccount")).await;

    let sets: Vec<(String, Vec<Value>)> = vec![
        ("deploy/".to_owned(), shipped.clone()),
        (
            "the chart with default values".to_owned(),
            render_chart("sluice", &[]),
        ),
        (
            format!("the chart with kind=StatefulSet, watchNamespace={WATCHED}"),
            render_chart(
                "sluice",
                &["kind=StatefulSet", &format!("watchNamespace={WATCHED}")],
            ),
        ),
    ];
    let mut refused = Vec::new();
    for (origin, objects) in &sets {
        let mut checked: Vec<Value> = objects.clone();
        // A Deployment's pods are admitted only when its controller creates them: check the
        // pod template against the namespace's Pod Security level directly.
        for workload in objects
            .iter()
            .filter(|o| matches!(kind_of(o), "Deployment" | "StatefulSet"))
        {
            checked.push(pod_of(workload));
        }
        for object in &checked {
            let reply = api.dry_run_apply(object).await;
            if !matches!(reply.status, StatusCode::OK | StatusCode::CREATED) {
                refused.push(format!(
                    "{origin}: {} refused ({}): {}",
                    describe(object),
                    reply.status,
                    reply.message()
                ));
            } else if !reply.warnings.is_empty() {
                refused.push(format!(
                    "{origin}: {} accepted with warnings: {:?}",
                    describe(object),
                    reply.warnings
                ));
            }
        }
    }
    assert!(refused.is_empty(), "{}", refused.join("\n"));

    // The chart variants render what they promise.
    let statefulset_chart = &sets[2].1;
    let statefulset = find(statefulset_chart, "StatefulSet");
    assert_eq!(statefulset.len(), 1);
    assert_eq!(statefulset[0]["spec"]["serviceName"], "sluice-headless");
    let args = statefulset[0]["spec"]["template"]["spec"]["containers"][0]["args"].clone();
    assert!(
        args.as_array()
            .into_iter()
            .flatten()
            .any(|a| a == &json!(format!("--watch-namespace={WATCHED}"))),
        "{args}"
    );
    assert!(
        find(statefulset_chart, "Role")
            .iter()
            .any(|r| r["metadata"]["namespace"] == WATCHED)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checksum_crds_enforce_the_documented_fields() {
    let fixture = Fixture::start("crds");
    let api = &fixture.api;
    let crds = shipped_objects()
        .into_iter()
        .filter(|o| kind_of(o) == "CustomResourceDefinition")
        .collect::<Vec<_>>();
    fixture.create_all(&crds).await;
    for crd in &crds {
        api.wait_established(crd).await;
    }
    fixture
        .create_all([
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": WATCHED}}),
        ])
        .await;

    for kind in ["IngressCheckSum", "SecretCheckSum"] {
        let object = |spec: Value| {
            json!({
                "apiVersion": "tengine.taobao.org/v1",
                "kind": kind,
                "metadata": {"name": "checksum-1", "namespace": WATCHED},
                "spec": spec,
            })
        };
        let valid = object(json!({
            "timestamp": "2026-01-02T03:04:05Z",
            "checksum": "0123456789abcdef0123456789abcdef",
            "ids": ["27555-1", "123992-1"],
        }));
        let reply = api.dry_run_apply(&valid).await;
        assert_eq!(
            reply.status,
            StatusCode::CREATED,
            "{kind}: {}",
            reply.message()
        );

        let invalid = [
            (
                json!({"checksum": "0123456789abcdef0123456789abcdef"}),
                "spec.timestamp: Required value",
            ),
            (json!({"timestamp": "yesterday"}), "spec.timestamp"),
            (
                json!({"timestamp": "2026-01-02T03:04:05Z", "checksum": "0123456789ABCDEF0123456789ABCDEF"}),
                "spec.checksum",
            ),
            (
                json!({"timestamp": "2026-01-02T03:04:05Z", "ids": ["1-1", "1-1"]}),
                "spec.ids[1]: Duplicate value",
            ),
        ];
        for (spec, expected) in invalid {
            let reply = api.dry_run_create(&object(spec.clone())).await;
            assert_eq!(
                reply.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{kind} with spec {spec} was not rejected: {}",
                reply.message()
            );
            assert!(
                reply.message().contains(expected),
                "{kind} with spec {spec}: expected {expected:?} in {:?}",
                reply.message()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_rbac_grants_what_sluice_needs_and_no_more() {
    let fixture = Fixture::start("rbac");
    let api = &fixture.api;
    fixture.create_all(&shipped_file("namespace.yaml")).await;
    fixture
        .create_all([
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": WATCHED}}),
        ])
        .await;
    fixture.create_all(&shipped_file("rbac.yaml")).await;

    let sluice = Identity::service_account(NAMESPACE, "sluice");
    let mut needed = Vec::new();
    for verb in ["list", "watch", "get"] {
        needed.extend([
            access(verb, "networking.k8s.io", "ingresses", ""),
            access(verb, "networking.k8s.io", "ingressclasses", ""),
            access(verb, "", "services", ""),
            access(verb, "discovery.k8s.io", "endpointslices", ""),
            access(verb, "", "secrets", ""),
            access(verb, "", "configmaps", ""),
            access(verb, "tengine.taobao.org", "ingresschecksums", ""),
            access(verb, "tengine.taobao.org", "secretchecksums", ""),
        ]);
    }
    needed.extend([
        status_access("update", "default"),
        status_access("patch", WATCHED),
        access("create", "", "events", "default"),
        access("patch", "", "events", WATCHED),
        access("create", "events.k8s.io", "events", "default"),
        access("get", "coordination.k8s.io", "leases", NAMESPACE),
        access("create", "coordination.k8s.io", "leases", NAMESPACE),
        access("update", "coordination.k8s.io", "leases", NAMESPACE),
        access("get", "", "pods", NAMESPACE),
    ]);
    let forbidden = [
        access("delete", "networking.k8s.io", "ingresses", "default"),
        access("update", "networking.k8s.io", "ingresses", "default"),
        access("patch", "networking.k8s.io", "ingresses", "default"),
        access("create", "networking.k8s.io", "ingresses", "default"),
        access("delete", "networking.k8s.io", "ingressclasses", ""),
        access("list", "", "pods", ""),
        access("get", "", "pods", "default"),
        access("update", "", "secrets", "default"),
        access("delete", "", "secrets", "default"),
        access("create", "", "secrets", NAMESPACE),
        access("update", "", "services", "default"),
        access("update", "", "configmaps", NAMESPACE),
        access("update", "discovery.k8s.io", "endpointslices", "default"),
        access(
            "create",
            "tengine.taobao.org",
            "ingresschecksums",
            "default",
        ),
        access("delete", "tengine.taobao.org", "secretchecksums", "default"),
        access("create", "coordination.k8s.io", "leases", "default"),
        access("delete", "coordination.k8s.io", "leases", NAMESPACE),
        access("list", "", "nodes", ""),
        access("create", "", "serviceaccounts", NAMESPACE),
    ];
    let mut wrong = wrong_answers(api, &sluice, &needed, true).await;
    wrong.extend(wrong_answers(api, &sluice, &forbidden, false).await);

    // The chart confined to one namespace: the same needs, but only there.
    let confined = render_chart("edge", &[&format!("watchNamespace={WATCHED}")]);
    fixture
        .create_all(confined.iter().filter(|o| {
            matches!(
                kind_of(o),
                "ServiceAccount" | "ClusterRole" | "ClusterRoleBinding" | "Role" | "RoleBinding"
            )
        }))
        .await;
    let edge = Identity::service_account(NAMESPACE, "edge-sluice");
    let confined_needs = [
        access("list", "networking.k8s.io", "ingresses", WATCHED),
        access("watch", "networking.k8s.io", "ingresses", WATCHED),
        access("list", "networking.k8s.io", "ingressclasses", ""),
        access("watch", "discovery.k8s.io", "endpointslices", WATCHED),
        access("watch", "", "services", WATCHED),
        access("watch", "", "secrets", WATCHED),
        access("watch", "tengine.taobao.org", "ingresschecksums", WATCHED),
        access("watch", "", "configmaps", NAMESPACE),
        status_access("update", WATCHED),
        access("create", "", "events", WATCHED),
        access("update", "coordination.k8s.io", "leases", NAMESPACE),
        access("get", "", "pods", NAMESPACE),
    ];
    let confined_forbidden = [
        access("list", "networking.k8s.io", "ingresses", ""),
        access("list", "networking.k8s.io", "ingresses", "default"),
        access("list", "", "secrets", ""),
        access("get", "", "secrets", "default"),
        access("list", "", "configmaps", ""),
        status_access("update", "default"),
        access("create", "", "events", "default"),
        access("delete", "networking.k8s.io", "ingresses", WATCHED),
    ];
    wrong.extend(wrong_answers(api, &edge, &confined_needs, true).await);
    wrong.extend(wrong_answers(api, &edge, &confined_forbidden, false).await);

    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
