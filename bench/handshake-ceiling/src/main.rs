//! Server-side CPU of one full TLS 1.2 handshake (no resumption) with rustls + aws-lc-rs, the
//! client and server talking through memory on one thread, so sockets, the kernel and HTTP cost
//! nothing: what is left is rustls's state machine, the certificate signature and the key
//! exchange. Only the server's calls are timed (thread CPU clock), so the client's work is not
//! charged. 1e6 / (server µs per handshake) is the per-core ceiling of full handshakes.
//!
//!   handshake-ceiling CERT_PEM KEY_PEM [HANDSHAKES] [--bare]
//!
//! The client offers TLS 1.2 only, ECDHE-{RSA,ECDSA}-AES128-GCM-SHA256, X25519 and an empty
//! session-ticket extension, and never resumes (what tools/tls-short does). The server is set up
//! like Sluice's: it issues a ticket and keeps the session in a 16,384-entry session-ID cache on
//! every full handshake; `--bare` turns both off (rustls's minimum work per handshake).

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, aws_lc_rs};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, ServerConfig, ServerConnection,
};
use std::sync::Arc;

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec; CLOCK_THREAD_CPUTIME_ID always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Checks the server's handshake signature (so the server really signs) and trusts any chain.
#[derive(Debug)]
struct SignatureOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for SignatureOnly {
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
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: handshake-ceiling CERT_PEM KEY_PEM [HANDSHAKES] [--bare]");
        std::process::exit(2);
    }
    let handshakes: u32 = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(2000);
    let bare = args.iter().any(|a| a == "--bare");
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&args[1])
        .expect("certificate file")
        .collect::<Result<_, _>>()
        .expect("certificate PEM");
    let key = PrivateKeyDer::from_pem_file(&args[2]).expect("key PEM");

    let provider = Arc::new(aws_lc_rs::default_provider());
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("TLS 1.2")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("certificate and key");
    if bare {
        server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    } else {
        server.ticketer = aws_lc_rs::Ticketer::new().expect("ticketer");
        server.session_storage = rustls::server::ServerSessionMemoryCache::new(16 * 1024);
    }
    let server = Arc::new(server);

    let client_provider = Arc::new(CryptoProvider {
        cipher_suites: vec![
            aws_lc_rs::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            aws_lc_rs::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ],
        kx_groups: vec![aws_lc_rs::kx_group::X25519],
        ..aws_lc_rs::default_provider()
    });
    let mut client = ClientConfig::builder_with_provider(client_provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("TLS 1.2")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SignatureOnly(client_provider)))
        .with_no_client_auth();
    // Offers the empty ticket extension but never stores what it gets: no resumption.
    client.resumption = rustls::client::Resumption::store(Arc::new(NoStore));
    let client = Arc::new(client);
    let name = ServerName::try_from("bench.local").expect("name");

    let mut server_ns = 0u64;
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut suite = None;
    let wall = std::time::Instant::now();
    for _ in 0..handshakes {
        let mut c = ClientConnection::new(client.clone(), name.clone()).expect("client");
        let t = thread_cpu_ns();
        let mut s = ServerConnection::new(server.clone()).expect("server");
        server_ns += thread_cpu_ns() - t;
        while c.is_handshaking() || s.is_handshaking() || s.wants_write() {
            buf.clear();
            while c.wants_write() {
                c.write_tls(&mut buf).expect("client write");
            }
            if !buf.is_empty() {
                let t = thread_cpu_ns();
                let mut rd = &buf[..];
                while !rd.is_empty() {
                    s.read_tls(&mut rd).expect("server read");
                }
                s.process_new_packets().expect("server handshake");
                server_ns += thread_cpu_ns() - t;
            }
            buf.clear();
            let t = thread_cpu_ns();
            while s.wants_write() {
                s.write_tls(&mut buf).expect("server write");
            }
            server_ns += thread_cpu_ns() - t;
            let mut rd = &buf[..];
            while !rd.is_empty() {
                c.read_tls(&mut rd).expect("client read");
            }
            c.process_new_packets().expect("client handshake");
        }
        suite = s.negotiated_cipher_suite();
        let t = thread_cpu_ns();
        drop(s);
        server_ns += thread_cpu_ns() - t;
    }
    let per = server_ns as f64 / handshakes as f64 / 1000.0;
    println!(
        "handshakes {handshakes}  suite {:?}  bare {bare}  server {per:.1} us/handshake  ceiling {:.0} handshakes/s per core  (wall {:.1} s, client included)",
        suite.map(|s| s.suite()),
        1e6 / per,
        wall.elapsed().as_secs_f64()
    );
}

#[derive(Debug)]
struct NoStore;

impl rustls::client::ClientSessionStore for NoStore {
    fn set_kx_hint(&self, _: ServerName<'static>, _: rustls::NamedGroup) {}
    fn kx_hint(&self, _: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        None
    }
    fn set_tls12_session(
        &self,
        _: ServerName<'static>,
        _: rustls::client::Tls12ClientSessionValue,
    ) {
    }
    fn tls12_session(&self, _: &ServerName<'_>) -> Option<rustls::client::Tls12ClientSessionValue> {
        None
    }
    fn remove_tls12_session(&self, _: &ServerName<'static>) {}
    fn insert_tls13_ticket(
        &self,
        _: ServerName<'static>,
        _: rustls::client::Tls13ClientSessionValue,
    ) {
    }
    fn take_tls13_ticket(
        &self,
        _: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        None
    }
}
