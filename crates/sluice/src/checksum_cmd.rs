//! `sluice checksum DIR`: the Ingress and Secret checksums this gateway would compute over a
//! manifest directory, with the ID lists, compared with the checksum objects found there.

use crate::cli::CheckArgs;
use crate::selection::translate_options;
use anyhow::Context;
use sluice_source::ManifestSource;
use sluice_store::{CheckSumSpec, NamespacedName};
use sluice_translate::{ChecksumId, checksum_of, ingress_ids, secret_ids, sorted_ids};
use std::process::ExitCode;

/// Prints both checksums and their IDs; exit 1 when a checksum object in DIR disagrees.
pub fn checksum(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let options = translate_options(&args.selection)?;
    let source = ManifestSource::load(&args.dir)
        .with_context(|| format!("cannot read manifest directory {}", args.dir.display()))?;
    let update = source.update();
    for problem in &update.problems {
        eprintln!("{problem}");
    }
    let store = &update.store;
    let newest = |specs: Vec<(&NamespacedName, &CheckSumSpec)>| {
        // Manifest files rarely carry creationTimestamp: with several objects, name them all.
        specs
            .into_iter()
            .map(|(k, s)| (k.to_string(), s.checksum.clone().unwrap_or_default()))
            .collect::<Vec<_>>()
    };
    let ingress_objects = newest(
        store
            .ingress_checksums
            .iter()
            .map(|(k, s)| (k, &s.object.spec))
            .collect(),
    );
    let secret_objects = newest(
        store
            .secret_checksums
            .iter()
            .map(|(k, s)| (k, &s.object.spec))
            .collect(),
    );
    let ingress_ok = report(
        "Ingress",
        "IngressCheckSum",
        &ingress_ids(store, &options),
        &ingress_objects,
    );
    let secret_ok = report(
        "Secret",
        "SecretCheckSum",
        &secret_ids(store),
        &secret_objects,
    );
    Ok(if ingress_ok && secret_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn report(what: &str, kind: &str, ids: &[ChecksumId], objects: &[(String, String)]) -> bool {
    let sorted = sorted_ids(ids);
    let sum = checksum_of(&sorted);
    println!("{what} checksum: {sum} ({} IDs)", sorted.len());
    let mut listed: Vec<&ChecksumId> = ids.iter().collect();
    listed.sort_by(|a, b| a.id.cmp(&b.id).then_with(|| a.object.cmp(&b.object)));
    for id in listed {
        println!("  {}\t{}", id.id, id.object);
    }
    println!("  joined: {}", sorted.join(","));
    let mut ok = true;
    for (name, expected) in objects {
        let verdict = if expected.eq_ignore_ascii_case(&sum) {
            "matches"
        } else {
            ok = false;
            "DIFFERS"
        };
        println!("  {kind} {name}: spec.checksum {expected} {verdict}");
    }
    ok
}
