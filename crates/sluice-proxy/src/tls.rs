//! TLS server configuration: the certificate is chosen per handshake from the current snapshot.
//!
//! `ssl-protocols` is enforced during the handshake: the ClientHello is read first, the SNI's
//! allowed versions looked up in the snapshot, and the handshake continues with the config that
//! offers exactly those versions, so a client without an allowed version gets rustls's
//! `protocol_version` alert.
//!
//! One `ServerConfig` lives as long as the process. Its resolver loads the snapshot on every
//! ClientHello, so a renewed certificate is served from the next handshake with no listener or
//! config rebuild, and session tickets stay valid across snapshot swaps.

use crate::ProxyError;
use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{Acceptor, StoresServerSessions};
use rustls::server::{ClientHello, ProducesTickets, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use sluice_model::{Snapshot, TlsVersions};
use std::borrow::Cow;
use std::sync::{Arc, OnceLock};
use tokio::net::TcpStream;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

/// The name in the fallback certificate, so a client that sees it knows no real one applied.
pub(crate) const FAKE_CERT_COMMON_NAME: &str = "Sluice Fake Certificate";
pub(crate) const FAKE_CERT_DNS_NAME: &str = "sluice.invalid";

/// Session-ID resumption entries kept per data plane (a few hundred bytes each).
const SESSION_CACHE_ENTRIES: usize = 16 * 1024;

/// One server config per allowed-version set, sharing the certificate resolver, the session
/// cache and the ticket keys (so resumption works whichever config a handshake used).
pub(crate) struct TlsConfigs {
    snapshot: Arc<ArcSwap<Snapshot>>,
    both: Arc<ServerConfig>,
    tls12: Arc<ServerConfig>,
    tls13: Arc<ServerConfig>,
}

impl TlsConfigs {
    pub(crate) fn new(snapshot: Arc<ArcSwap<Snapshot>>) -> Result<TlsConfigs, ProxyError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let resolver: Arc<dyn ResolvesServerCert> = Arc::new(SnapshotCertResolver {
            snapshot: snapshot.clone(),
            fallback: fake_certificates(&provider)?,
        });
        // TLS 1.2 clients without ticket support resume by session ID; rustls keeps 256 by
        // default, too few for a gateway's client population.
        let sessions: Arc<dyn StoresServerSessions> =
            ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
        let ticketer = process_ticketer()?;
        let config = |versions: &[&'static SupportedProtocolVersion]| {
            let mut config = ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(versions)?
                .with_no_client_auth()
                .with_cert_resolver(resolver.clone());
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            config.ticketer = ticketer.clone();
            config.session_storage = sessions.clone();
            Ok::<_, ProxyError>(Arc::new(config))
        };
        Ok(TlsConfigs {
            both: config(&[&rustls::version::TLS13, &rustls::version::TLS12])?,
            tls12: config(&[&rustls::version::TLS12])?,
            tls13: config(&[&rustls::version::TLS13])?,
            snapshot,
        })
    }

    /// Reads the ClientHello, picks the config allowed for its SNI, completes the handshake.
    pub(crate) async fn accept(&self, stream: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        let start = LazyConfigAcceptor::new(Acceptor::default(), stream).await?;
        let config = {
            let hello = start.client_hello();
            let sni = hello.server_name().map(str::to_ascii_lowercase);
            let allowed = self
                .snapshot
                .load()
                .certificates
                .protocols_for(sni.as_deref());
            match allowed {
                Some(TlsVersions {
                    tls12: true,
                    tls13: false,
                }) => self.tls12.clone(),
                Some(TlsVersions {
                    tls12: false,
                    tls13: true,
                }) => self.tls13.clone(),
                _ => self.both.clone(),
            }
        };
        start.into_stream(config).await
    }
}

/// One ticket key schedule per process, so tickets issued by one listener (or one `DataPlane`)
/// resume on every other.
fn process_ticketer() -> Result<Arc<dyn ProducesTickets>, ProxyError> {
    static TICKETER: OnceLock<Arc<dyn ProducesTickets>> = OnceLock::new();
    if let Some(t) = TICKETER.get() {
        return Ok(t.clone());
    }
    let fresh = rustls::crypto::aws_lc_rs::Ticketer::new()?;
    Ok(TICKETER.get_or_init(|| fresh).clone())
}

/// Self-signed certificates for handshakes that match no configured certificate: ECDSA P-256,
/// and RSA-2048 for clients that cannot use ECDSA (so they see the fallback rather than a
/// handshake failure). Generated once per process: RSA key generation is slow.
fn fake_certificates(provider: &CryptoProvider) -> Result<Arc<[Arc<CertifiedKey>]>, ProxyError> {
    static FAKE: OnceLock<Arc<[Arc<CertifiedKey>]>> = OnceLock::new();
    if let Some(certs) = FAKE.get() {
        return Ok(certs.clone());
    }
    let fresh: Arc<[Arc<CertifiedKey>]> = Arc::new([
        fake_certificate(provider, &rcgen::PKCS_ECDSA_P256_SHA256)?,
        fake_certificate(provider, &rcgen::PKCS_RSA_SHA256)?,
    ]);
    Ok(FAKE.get_or_init(|| fresh).clone())
}

fn fake_certificate(
    provider: &CryptoProvider,
    algorithm: &'static rcgen::SignatureAlgorithm,
) -> Result<Arc<CertifiedKey>, ProxyError> {
    let fail = |e: &dyn std::fmt::Display| ProxyError::FakeCertificate(e.to_string());
    let key = rcgen::KeyPair::generate_for(algorithm).map_err(|e| fail(&e))?;
    let mut params = rcgen::CertificateParams::new(vec![FAKE_CERT_DNS_NAME.to_string()])
        .map_err(|e| fail(&e))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, FAKE_CERT_COMMON_NAME);
    let cert = params.self_signed(&key).map_err(|e| fail(&e))?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing_key = provider.key_provider.load_private_key(der)?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signing_key,
    )))
}

#[derive(Debug)]
struct SnapshotCertResolver {
    snapshot: Arc<ArcSwap<Snapshot>>,
    /// ECDSA first, like [`sluice_model::CertSet`].
    fallback: Arc<[Arc<CertifiedKey>]>,
}

impl ResolvesServerCert for SnapshotCertResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = client_hello.server_name().map(|name| {
            if name.bytes().any(|b| b.is_ascii_uppercase()) {
                Cow::Owned(name.to_ascii_lowercase())
            } else {
                Cow::Borrowed(name)
            }
        });
        let snapshot = self.snapshot.load();
        // rustls has already narrowed the schemes to those usable with the shared cipher suites,
        // so an ECDHE-RSA-only TLS 1.2 client is offered only RSA schemes here.
        let chosen = snapshot
            .certificates
            .lookup(sni.as_deref())
            .and_then(|set| set.choose(client_hello.signature_schemes()));
        chosen.or_else(|| {
            let schemes = client_hello.signature_schemes();
            self.fallback
                .iter()
                .find(|c| c.key.choose_scheme(schemes).is_some())
                .or(self.fallback.first())
                .cloned()
        })
    }
}
