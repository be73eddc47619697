//! Server certificates by name. A name may hold several (dual ECDSA + RSA, as Tengine-Ingress
//! does); each handshake takes the first one the client can verify, ECDSA first.

use crate::object::ObjectRef;
use crate::shared_map::SharedMap;
use rustls::SignatureScheme;
use rustls::sign::CertifiedKey;
use serde::Serialize;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum KeyAlgorithm {
    // Order is preference: cheaper handshakes first.
    Ecdsa,
    Ed25519,
    Rsa,
    Other,
}

/// One certificate chain with its key, and the Secret it came from.
#[derive(Debug, Clone)]
pub struct ServerCert {
    pub key: Arc<CertifiedKey>,
    pub algorithm: KeyAlgorithm,
    pub secret: ObjectRef,
    /// Leaf `notAfter` as Unix seconds, when it could be read.
    pub not_after: Option<i64>,
}

/// The certificates of one name, in preference order.
#[derive(Debug, Clone, Default)]
pub struct CertSet {
    pub certs: Vec<ServerCert>,
}

impl CertSet {
    pub fn new(mut certs: Vec<ServerCert>) -> Self {
        certs.sort_by_key(|c| c.algorithm);
        CertSet { certs }
    }

    /// The first certificate whose key can sign with one of the schemes the client offers (rustls
    /// has already narrowed those to the ones compatible with the shared cipher suites). If none
    /// fits, the first one, so the client gets a clear handshake failure rather than silence.
    pub fn choose(&self, schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.certs
            .iter()
            .find(|c| c.key.key.choose_scheme(schemes).is_some())
            .or(self.certs.first())
            .map(|c| c.key.clone())
    }
}

/// The TLS protocol versions a host accepts (`ssl-protocols`); Sluice speaks TLS 1.2 and 1.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TlsVersions {
    pub tls12: bool,
    pub tls13: bool,
}

/// SNI lookup: exact name, then one-label wildcard, then the default certificate. The maps are
/// [`SharedMap`]s for the same reason as the host table's: each snapshot shares them with the
/// one before.
#[derive(Debug, Clone, Default)]
pub struct CertStore {
    pub exact: SharedMap<String, Arc<CertSet>>,
    /// Keyed by parent domain, like [`crate::HostTable::wildcard`].
    pub wildcard: SharedMap<String, Arc<CertSet>>,
    /// From `--default-ssl-certificate`; when `None` the data plane uses its generated one.
    pub default: Option<Arc<CertSet>>,
    /// `ssl-protocols` per host (exact name, or `*.parent` spelled that way): the TLS versions a
    /// handshake for that SNI may use. Hosts not listed allow every version Sluice supports.
    pub protocols: SharedMap<String, TlsVersions>,
}

impl CertStore {
    /// The TLS versions allowed for `sni`: exact name, then one-label wildcard.
    pub fn protocols_for(&self, sni: Option<&str>) -> Option<TlsVersions> {
        let name = sni?;
        if let Some(v) = self.protocols.get(name) {
            return Some(*v);
        }
        let (first, parent) = name.split_once('.')?;
        if first.is_empty() {
            return None;
        }
        self.protocols.get(&format!("*.{parent}")).copied()
    }

    /// `name` is the SNI, lower-case.
    pub fn lookup(&self, name: Option<&str>) -> Option<&Arc<CertSet>> {
        if let Some(name) = name {
            if let Some(set) = self.exact.get(name) {
                return Some(set);
            }
            if let Some((first, parent)) = name.split_once('.')
                && !first.is_empty()
                && let Some(set) = self.wildcard.get(parent)
            {
                return Some(set);
            }
        }
        self.default.as_ref()
    }

    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
