//! A `Translator` fed one store after another must give what a translation of each store from
//! scratch gives. Random walks add, replace and remove objects of several fixtures (Ingresses
//! that share hosts, wildcard TLS over other Ingresses' hosts, canaries, the default server,
//! Secrets, Services, EndpointSlices, IngressClasses) and compare after every step.

mod common;

use common::fixture_objects;
use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256};
use serde_json::json;
use sluice_model::{Origin, RouteTarget, Snapshot, VirtualHost};
use sluice_store::{NamespacedName, ObjectStore, StoredObject};
use sluice_translate::{TranslateOptions, Translation, Translator, translate};
use std::collections::HashMap;
use std::sync::Arc;

fn secret(name: &str, rsa: bool, names: &[&str]) -> (StoredObject, Origin) {
    let alg = if rsa {
        &PKCS_RSA_SHA256
    } else {
        &PKCS_ECDSA_P256_SHA256
    };
    let key = KeyPair::generate_for(alg).unwrap();
    let params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let object = StoredObject::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": "shop"},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": cert.pem(), "tls.key": key.serialize_pem()},
    }))
    .unwrap()
    .unwrap();
    let origin = Origin::File {
        path: "generated.yaml".into(),
        line: 1,
    };
    (object, origin)
}

fn universe() -> Vec<(StoredObject, Origin)> {
    let mut objects = Vec::new();
    for fixture in [
        "incremental.yaml",
        "merge.yaml",
        "tls.yaml",
        "canary.yaml",
        "matching.yaml",
        "endpoints.yaml",
        "classes.yaml",
    ] {
        objects.extend(fixture_objects(fixture));
    }
    objects.push(secret("wild", false, &["*.wild.test"]));
    objects.push(secret("rsa", true, &["dual.test"]));
    objects.push(secret("ecdsa", false, &["dual.test", "p.wild.test"]));
    // A second version of a Secret: replacing it must reach the hosts using it.
    objects.push(secret("ecdsa", false, &["dual.test", "p.wild.test"]));
    objects
}

/// Everything a snapshot serves, one line per fact, sorted; problems as their messages.
fn describe(t: &Translation) -> Vec<String> {
    let Snapshot {
        hosts,
        certificates,
        backends,
        options,
        ..
    } = &t.snapshot;
    let mut lines = Vec::new();
    for vhost in hosts.iter() {
        lines.push(format!(
            "host {:?} tls={} fallback={:?}",
            vhost.name, vhost.tls, vhost.fallback
        ));
        for (i, route) in vhost.routes.iter().enumerate() {
            lines.push(format!("route {:?} #{i} {route:?}", vhost.name));
        }
    }
    let certs = |set: &sluice_model::CertSet| {
        set.certs
            .iter()
            .map(|c| format!("{:?} {}", c.algorithm, c.secret))
            .collect::<Vec<_>>()
    };
    for (name, set) in &certificates.exact {
        lines.push(format!("cert {name} {:?}", certs(set)));
    }
    for (name, set) in &certificates.wildcard {
        lines.push(format!("wildcard cert {name} {:?}", certs(set)));
    }
    lines.push(format!(
        "default cert {:?}",
        certificates.default.as_deref().map(certs)
    ));
    for (host, versions) in &certificates.protocols {
        lines.push(format!("protocols {host} {versions:?}"));
    }
    for (key, slot) in backends.iter() {
        lines.push(format!("backend {key:?} {:?}", slot.endpoints()));
    }
    lines.push(format!("options {options:?}"));
    lines.extend(t.problems.iter().map(|p| format!("problem {p}")));
    lines.sort();
    lines
}

/// Every route's slot is the snapshot's slot of that key, so endpoint refreshes reach them.
fn slots_are_shared(t: &Translation) {
    for vhost in t.snapshot.hosts.iter() {
        for route in vhost.routes.iter().chain(vhost.fallback.iter()) {
            let mut slots = vec![route.backend().clone()];
            if let RouteTarget::Canaries(c) = &route.target {
                slots.extend(c.canaries.iter().map(|c| c.target.backend.clone()));
            }
            for slot in slots {
                let listed = t.snapshot.backends.get(&slot.key);
                assert!(
                    listed.is_some_and(|l| std::sync::Arc::ptr_eq(l, &slot)),
                    "host {:?}: the slot of {:?} is not the snapshot's",
                    vhost.name,
                    slot.key
                );
            }
        }
    }
}

/// xorshift64*: the same walk on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

fn walk(seed: u64, steps: usize, opts: &TranslateOptions) {
    let universe = universe();
    let mut rng = Rng(seed);
    let mut store = ObjectStore::new();
    let mut translator = Translator::new(opts.clone());
    // The hosts a reader following `host_changes` believes the snapshot has, by address.
    let mut followed: HashMap<usize, Arc<VirtualHost>> = HashMap::new();
    for step in 0..steps {
        // Mostly adds early on, then a mix; sometimes several changes between translations.
        for _ in 0..1 + rng.below(3) {
            let (object, origin) = &universe[rng.below(universe.len())];
            let key: NamespacedName = ObjectStore::key_of(object);
            if rng.below(3) == 0 {
                store.remove(object.kind(), &key);
            } else {
                store.upsert(object.clone(), origin.clone());
            }
        }
        let incremental = translator.translate(&store);
        let fresh = translate(&store, opts);
        let (got, want) = (describe(&incremental), describe(&fresh));
        if got != want {
            let only_got: Vec<_> = got.iter().filter(|l| !want.contains(l)).collect();
            let only_want: Vec<_> = want.iter().filter(|l| !got.contains(l)).collect();
            panic!(
                "seed {seed} step {step}: incremental and fresh translations differ\n\
                 only incremental:\n{only_got:#?}\nonly fresh:\n{only_want:#?}"
            );
        }
        slots_are_shared(&incremental);
        for vhost in &incremental.host_changes.added {
            followed.insert(Arc::as_ptr(vhost) as usize, vhost.clone());
        }
        for vhost in &incremental.host_changes.removed {
            followed.remove(&(Arc::as_ptr(vhost) as usize));
        }
        let mut actual: Vec<usize> = incremental
            .snapshot
            .hosts
            .iter()
            .map(|v| Arc::as_ptr(v) as usize)
            .collect();
        let mut believed: Vec<usize> = followed.keys().copied().collect();
        actual.sort();
        believed.sort();
        assert_eq!(
            believed, actual,
            "seed {seed} step {step}: host_changes do not lead to the snapshot's hosts"
        );
    }
}

#[test]
fn incremental_translation_matches_a_fresh_one_after_every_change() {
    for seed in [1, 2, 3, 0x5eed_cafe] {
        walk(seed, 150, &TranslateOptions::default());
    }
}

#[test]
fn incremental_translation_matches_with_a_default_certificate_and_classless_ingresses() {
    let opts = TranslateOptions {
        default_ssl_certificate: Some(NamespacedName::new("shop", "wild")),
        watch_ingress_without_class: true,
        ..TranslateOptions::default()
    };
    for seed in [7, 8] {
        walk(seed, 150, &opts);
    }
}
