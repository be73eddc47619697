//! TLS server configuration: the certificate is chosen per handshake from the current snapshot.
//!
//! One `ServerConfig` lives as long as the process. Its resolver loads the snapshot on every
//! ClientHello, so a renewed certificate is served from the next handshake with no listener or
//! config rebuild, and session tickets stay valid across snapshot swaps.

use crate::ProxyError;
use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ProducesTickets, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use sluice_model::Snapshot;
use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

/// The name in the fallback certificate, so a client that sees it knows no real one applied.
pub(crate) const FAKE_CERT_COMMON_NAME: &str = "Sluice Fake Certificate";
pub(crate) const FAKE_CERT_DNS_NAME: &str = "sluice.invalid";

/// Session-ID resumption entries kept per data plane (a few hundred bytes each).
const SESSION_CACHE_ENTRIES: usize = 16 * 1024;

pub(crate) fn server_config(
    snapshot: Arc<ArcSwap<Snapshot>>,
) -> Result<Arc<ServerConfig>, ProxyError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let resolver = SnapshotCertResolver {
        snapshot,
        fallback: fake_certificates(&provider)?,
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.ticketer = process_ticketer()?;
    // TLS 1.2 clients without ticket support resume by session ID; rustls keeps 256 by default,
    // too few for a gateway's client population.
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
    Ok(Arc::new(config))
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
