//! A minimal client of the kube-fixture API server (scripts/kube-fixture): the fixture's
//! lifetime, server-side dry runs, and SubjectAccessReviews.

use super::{describe, kind_of, kube_fixture_built, name_of, repo, scratch_dir};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::crypto::aws_lc_rs;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const DEADLINE: Duration = Duration::from_secs(15);
const FIELD_MANAGER: &str = "sluice-deploy-assets-test";

pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub warnings: Vec<String>,
}

impl Reply {
    pub fn message(&self) -> String {
        match self.body["message"].as_str() {
            Some(message) => message.to_owned(),
            None => self.body.to_string(),
        }
    }
}

pub struct Api {
    authority: String,
    server_name: ServerName<'static>,
    tls: TlsConnector,
    token: String,
}

impl Api {
    fn new(url: &str, ca: &Path, token: &str) -> Api {
        let authority = url
            .trim()
            .strip_prefix("https://")
            .unwrap_or_else(|| panic!("fixture URL {url:?} is not https://host:port"))
            .trim_end_matches('/')
            .to_owned();
        let host = authority
            .rsplit_once(':')
            .map_or(authority.as_str(), |(host, _)| host);
        let server_name = ServerName::try_from(host.to_owned()).expect("fixture host");
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).expect("read the fixture CA") {
            roots
                .add(cert.expect("parse the fixture CA"))
                .expect("add the fixture CA");
        }
        let config = ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Api {
            authority,
            server_name,
            tls: TlsConnector::from(Arc::new(config)),
            token: token.trim().to_owned(),
        }
    }

    async fn call(&self, method: Method, path: &str, content_type: &str, body: Vec<u8>) -> Reply {
        let what = format!("{method} {path}");
        let exchange = async {
            let tcp = TcpStream::connect(&self.authority).await?;
            let tls = self.tls.connect(self.server_name.clone(), tcp).await?;
            let (mut sender, conn) = http1::handshake(TokioIo::new(tls)).await?;
            tokio::spawn(conn);
            let request = Request::builder()
                .method(method)
                .uri(path)
                .header("host", &self.authority)
                .header("authorization", format!("Bearer {}", self.token))
                .header("accept", "application/json")
                .header("content-type", content_type)
                .body(Full::new(Bytes::from(body)))?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            let warnings = response
                .headers()
                .get_all("warning")
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect();
            let bytes = response.into_body().collect().await?.to_bytes();
            let body = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Reply {
                status,
                body,
                warnings,
            })
        };
        match tokio::time::timeout(Duration::from_secs(30), exchange).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => panic!("{what}: {e}"),
            Err(_) => panic!("{what}: no answer within 30 s"),
        }
    }

    async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, "application/json", Vec::new())
            .await
    }

    async fn post(&self, path: &str, body: &Value) -> Reply {
        self.call(
            Method::POST,
            path,
            "application/json",
            body.to_string().into_bytes(),
        )
        .await
    }

    /// The collection path of an object's kind, from the server's own discovery (so an API
    /// version the server does not serve fails here, by name). Polls while the group is not
    /// served yet, which is the case for a moment after its CRD was created.
    async fn collection(&self, object: &Value) -> String {
        let api_version = object["apiVersion"].as_str().unwrap_or("");
        let kind = kind_of(object);
        let name = name_of(object);
        assert!(
            !api_version.is_empty() && !kind.is_empty() && !name.is_empty(),
            "an object without apiVersion, kind or metadata.name: {object}"
        );
        let group_path = if api_version == "v1" {
            "/api/v1".to_owned()
        } else {
            format!("/apis/{api_version}")
        };
        let started = Instant::now();
        let resource = loop {
            let reply = self.get(&group_path).await;
            let found = reply.body["resources"].as_array().and_then(|resources| {
                resources
                    .iter()
                    .find(|r| r["kind"] == kind && !r["name"].as_str().unwrap_or("/").contains('/'))
            });
            if let Some(resource) = found {
                break resource.clone();
            }
            assert!(
                started.elapsed() < DEADLINE,
                "{}: the API server does not serve kind {kind} in {api_version} ({}: {})",
                describe(object),
                reply.status,
                reply.message()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let plural = resource["name"].as_str().unwrap_or("");
        let namespace = object["metadata"]["namespace"].as_str();
        if resource["namespaced"] == true {
            let namespace = namespace.unwrap_or_else(|| {
                panic!(
                    "{}: a namespaced object without metadata.namespace would land in whatever \
                     namespace kubectl's context names; set it",
                    describe(object)
                )
            });
            format!("{group_path}/namespaces/{namespace}/{plural}")
        } else {
            assert!(
                namespace.is_none(),
                "{}: {kind} is cluster-scoped but has metadata.namespace",
                describe(object)
            );
            format!("{group_path}/{plural}")
        }
    }

    /// Creates the object for real.
    pub async fn create(&self, object: &Value) -> Reply {
        let path = self.collection(object).await;
        self.post(&path, object).await
    }

    /// A create the server validates and admits but does not store (as a control plane creating
    /// a checksum object would, without the store).
    pub async fn dry_run_create(&self, object: &Value) -> Reply {
        let path = format!(
            "{}?dryRun=All&fieldValidation=Strict",
            self.collection(object).await
        );
        self.post(&path, object).await
    }

    /// What `kubectl apply --server-side --dry-run=server` does: the server validates, defaults
    /// and admits the object (201 if it would be created, 200 if updated) but stores nothing.
    /// Strict field validation turns an unknown or duplicated field into an error.
    pub async fn dry_run_apply(&self, object: &Value) -> Reply {
        let path = format!(
            "{}/{}?dryRun=All&fieldManager={FIELD_MANAGER}&fieldValidation=Strict&force=true",
            self.collection(object).await,
            name_of(object)
        );
        // JSON is YAML, so the object goes as it is.
        self.call(
            Method::PATCH,
            &path,
            "application/apply-patch+yaml",
            object.to_string().into_bytes(),
        )
        .await
    }

    pub async fn wait_established(&self, crd: &Value) {
        let path = format!(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{}",
            name_of(crd)
        );
        let started = Instant::now();
        loop {
            let reply = self.get(&path).await;
            let established = reply.body["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Established" && c["status"] == "True");
            if established {
                return;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "{} was not Established within {DEADLINE:?}: {}",
                describe(crd),
                reply.body["status"]
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the identity may do this, as the RBAC authorizer decides it.
    pub async fn can(&self, who: &Identity, access: &Access) -> bool {
        let review = json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": who.user,
                "groups": who.groups,
                "resourceAttributes": {
                    "verb": access.verb,
                    "group": access.group,
                    "resource": access.resource,
                    "subresource": access.subresource,
                    "namespace": access.namespace,
                },
            },
        });
        let reply = self
            .post(
                "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                &review,
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::CREATED,
            "SubjectAccessReview: {}",
            reply.message()
        );
        reply.body["status"]["allowed"] == true
    }
}

/// A throwaway etcd + kube-apiserver with RBAC (scripts/kube-fixture/start.sh), stopped on drop.
/// Its directory is removed after a passing test and kept (with the logs) after a failing one.
pub struct Fixture {
    dir: PathBuf,
    pub api: Api,
}

impl Fixture {
    pub fn start(what: &str) -> Fixture {
        kube_fixture_built();
        let dir = scratch_dir(what);
        let out = Command::new(repo().join("scripts/kube-fixture/start.sh"))
            .arg(&dir)
            .output()
            .expect("run scripts/kube-fixture/start.sh");
        assert!(
            out.status.success(),
            "scripts/kube-fixture/start.sh {} failed:\n{}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .unwrap_or_else(|e| panic!("{}/{name}: {e}", dir.display()))
        };
        let api = Api::new(&read("url"), &dir.join("ca.crt"), &read("admin.token"));
        Fixture { dir, api }
    }

    /// Creates the objects for real, each must answer 201.
    pub async fn create_all<'a>(&self, objects: impl IntoIterator<Item = &'a Value>) {
        for object in objects {
            let reply = self.api.create(object).await;
            assert_eq!(
                reply.status,
                StatusCode::CREATED,
                "creating {}: {}",
                describe(object),
                reply.message()
            );
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/kube-fixture/stop.sh"))
            .arg(&self.dir)
            .output();
        if std::thread::panicking() {
            eprintln!(
                "kube fixture logs kept in {}",
                self.dir.join("kube-apiserver.log").display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

impl Identity {
    /// The identity of pods running under the ServiceAccount, as the token authenticator sets it.
    pub fn service_account(namespace: &str, name: &str) -> Identity {
        Identity {
            user: format!("system:serviceaccount:{namespace}:{name}"),
            groups: vec![
                "system:serviceaccounts".to_owned(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".to_owned(),
            ],
        }
    }
}

#[derive(Debug)]
pub struct Access {
    pub verb: &'static str,
    pub group: &'static str,
    pub resource: &'static str,
    pub subresource: &'static str,
    /// Empty: every namespace (a cluster-wide list or watch).
    pub namespace: &'static str,
}

pub const fn access(
    verb: &'static str,
    group: &'static str,
    resource: &'static str,
    namespace: &'static str,
) -> Access {
    Access {
        verb,
        group,
        resource,
        subresource: "",
        namespace,
    }
}

pub const fn status_access(verb: &'static str, namespace: &'static str) -> Access {
    Access {
        verb,
        group: "networking.k8s.io",
        resource: "ingresses",
        subresource: "status",
        namespace,
    }
}

/// Lists every access whose answer differs from `expected`.
pub async fn wrong_answers(
    api: &Api,
    who: &Identity,
    accesses: &[Access],
    expected: bool,
) -> Vec<String> {
    let mut wrong = Vec::new();
    for a in accesses {
        if api.can(who, a).await != expected {
            let group = if a.group.is_empty() { "core" } else { a.group };
            let subresource = if a.subresource.is_empty() {
                String::new()
            } else {
                format!("/{}", a.subresource)
            };
            let scope = if a.namespace.is_empty() {
                "all namespaces"
            } else {
                a.namespace
            };
            let answer = if expected { "allowed" } else { "denied" };
            wrong.push(format!(
                "{} {} {group}/{}{subresource} in {scope}: expected {answer}",
                who.user, a.verb, a.resource
            ));
        }
    }
    wrong
}
