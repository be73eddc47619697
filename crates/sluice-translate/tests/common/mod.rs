//! Test helper: YAML fixtures into an object store, and short ways to ask the snapshot.
#![allow(dead_code)]

use sluice_model::{Endpoints, Origin, Problem, Severity, Snapshot};
use sluice_store::{ObjectStore, StoredObject};
use sluice_translate::{TranslateOptions, Translation, translate};
use std::path::PathBuf;

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Adds every document of a multi-document YAML text, recording `file:line` of each document.
pub fn load_yaml(store: &mut ObjectStore, file: &str, text: &str) {
    for (object, origin) in objects_of(file, text) {
        store.upsert(object, origin);
    }
}

/// Every document of a multi-document YAML text, with its `file:line`.
pub fn objects_of(file: &str, text: &str) -> Vec<(StoredObject, Origin)> {
    let mut start_line = 1;
    let mut current = String::new();
    let mut docs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim_end() == "---" {
            docs.push((start_line, std::mem::take(&mut current)));
            start_line = n + 2;
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    docs.push((start_line, current));
    let mut objects = Vec::new();
    for (start, doc) in docs {
        // The document's line is that of its first content line, past leading comments.
        let Some(skipped) = doc
            .lines()
            .position(|l| !(l.trim().is_empty() || l.trim_start().starts_with('#')))
        else {
            continue;
        };
        let line = start + skipped;
        let value: serde_json::Value =
            serde_saphyr::from_str(&doc).unwrap_or_else(|e| panic!("{file}:{line}: not YAML: {e}"));
        let object = StoredObject::from_value(value)
            .unwrap_or_else(|e| panic!("{file}:{line}: {e}"))
            .unwrap_or_else(|| panic!("{file}:{line}: kind not read by Sluice"));
        objects.push((
            object,
            Origin::File {
                path: file.into(),
                line,
            },
        ));
    }
    objects
}

/// The objects of a fixture file.
pub fn fixture_objects(name: &str) -> Vec<(StoredObject, Origin)> {
    let path = fixture_path(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    objects_of(name, &text)
}

pub fn load_fixture(store: &mut ObjectStore, name: &str) {
    let path = fixture_path(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    load_yaml(store, name, &text);
}

pub fn store_of(fixtures: &[&str]) -> ObjectStore {
    let mut store = ObjectStore::new();
    for name in fixtures {
        load_fixture(&mut store, name);
    }
    store
}

pub fn translate_fixtures(fixtures: &[&str]) -> Translation {
    translate(&store_of(fixtures), &TranslateOptions::default())
}

/// The Service a request would be proxied to, or `None` for a 404.
pub fn service_for(snapshot: &Snapshot, host: &str, path: &str) -> Option<String> {
    snapshot
        .hosts
        .lookup(host)
        .find(path)
        .map(|r| r.backend().key.service.clone())
}

pub fn endpoints_for(snapshot: &Snapshot, host: &str, path: &str) -> Endpoints {
    let route = snapshot
        .hosts
        .lookup(host)
        .find(path)
        .unwrap_or_else(|| panic!("no route for {host}{path}"));
    (*route.backend().endpoints()).clone()
}

pub fn problems_of<'a>(problems: &'a [Problem], ingress: &str) -> Vec<&'a Problem> {
    problems
        .iter()
        .filter(|p| p.object.as_ref().is_some_and(|o| o.name == ingress))
        .collect()
}

pub fn rejected(problems: &[Problem]) -> Vec<&Problem> {
    problems
        .iter()
        .filter(|p| p.severity == Severity::Rejected)
        .collect()
}

pub fn show(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}
