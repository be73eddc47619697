//! Real clients: HTTP/1.1 over TCP, HTTP/1.1 or HTTP/2 over TLS (chosen by ALPN), and a raw TLS
//! handshake that shows which certificate the gateway presented.
//!
//! Certificates are compared byte for byte by the tests, so the verifier accepts any chain but
//! still checks the handshake signatures (the server must own the key it presented).

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Version, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, aws_lc_rs, verify_tls12_signature, verify_tls13_signature};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Every client operation gives up after this long, so a hung gateway fails the test instead of
/// hanging it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(15);

/// A response read to the end.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The echo backend's JSON answer; `None` for anything else (e.g. a gateway error page).
    pub fn echo(&self) -> Option<Value> {
        let v: Value = serde_json::from_str(&self.body).ok()?;
        v.get("backend")?;
        Some(v)
    }

    /// Which echo backend answered, if one did.
    pub fn backend(&self) -> Option<String> {
        self.echo()?
            .get("backend")?
            .as_str()
            .map(ToString::to_string)
    }

    /// A header as the echo backend received it.
    pub fn upstream_header(&self, name: &str) -> Option<String> {
        self.echo()?
            .get("headers")?
            .get(name)?
            .as_str()
            .map(ToString::to_string)
    }
}

/// One client connection to the gateway; requests on it reuse it (keep-alive or HTTP/2 streams).
pub enum HttpConn {
    H1(http1::SendRequest<Full<Bytes>>),
    /// With the URI scheme its requests carry (`https`, or `http` for h2c).
    H2(http2::SendRequest<Full<Bytes>>, &'static str),
}

/// What a TLS handshake negotiated.
#[derive(Debug, Clone)]
pub struct TlsSession {
    /// DER of the end-entity certificate the server presented.
    pub peer_cert: Vec<u8>,
    pub alpn: Option<Vec<u8>>,
    pub version: Option<rustls::ProtocolVersion>,
    pub cipher_suite: Option<rustls::CipherSuite>,
}

impl HttpConn {
    /// HTTP/1.1 over plain TCP.
    pub async fn plain(addr: SocketAddr) -> Result<HttpConn, String> {
        let tcp = timeout("connect", TcpStream::connect(addr)).await?;
        let (sender, conn) =
            timeout("HTTP/1.1 handshake", http1::handshake(TokioIo::new(tcp))).await?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        Ok(HttpConn::H1(sender))
    }

    /// HTTP/2 over plain TCP with prior knowledge (h2c).
    pub async fn h2c(addr: SocketAddr) -> Result<HttpConn, String> {
        let tcp = timeout("connect", TcpStream::connect(addr)).await?;
        let (sender, conn) = timeout(
            "HTTP/2 handshake",
            http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)),
        )
        .await?;
        tokio::spawn(conn);
        Ok(HttpConn::H2(sender, "http"))
    }

    /// TLS with SNI `sni`; HTTP/2 if the server picked `h2` by ALPN, else HTTP/1.1.
    pub async fn tls(
        addr: SocketAddr,
        sni: &str,
        config: Arc<ClientConfig>,
    ) -> Result<(HttpConn, TlsSession), String> {
        let (stream, session) = tls_stream(addr, sni, config).await?;
        let io = TokioIo::new(stream);
        let conn = if session.alpn.as_deref() == Some(b"h2") {
            let (sender, conn) = timeout(
                "HTTP/2 handshake",
                http2::handshake(TokioExecutor::new(), io),
            )
            .await?;
            tokio::spawn(conn);
            HttpConn::H2(sender, "https")
        } else {
            let (sender, conn) = timeout("HTTP/1.1 handshake", http1::handshake(io)).await?;
            tokio::spawn(conn);
            HttpConn::H1(sender)
        };
        Ok((conn, session))
    }

    /// True once the server closed the connection (e.g. an idle or request-count limit): no
    /// request was lost, a client simply opens a new connection.
    pub fn is_closed(&self) -> bool {
        match self {
            HttpConn::H1(s) => s.is_closed(),
            HttpConn::H2(s, _) => s.is_closed(),
        }
    }

    pub async fn get(&mut self, host: &str, path: &str) -> Result<Resp, String> {
        self.send(host, path, &[]).await
    }

    /// GET `path` with Host (or :authority) `host` and extra headers.
    pub async fn send(
        &mut self,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Resp, String> {
        self.request(Method::GET, host, path, headers, Bytes::new())
            .await
    }

    /// Any request, with a body.
    pub async fn request(
        &mut self,
        method: Method,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Resp, String> {
        let mut builder = Request::builder().method(method).uri(match self {
            HttpConn::H1(_) => path.to_string(),
            HttpConn::H2(_, scheme) => format!("{scheme}://{host}{path}"),
        });
        if let HttpConn::H1(_) = self {
            builder = builder.header(header::HOST, host);
        }
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let req = builder
            .body(Full::new(body))
            .map_err(|e| format!("bad request: {e}"))?;
        let resp = match self {
            HttpConn::H1(s) => {
                timeout("connection ready", s.ready()).await?;
                timeout("response", s.send_request(req)).await?
            }
            HttpConn::H2(s, _) => {
                timeout("connection ready", s.ready()).await?;
                timeout("response", s.send_request(req)).await?
            }
        };
        let (parts, body) = resp.into_parts();
        let body = timeout("response body", body.collect()).await?.to_bytes();
        Ok(Resp {
            status: parts.status.as_u16(),
            version: parts.version,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// One request on a fresh plain HTTP/1.1 connection.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Result<Resp, String> {
    get_with(addr, host, path, &[]).await
}

/// One request with extra headers on a fresh plain HTTP/1.1 connection.
pub async fn get_with(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Resp, String> {
    HttpConn::plain(addr).await?.send(host, path, headers).await
}

/// One request on a fresh TLS connection (SNI = `host`, ALPN h2 then http/1.1).
pub async fn get_tls(addr: SocketAddr, host: &str, path: &str) -> Result<Resp, String> {
    let (mut conn, _) = HttpConn::tls(addr, host, default_tls_client()).await?;
    conn.get(host, path).await
}

/// A TLS handshake only, to see what the server presented.
pub async fn tls_handshake(
    addr: SocketAddr,
    sni: &str,
    config: Arc<ClientConfig>,
) -> Result<TlsSession, String> {
    tls_stream(addr, sni, config).await.map(|(_, s)| s)
}

/// A TLS connection (for protocols other than plain HTTP requests, e.g. WebSocket).
pub async fn tls_stream(
    addr: SocketAddr,
    sni: &str,
    config: Arc<ClientConfig>,
) -> Result<(TlsStream<TcpStream>, TlsSession), String> {
    let tcp = timeout("connect", TcpStream::connect(addr)).await?;
    let name = ServerName::try_from(sni.to_string()).map_err(|e| format!("SNI {sni}: {e}"))?;
    let stream = timeout(
        "TLS handshake",
        TlsConnector::from(config).connect(name, tcp),
    )
    .await?;
    let conn = stream.get_ref().1;
    let peer_cert = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
        .ok_or("server presented no certificate")?;
    let session = TlsSession {
        peer_cert,
        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        version: conn.protocol_version(),
        cipher_suite: conn.negotiated_cipher_suite().map(|s| s.suite()),
    };
    Ok((stream, session))
}

/// TLS 1.2 + 1.3 with every default suite, offering ALPN `h2` and `http/1.1`.
pub fn default_tls_client() -> Arc<ClientConfig> {
    tls_client(&[b"h2", b"http/1.1"])
}

/// TLS 1.2 + 1.3 with every default suite and the given ALPN protocols.
pub fn tls_client(alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let provider = Arc::new(aws_lc_rs::default_provider());
    client_config(
        provider,
        &[&rustls::version::TLS13, &rustls::version::TLS12],
        alpn,
    )
}

/// TLS 1.3 only, HTTP/1.1.
pub fn tls13_client() -> Arc<ClientConfig> {
    let provider = Arc::new(aws_lc_rs::default_provider());
    client_config(provider, &[&rustls::version::TLS13], &[b"http/1.1"])
}

/// TLS 1.2 only, every default TLS 1.2 suite (ECDSA and RSA).
pub fn tls12_client() -> Arc<ClientConfig> {
    let provider = Arc::new(aws_lc_rs::default_provider());
    client_config(provider, &[&rustls::version::TLS12], &[b"http/1.1"])
}

/// A client that can only use TLS 1.2 with TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, like an old
/// client without ECDSA support: only an RSA certificate can serve it.
pub fn rsa_only_tls12_client() -> Arc<ClientConfig> {
    let provider = Arc::new(CryptoProvider {
        cipher_suites: vec![aws_lc_rs::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256],
        ..aws_lc_rs::default_provider()
    });
    client_config(provider, &[&rustls::version::TLS12], &[b"http/1.1"])
}

fn client_config(
    provider: Arc<CryptoProvider>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<ClientConfig> {
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .expect("protocol versions supported by aws-lc-rs")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // Each connection must make a full handshake, so the certificate choice is observed anew.
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
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
        verify_tls13_signature(
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

async fn timeout<T, E: std::fmt::Display>(
    what: &str,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(IO_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {IO_TIMEOUT:?}")),
    }
}
