//! Harness for the end-to-end gateway tests: the real `sluice` binary on 127.0.0.1 ports chosen by
//! the kernel, a manifest directory it watches, echo backends, test certificates and real HTTP/1.1,
//! HTTP/2, TLS and WebSocket clients.
//!
//! Each test file compiles this module on its own and uses a different part of it.
#![allow(dead_code, unused_imports)]

pub mod backend;
pub mod client;
pub mod gateway;
pub mod kube;
pub mod manifests;

pub use backend::{Backend, refused_port};
pub use client::{
    HttpConn, Resp, TlsSession, default_tls_client, get, get_tls, get_with, rsa_only_tls12_client,
    tls_client, tls_handshake, tls_stream, tls12_client, tls13_client,
};
pub use gateway::{Gateway, run_check, wait_for};
pub use manifests::{
    Ingress, ManifestDir, TestCert, backend_service, docs, exact, ingress_class, path_rule,
    port_name, port_number, prefix, service_with_slices, tls_secret, to_yaml,
};
