//! Certificates from TLS Secrets: dual ECDSA + RSA, wildcards, broken and missing Secrets.

mod common;

use common::{load_fixture, problems_of, service_for, show};
use rcgen::{
    CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256, SignatureAlgorithm,
};
use serde_json::json;
use sluice_model::{KeyAlgorithm, Origin, Severity};
use sluice_store::{NamespacedName, ObjectStore, StoredObject};
use sluice_translate::{TranslateOptions, translate};

fn pem_pair(alg: &'static SignatureAlgorithm, names: &[&str]) -> (String, String) {
    let key = KeyPair::generate_for(alg).unwrap();
    let params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn add_secret(store: &mut ObjectStore, name: &str, (crt, key): (String, String)) {
    let object = StoredObject::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": "shop"},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": crt, "tls.key": key},
    }))
    .unwrap()
    .unwrap();
    store.upsert(
        object,
        Origin::File {
            path: "generated.yaml".into(),
            line: 1,
        },
    );
}

fn tls_store() -> ObjectStore {
    let mut store = ObjectStore::new();
    load_fixture(&mut store, "tls.yaml");
    add_secret(
        &mut store,
        "rsa",
        pem_pair(&PKCS_RSA_SHA256, &["dual.test"]),
    );
    add_secret(
        &mut store,
        "ecdsa",
        pem_pair(&PKCS_ECDSA_P256_SHA256, &["dual.test"]),
    );
    add_secret(
        &mut store,
        "wild",
        pem_pair(&PKCS_ECDSA_P256_SHA256, &["*.wild.test"]),
    );
    let (crt, _) = pem_pair(&PKCS_ECDSA_P256_SHA256, &["mismatch.test"]);
    let (_, other_key) = pem_pair(&PKCS_ECDSA_P256_SHA256, &["mismatch.test"]);
    add_secret(&mut store, "mismatch", (crt, other_key));
    store
}

#[test]
fn dual_secrets_give_one_cert_set_ecdsa_first() {
    let t = translate(&tls_store(), &TranslateOptions::default());
    let set = t
        .snapshot
        .certificates
        .lookup(Some("dual.test"))
        .expect("dual.test has certificates");
    let algorithms: Vec<_> = set.certs.iter().map(|c| c.algorithm).collect();
    assert_eq!(algorithms, [KeyAlgorithm::Ecdsa, KeyAlgorithm::Rsa]);
    assert_eq!(set.certs[0].secret.name, "ecdsa");
    assert_eq!(set.certs[1].secret.name, "rsa");
    // rcgen's default validity ends on 4096-01-01.
    assert_eq!(set.certs[0].not_after, Some(67_090_118_400));
    // A host listed with one Secret gets just that one; names are lower-cased.
    let other = &t.snapshot.certificates.exact["other.dual.test"];
    assert_eq!(other.certs.len(), 1);
    assert!(t.snapshot.hosts.lookup("dual.test").tls);
    assert!(!t.snapshot.hosts.lookup("plain.test").tls);
}

#[test]
fn wildcard_certificates_are_keyed_by_parent() {
    let t = translate(&tls_store(), &TranslateOptions::default());
    assert!(t.snapshot.certificates.wildcard.contains_key("wild.test"));
    let set = t.snapshot.certificates.lookup(Some("a.wild.test")).unwrap();
    assert_eq!(set.certs[0].secret.name, "wild");
    assert!(
        t.snapshot
            .certificates
            .lookup(Some("a.b.wild.test"))
            .is_none()
    );
    assert!(t.snapshot.hosts.lookup("a.wild.test").tls);
}

#[test]
fn broken_or_missing_secrets_are_reported_and_the_host_still_routes() {
    let t = translate(&tls_store(), &TranslateOptions::default());
    let p = problems_of(&t.problems, "tls-shop");
    let fields: Vec<_> = p.iter().map(|p| p.field.as_deref().unwrap_or("")).collect();
    assert_eq!(
        fields,
        [
            "spec.tls[2].secretName",
            "spec.tls[3].secretName",
            "spec.tls[5].secretName"
        ],
        "{}",
        show(&t.problems)
    );
    assert!(p.iter().all(|p| p.severity == Severity::Rejected));
    assert!(
        p[0].reason.contains("Secret shop/garbage"),
        "{}",
        p[0].reason
    );
    assert!(p[0].reason.contains("tls.crt"), "{}", p[0].reason);
    assert!(
        p[0].reason.contains("kubectl create secret tls"),
        "{}",
        p[0].reason
    );
    assert!(p[1].reason.contains("does not exist"), "{}", p[1].reason);
    assert!(p[2].reason.contains("does not belong"), "{}", p[2].reason);
    for host in ["garbage.test", "missing.test", "mismatch.test"] {
        assert_eq!(service_for(&t.snapshot, host, "/"), Some("web".into()));
        assert!(t.snapshot.hosts.lookup(host).tls, "{host}");
        assert!(
            t.snapshot.certificates.lookup(Some(host)).is_none(),
            "{host}"
        );
    }
}

#[test]
fn the_default_certificate_comes_from_its_secret() {
    let store = tls_store();
    let opts = TranslateOptions {
        default_ssl_certificate: Some(NamespacedName::new("shop", "ecdsa")),
        ..TranslateOptions::default()
    };
    let t = translate(&store, &opts);
    let default = t
        .snapshot
        .certificates
        .lookup(Some("unknown.test"))
        .unwrap();
    assert_eq!(default.certs[0].secret.name, "ecdsa");

    let opts = TranslateOptions {
        default_ssl_certificate: Some(NamespacedName::new("shop", "garbage")),
        ..TranslateOptions::default()
    };
    let t = translate(&store, &opts);
    assert!(t.snapshot.certificates.default.is_none());
    let p = problems_of(&t.problems, "garbage");
    assert_eq!(p.len(), 1, "{}", show(&t.problems));
    assert!(p[0].reason.contains("--default-ssl-certificate"));
}
