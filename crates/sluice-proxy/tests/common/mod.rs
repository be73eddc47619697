//! Shared test fixtures: backends, snapshots, certificates, clients and a running proxy.
#![allow(dead_code)]

use arc_swap::ArcSwap;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};
use sluice_model::{
    BackendKey, BackendSlot, CertSet, Endpoints, HostTable, KeyAlgorithm, ObjectKind, ObjectRef,
    PathMatch, Route, RoutePolicy, RouteTarget, ServerCert, ServicePortRef, Snapshot, Upstream,
    VirtualHost,
};
use sluice_proxy::{DataPlane, ProxyConfig};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub type ClientBody = BoxBody<Bytes, Infallible>;

/// Generous bound for anything a test waits for on a noisy 2-core machine.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(PATIENCE, f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

// ---------------------------------------------------------------- backends

/// An HTTP/1.1 backend that answers every request with `x-backend: <name>`, the request line
/// and headers echoed as `x-echo-*` / `echo-<header>` headers, and the request body streamed
/// back. Path `/hop` also sends hop-by-hop headers that must not reach the client.
pub async fn echo_backend(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| async move {
                    let mut resp = Response::builder()
                        .header("x-backend", name)
                        .header("x-echo-uri", req.uri().to_string())
                        .header("x-echo-method", req.method().as_str())
                        .header("x-echo-version", format!("{:?}", req.version()));
                    for (k, v) in req.headers() {
                        resp = resp.header(format!("echo-{k}"), v);
                    }
                    if req.uri().path() == "/hop" {
                        resp = resp
                            .header("connection", "x-private")
                            .header("x-private", "1")
                            .header("keep-alive", "timeout=5")
                            .header("x-public", "1");
                    }
                    Ok::<_, Infallible>(resp.body(req.into_body()).unwrap())
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Like [`echo_backend`], also counting the connections it accepted.
pub async fn counting_echo_backend(name: &'static str) -> (SocketAddr, Arc<AtomicUsize>) {
    let echo = echo_backend(name).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut server = TcpStream::connect(echo).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    (addr, accepted)
}

/// A backend whose first connection answers one request and then drops the connection when
/// the next request arrives (like a server whose idle timeout strikes just as a request is
/// written). Later connections answer everything, with `x-connection: <n>`.
pub async fn closes_first_connection_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        for connection in 1usize.. {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let served = Arc::new(AtomicUsize::new(0));
            tokio::spawn(async move {
                let service = service_fn(move |_req: Request<Incoming>| {
                    let served = served.fetch_add(1, Ordering::SeqCst);
                    async move {
                        if connection == 1 && served >= 1 {
                            return Err("closing instead of answering");
                        }
                        Ok(Response::builder()
                            .header("x-connection", connection.to_string())
                            .body(Full::new(Bytes::from_static(b"ok")))
                            .unwrap())
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A backend that sends a response head and the first bytes of a longer body, then stalls.
pub async fn stalling_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nhello")
                    .await;
                let mut sink = tokio::io::sink();
                let _ = tokio::io::copy(&mut stream, &mut sink).await;
            });
        }
    });
    addr
}

/// A backend that accepts connections and reads requests but never answers.
pub async fn silent_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut sink = tokio::io::sink();
                let _ = tokio::io::copy(&mut stream, &mut sink).await;
            });
        }
    });
    addr
}

/// A port nothing listens on (bound, then closed).
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// A WebSocket backend that echoes every message, prefixed with its name.
pub async fn websocket_backend(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() {
                        let reply = format!("{name}:{}", msg.to_text().unwrap());
                        if ws.send(reply.into()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

// ---------------------------------------------------------------- snapshots

pub fn slot(service: &str, endpoints: &[SocketAddr]) -> Arc<BackendSlot> {
    Arc::new(BackendSlot::new(
        BackendKey {
            namespace: "default".into(),
            service: service.into(),
            port: ServicePortRef::Number(80),
        },
        Endpoints::Ready(endpoints.iter().copied().map(Upstream::Socket).collect()),
    ))
}

pub fn route(path: PathMatch, backend: Arc<BackendSlot>, policy: RoutePolicy) -> Route {
    Route {
        path,
        target: RouteTarget::Backend(backend),
        policy: Arc::new(policy),
        ingress: Arc::new(ObjectRef::new(ObjectKind::Ingress, "default", "test")),
    }
}

pub fn prefix(path: &str, backend: &Arc<BackendSlot>) -> Route {
    route(
        PathMatch::prefix(path),
        backend.clone(),
        RoutePolicy::default(),
    )
}

pub fn vhost(name: &str, tls: bool, mut routes: Vec<Route>) -> VirtualHost {
    routes.sort_by(|a, b| a.path.match_order(&b.path));
    VirtualHost {
        name: name.into(),
        routes,
        fallback: None,
        tls,
    }
}

pub fn snapshot(version: u64, vhosts: Vec<VirtualHost>) -> Snapshot {
    let mut hosts = HostTable::default();
    for v in vhosts {
        if v.name.is_empty() {
            hosts.default = Arc::new(v);
        } else {
            hosts.insert(Arc::new(v));
        }
    }
    Snapshot {
        version,
        hosts,
        ..Default::default()
    }
}

// ---------------------------------------------------------------- certificates

pub struct TestCert {
    pub der: CertificateDer<'static>,
    pub server_cert: ServerCert,
}

/// A self-signed certificate for `names`, with an ECDSA P-256 or RSA-2048 key.
pub fn make_cert(names: &[&str], algorithm: KeyAlgorithm) -> TestCert {
    let alg = match algorithm {
        KeyAlgorithm::Rsa => &rcgen::PKCS_RSA_SHA256,
        _ => &rcgen::PKCS_ECDSA_P256_SHA256,
    };
    let key = rcgen::KeyPair::generate_for(alg).unwrap();
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    let cert = params.self_signed(&key).unwrap();
    let der = cert.der().clone();
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            key.serialize_der(),
        )))
        .unwrap();
    TestCert {
        der: der.clone(),
        server_cert: ServerCert {
            key: Arc::new(CertifiedKey::new(vec![der], signing_key)),
            algorithm,
            secret: ObjectRef::new(ObjectKind::Secret, "default", names[0]),
            not_after: None,
        },
    }
}

pub fn cert_set(certs: &[&TestCert]) -> Arc<CertSet> {
    Arc::new(CertSet::new(
        certs.iter().map(|c| c.server_cert.clone()).collect(),
    ))
}

/// Accepts any server certificate (the tests compare the one presented with the expected one)
/// but still checks the handshake signatures.
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS client: `rsa_tls12_only` offers nothing but TLS 1.2 ECDHE-RSA-AES128-GCM-SHA256.
pub fn tls_client(alpn: &[&str], rsa_tls12_only: bool) -> tokio_rustls::TlsConnector {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    let versions: &[&rustls::SupportedProtocolVersion] = if rsa_tls12_only {
        provider.cipher_suites =
            vec![rustls::crypto::aws_lc_rs::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256];
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let provider = Arc::new(provider);
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

pub type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

pub async fn tls_connect(
    addr: SocketAddr,
    sni: &str,
    connector: &tokio_rustls::TlsConnector,
) -> TlsStream {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(sni.to_string()).unwrap();
    within("TLS handshake", connector.connect(name, tcp))
        .await
        .unwrap()
}

pub fn peer_cert(stream: &TlsStream) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

// ---------------------------------------------------------------- the proxy

pub struct Proxy {
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub shutdown: CancellationToken,
    pub http_task: JoinHandle<()>,
    pub https_task: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(snapshot: Snapshot) -> Proxy {
        Proxy::start_with(snapshot, ProxyConfig::default()).await
    }

    pub async fn start_with(snapshot: Snapshot, config: ProxyConfig) -> Proxy {
        let snapshot = Arc::new(ArcSwap::from_pointee(snapshot));
        let plane = DataPlane::new(snapshot.clone(), config).unwrap();
        let http_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let https_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = http_listener.local_addr().unwrap();
        let https = https_listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let http_task = tokio::spawn({
            let plane = plane.clone();
            let shutdown = shutdown.clone();
            async move { plane.serve_http(http_listener, shutdown).await }
        });
        let https_task = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { plane.serve_https(https_listener, shutdown).await }
        });
        Proxy {
            http,
            https,
            snapshot,
            shutdown,
            http_task,
            https_task,
        }
    }

    pub fn swap(&self, snapshot: Snapshot) {
        self.snapshot.store(Arc::new(snapshot));
    }
}

// ---------------------------------------------------------------- clients

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }
}

pub fn empty() -> ClientBody {
    Full::new(Bytes::new()).boxed()
}

pub fn request(host: &str, path: &str) -> Request<ClientBody> {
    Request::get(path)
        .header("host", host)
        .body(empty())
        .unwrap()
}

pub async fn read(response: Response<Incoming>) -> Reply {
    let (parts, body) = response.into_parts();
    let body = within("response body", body.collect())
        .await
        .unwrap()
        .to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// An HTTP/1.1 client connection over any stream.
pub async fn h1_over<S>(stream: S) -> hyper::client::conn::http1::SendRequest<ClientBody>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn.with_upgrades());
    sender
}

pub async fn h1(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<ClientBody> {
    h1_over(TcpStream::connect(addr).await.unwrap()).await
}

/// An HTTP/2 client connection over any stream (h2c prior knowledge on plain TCP).
pub async fn h2_over<S>(stream: S) -> hyper::client::conn::http2::SendRequest<ClientBody>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

/// One GET on a fresh HTTP/1.1 connection.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Reply {
    let mut sender = h1(addr).await;
    let response = within("response", sender.send_request(request(host, path)))
        .await
        .unwrap();
    read(response).await
}
