//! The manifest directory the gateway watches, and builders for the Kubernetes objects the tests
//! put in it (emitted as block-style YAML so problems point at meaningful lines).

use super::backend::Backend;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh directory under the system temp dir, removed when dropped.
pub struct ManifestDir {
    path: PathBuf,
}

impl ManifestDir {
    pub fn new() -> ManifestDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "sluice-e2e-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&path).expect("create manifest dir");
        ManifestDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes (or replaces) `name` (may contain `sub/dirs/`) atomically: the watcher never sees
    /// half a file.
    pub fn write(&self, name: &str, content: &str) {
        let target = self.path.join(name);
        let parent = target.parent().expect("a file inside the directory");
        std::fs::create_dir_all(parent).expect("create manifest subdirectory");
        let file_name = target
            .file_name()
            .and_then(|n| n.to_str())
            .expect("file name");
        let temp = parent.join(format!(".{file_name}.partial"));
        std::fs::write(&temp, content).expect("write manifest");
        std::fs::rename(&temp, &target).expect("rename manifest into place");
    }

    pub fn remove(&self, name: &str) {
        std::fs::remove_file(self.path.join(name)).expect("remove manifest");
    }
}

impl Default for ManifestDir {
    fn default() -> Self {
        ManifestDir::new()
    }
}

impl Drop for ManifestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Several documents in one file.
pub fn docs(documents: &[String]) -> String {
    documents.join("---\n")
}

/// Block-style YAML for a JSON value; strings are double-quoted (JSON escapes are YAML escapes).
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(_) | Value::Array(_) => emit(value, 0, &mut out),
        scalar => {
            out.push_str(&scalar.to_string());
            out.push('\n');
        }
    }
    out
}

fn emit(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                out.push_str(&format!("{pad}{key}:"));
                emit_value(v, indent + 2, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::Object(m) if !m.is_empty() => {
                        let mut nested = String::new();
                        emit(item, indent + 2, &mut nested);
                        // The first key goes on the dash's line.
                        out.push_str(&format!("{pad}- "));
                        out.push_str(&nested[indent + 2..]);
                    }
                    _ => {
                        out.push_str(&format!("{pad}-"));
                        emit_value(item, indent + 2, out);
                    }
                }
            }
        }
        scalar => out.push_str(&format!("{pad}{scalar}\n")),
    }
}

fn emit_value(v: &Value, indent: usize, out: &mut String) {
    match v {
        Value::Object(m) if m.is_empty() => out.push_str(" {}\n"),
        Value::Array(a) if a.is_empty() => out.push_str(" []\n"),
        Value::Object(_) => {
            out.push('\n');
            emit(v, indent, out);
        }
        // Lists are indented under their key (indentless sequences are valid too, but less
        // common in hand-written manifests).
        Value::Array(_) => {
            out.push('\n');
            emit(v, indent, out);
        }
        scalar => out.push_str(&format!(" {scalar}\n")),
    }
}

/// `IngressClass` `name` with `spec.controller`, optionally the cluster default.
pub fn ingress_class(name: &str, controller: &str, is_default: bool) -> String {
    let mut v = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": name},
        "spec": {"controller": controller},
    });
    if is_default {
        v["metadata"]["annotations"] =
            json!({"ingressclass.kubernetes.io/is-default-class": "true"});
    }
    to_yaml(&v)
}

/// A Service named after `backend` (port 80 named `http`) and one EndpointSlice with its address.
pub fn backend_service(namespace: &str, backend: &Backend) -> String {
    service_with_slices(namespace, &backend.name, &[(backend.port(), true)])
}

/// Service `name` (port 80 named `http`) whose endpoints are 127.0.0.1 on each given port, one
/// EndpointSlice per port (a slice's ports apply to all its endpoints), ready or not.
pub fn service_with_slices(namespace: &str, name: &str, endpoints: &[(u16, bool)]) -> String {
    let mut documents = vec![to_yaml(&json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
    }))];
    for (i, (port, ready)) in endpoints.iter().enumerate() {
        documents.push(to_yaml(&json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": format!("{name}-{i}"),
                "namespace": namespace,
                "labels": {"kubernetes.io/service-name": name},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": ready}}],
        })));
    }
    docs(&documents)
}

/// A `kubernetes.io/tls` Secret with `stringData`.
pub fn tls_secret(namespace: &str, name: &str, cert_pem: &str, key_pem: &str) -> String {
    to_yaml(&json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": {"tls.crt": cert_pem, "tls.key": key_pem},
    }))
}

/// An Ingress backend port by number.
pub fn port_number(n: u16) -> Value {
    json!({"number": n})
}

/// An Ingress backend port by Service port name.
pub fn port_name(name: &str) -> Value {
    json!({"name": name})
}

/// One `spec.rules[].http.paths[]` entry.
pub fn path_rule(path: &str, path_type: &str, service: &str, port: Value) -> Value {
    json!({
        "path": path,
        "pathType": path_type,
        "backend": {"service": {"name": service, "port": port}},
    })
}

/// Prefix `path` to `service` port 80.
pub fn prefix(path: &str, service: &str) -> Value {
    path_rule(path, "Prefix", service, port_number(80))
}

/// Exact `path` to `service` port 80.
pub fn exact(path: &str, service: &str) -> Value {
    path_rule(path, "Exact", service, port_number(80))
}

/// Builder for a `networking.k8s.io/v1` Ingress; class `sluice` unless changed.
pub struct Ingress {
    v: Value,
}

impl Ingress {
    pub fn new(namespace: &str, name: &str) -> Ingress {
        Ingress {
            v: json!({
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"ingressClassName": "sluice"},
            }),
        }
    }

    pub fn class(mut self, class: &str) -> Ingress {
        self.v["spec"]["ingressClassName"] = json!(class);
        self
    }

    pub fn no_class(mut self) -> Ingress {
        if let Some(spec) = self.v["spec"].as_object_mut() {
            spec.remove("ingressClassName");
        }
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Ingress {
        if self.v["metadata"].get("annotations").is_none() {
            self.v["metadata"]["annotations"] = json!({});
        }
        self.v["metadata"]["annotations"][key] = json!(value);
        self
    }

    /// A rule for `host` (`""`: no host, all traffic) with these paths.
    pub fn rule(mut self, host: &str, paths: Vec<Value>) -> Ingress {
        let mut rule = json!({"http": {"paths": paths}});
        if !host.is_empty() {
            rule["host"] = json!(host);
        }
        push(&mut self.v["spec"], "rules", rule);
        self
    }

    pub fn default_backend(mut self, service: &str, port: Value) -> Ingress {
        self.v["spec"]["defaultBackend"] = json!({"service": {"name": service, "port": port}});
        self
    }

    pub fn tls(mut self, hosts: &[&str], secret: &str) -> Ingress {
        push(
            &mut self.v["spec"],
            "tls",
            json!({"hosts": hosts, "secretName": secret}),
        );
        self
    }

    pub fn yaml(&self) -> String {
        to_yaml(&self.v)
    }

    pub fn value(&self) -> Value {
        self.v.clone()
    }
}

fn push(parent: &mut Value, key: &str, item: Value) {
    if parent.get(key).is_none() {
        parent[key] = json!([]);
    }
    if let Some(list) = parent[key].as_array_mut() {
        list.push(item);
    }
}

/// A self-signed certificate for some DNS names, PEM for Secrets and DER for comparing with what
/// a handshake presented.
#[derive(Clone)]
pub struct TestCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl TestCert {
    pub fn ecdsa(names: &[&str]) -> TestCert {
        TestCert::generate(names, &rcgen::PKCS_ECDSA_P256_SHA256)
    }

    /// RSA-2048 (aws-lc-rs generates it).
    pub fn rsa(names: &[&str]) -> TestCert {
        TestCert::generate(names, &rcgen::PKCS_RSA_SHA256)
    }

    fn generate(names: &[&str], alg: &'static rcgen::SignatureAlgorithm) -> TestCert {
        let key = rcgen::KeyPair::generate_for(alg).expect("generate key");
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("certificate params");
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            names.first().copied().unwrap_or("test"),
        );
        let cert = params.self_signed(&key).expect("self-sign");
        TestCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    pub fn secret(&self, namespace: &str, name: &str) -> String {
        tls_secret(namespace, name, &self.cert_pem, &self.key_pem)
    }
}
