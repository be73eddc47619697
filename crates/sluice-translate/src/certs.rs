//! TLS Secrets to server certificates: PEM chain and key, checked to belong together.

use k8s_openapi::api::core::v1::Secret;
use rustls::SignatureAlgorithm;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sluice_model::{KeyAlgorithm, ObjectRef, ServerCert};
use std::sync::Arc;

const CERT_KEY: &str = "tls.crt";
const KEY_KEY: &str = "tls.key";

/// Builds the certificate of a `kubernetes.io/tls` Secret. The error says what is wrong with
/// the Secret and what to do, without naming the Secret (the caller does).
pub fn load_server_cert(secret: &Secret, secret_ref: &ObjectRef) -> Result<ServerCert, String> {
    let cert_pem = secret_value(secret, CERT_KEY)?;
    let key_pem = secret_value(secret, KEY_KEY)?;

    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("`{CERT_KEY}` is not valid PEM ({}); {}", pem_error(&e), FIX))?;
    if chain.is_empty() {
        return Err(format!(
            "`{CERT_KEY}` holds no `-----BEGIN CERTIFICATE-----` block; {FIX}"
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => format!(
            "`{KEY_KEY}` holds no private key block (PKCS#8 `PRIVATE KEY`, `RSA PRIVATE KEY` or \
             `EC PRIVATE KEY`); {FIX}"
        ),
        other => format!(
            "`{KEY_KEY}` is not valid PEM ({}); {FIX}",
            pem_error(&other)
        ),
    })?;
    let signing_key = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key).map_err(|e| {
        format!(
            "`{KEY_KEY}` is not a usable key ({e}); use an ECDSA P-256/P-384, RSA (2048 bits or \
             more) or Ed25519 key"
        )
    })?;
    let algorithm = match signing_key.algorithm() {
        SignatureAlgorithm::ECDSA => KeyAlgorithm::Ecdsa,
        SignatureAlgorithm::RSA => KeyAlgorithm::Rsa,
        SignatureAlgorithm::ED25519 => KeyAlgorithm::Ed25519,
        _ => KeyAlgorithm::Other,
    };
    let not_after = crate::validity::not_after(&chain[0]);
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => {}
        // The key cannot tell its public half: nothing to compare, the handshake will tell.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(format!(
                "`{KEY_KEY}` does not belong to the first certificate of `{CERT_KEY}`; put the \
                 leaf certificate first in `{CERT_KEY}` and its own key in `{KEY_KEY}`"
            ));
        }
        Err(e) => return Err(format!("the certificate cannot be used ({e}); {FIX}")),
    }
    Ok(ServerCert {
        key: Arc::new(certified),
        algorithm,
        secret: secret_ref.clone(),
        not_after,
    })
}

const FIX: &str = "store the PEM certificate chain (leaf first) under `tls.crt` and its PEM private \
                   key under `tls.key`, e.g. with `kubectl create secret tls NAME --cert=FILE --key=FILE`";

/// `stringData` wins over `data`, as the API server merges them on write.
pub(crate) fn secret_value(secret: &Secret, key: &str) -> Result<Vec<u8>, String> {
    if let Some(v) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
        return Ok(v.as_bytes().to_vec());
    }
    if let Some(v) = secret.data.as_ref().and_then(|d| d.get(key)) {
        return Ok(v.0.clone());
    }
    let kind = secret.type_.as_deref().unwrap_or("Opaque");
    Err(format!(
        "the Secret (type {kind}) has no `{key}` key; a TLS Secret needs `tls.crt` and `tls.key` \
         (type kubernetes.io/tls)"
    ))
}

fn pem_error(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { end_marker } => {
            format!("missing the `{}` line", String::from_utf8_lossy(end_marker))
        }
        pem::Error::IllegalSectionStart { line } => {
            format!("malformed line `{}`", String::from_utf8_lossy(line))
        }
        pem::Error::Base64Decode(why) => format!("bad base64 inside the PEM block: {why}"),
        other => other.to_string(),
    }
}
