//! What every file contributed, and the object store built from it, kept in step file by file.

use super::parse::{self, FileObject, ObjectKey, ParsedFile};
use super::scan;
use sluice_model::{Origin, Problem};
use sluice_store::ObjectStore;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The directory as last read.
#[derive(Debug)]
pub(crate) struct DirectoryState {
    dir: PathBuf,
    store: ObjectStore,
    /// By path relative to `dir`; sorted, which is also the order in which duplicates win.
    files: BTreeMap<PathBuf, FileEntry>,
    /// Which files define each object.
    owners: BTreeMap<ObjectKey, BTreeSet<PathBuf>>,
    /// What the store holds for each object, to upsert only what really changed.
    applied: BTreeMap<ObjectKey, Arc<FileObject>>,
    scan_problems: Vec<Problem>,
}

#[derive(Debug)]
struct FileEntry {
    /// The path as shown to users: under `dir` as it was given.
    display: Arc<str>,
    /// Of the content last parsed; `None` after a read error, so the next read parses again.
    fingerprint: Option<u64>,
    /// The objects this file contributes: from its last parse that had no errors (or its first).
    objects: BTreeMap<ObjectKey, Arc<FileObject>>,
    ever_applied: bool,
    problems: Vec<Problem>,
}

impl DirectoryState {
    pub fn new(dir: PathBuf) -> Self {
        DirectoryState {
            dir,
            store: ObjectStore::new(),
            files: BTreeMap::new(),
            owners: BTreeMap::new(),
            applied: BTreeMap::new(),
            scan_problems: Vec::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn store(&self) -> &ObjectStore {
        &self.store
    }

    /// Reads the directory again and applies what changed. Fails only when the directory itself
    /// cannot be read; then everything read before stays.
    pub fn rescan(&mut self) -> io::Result<()> {
        let listing = match scan::list_manifests(&self.dir) {
            Ok(listing) => listing,
            Err(err) => {
                self.scan_problems = vec![scan::unreadable_directory(&self.dir, &err)];
                return Err(err);
            }
        };
        self.scan_problems = listing.problems;
        let mut touched = BTreeSet::new();
        let gone: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|path| {
                !listing.files.contains(*path)
                    && !listing
                        .unreadable_dirs
                        .iter()
                        .any(|dir| path.starts_with(dir))
            })
            .cloned()
            .collect();
        for path in gone {
            tracing::debug!(path = %path.display(), "manifest file removed");
            self.set_objects(&path, BTreeMap::new(), &mut touched);
            self.files.remove(&path);
        }
        for path in &listing.files {
            self.refresh(path, &mut touched);
        }
        self.reconcile(touched);
        Ok(())
    }

    /// Problems of the source: unreadable directories, then each file's in path order, then
    /// objects defined in more than one file.
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = self.scan_problems.clone();
        for entry in self.files.values() {
            problems.extend(entry.problems.iter().cloned());
        }
        for (key, paths) in &self.owners {
            if paths.len() > 1 {
                problems.push(self.duplicate_warning(key, paths));
            }
        }
        problems
    }

    fn duplicate_warning(&self, key: &ObjectKey, paths: &BTreeSet<PathBuf>) -> Problem {
        let origins: Vec<Origin> = paths
            .iter()
            .filter_map(|path| self.files.get(path)?.objects.get(key))
            .map(|object| object.origin.clone())
            .collect();
        let (winner, losers) = origins.split_last().unwrap_or((&Origin::ApiServer, &[]));
        let losers: Vec<String> = losers.iter().map(ToString::to_string).collect();
        Problem::warning(
            key.1.object_ref(key.0),
            format!(
                "defined more than once: also at {}; the definition at {winner} is used (the later path in sorted order wins); keep only one",
                losers.join(", ")
            ),
        )
        .from_origin(Some(winner.clone()))
    }

    /// Reads one file and, when its content changed, parses it and updates what it contributes.
    fn refresh(&mut self, path: &Path, touched: &mut BTreeSet<ObjectKey>) {
        let full = self.dir.join(path);
        let entry = self
            .files
            .entry(path.to_path_buf())
            .or_insert_with(|| FileEntry {
                display: full.display().to_string().into(),
                fingerprint: None,
                objects: BTreeMap::new(),
                ever_applied: false,
                problems: Vec::new(),
            });
        let display = entry.display.clone();
        let bytes = match std::fs::read(&full) {
            Ok(bytes) => bytes,
            Err(err) => {
                entry.fingerprint = None;
                entry.problems = vec![Problem::file(
                    parse::file_origin(&display, 1),
                    format!(
                        "cannot read the file: {err}; make it readable by Sluice (the objects it defined before stay in effect)"
                    ),
                )];
                return;
            }
        };
        let fingerprint = fingerprint(&bytes);
        if entry.fingerprint == Some(fingerprint) {
            return;
        }
        entry.fingerprint = Some(fingerprint);
        let parsed = match std::str::from_utf8(&bytes) {
            Ok(text) => parse::parse_file(&display, text, scan::is_json(path)),
            Err(err) => ParsedFile {
                problems: vec![parse::not_utf8(&display, &bytes, err.valid_up_to())],
                failed: true,
                ..ParsedFile::default()
            },
        };
        tracing::debug!(
            file = %entry.display,
            objects = parsed.objects.len(),
            problems = parsed.problems.len(),
            "manifest file read"
        );
        entry.problems = parsed.problems;
        // A file that does not parse keeps what it defined before, so that a typo does not
        // take down what was serving. A new file has nothing to keep: its good objects apply.
        if parsed.failed && entry.ever_applied {
            return;
        }
        entry.ever_applied = true;
        self.set_objects(path, parsed.objects, touched);
    }

    fn set_objects(
        &mut self,
        path: &Path,
        objects: BTreeMap<ObjectKey, Arc<FileObject>>,
        touched: &mut BTreeSet<ObjectKey>,
    ) {
        let Some(entry) = self.files.get_mut(path) else {
            return;
        };
        for key in entry.objects.keys() {
            if let Some(paths) = self.owners.get_mut(key) {
                paths.remove(path);
                if paths.is_empty() {
                    self.owners.remove(key);
                }
            }
            touched.insert(key.clone());
        }
        for key in objects.keys() {
            self.owners
                .entry(key.clone())
                .or_default()
                .insert(path.to_path_buf());
            touched.insert(key.clone());
        }
        entry.objects = objects;
    }

    /// Brings the store in line for objects whose definitions may have changed.
    fn reconcile(&mut self, touched: BTreeSet<ObjectKey>) {
        for key in touched {
            let winner = self
                .owners
                .get(&key)
                .and_then(|paths| paths.last())
                .and_then(|path| self.files.get(path))
                .and_then(|entry| entry.objects.get(&key))
                .cloned();
            match winner {
                Some(winner) => {
                    let unchanged = self
                        .applied
                        .get(&key)
                        .is_some_and(|applied| applied.same_as(&winner));
                    if !unchanged {
                        self.store
                            .upsert(winner.object.clone(), winner.origin.clone());
                        self.applied.insert(key, winner);
                    }
                }
                None => {
                    if self.applied.remove(&key).is_some() {
                        self.store.remove(key.0, &key.1);
                    }
                }
            }
        }
    }
}

fn fingerprint(bytes: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const INGRESS: &str =
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: web\nspec: {}\n";

    fn service(port: u16) -> String {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports:\n  - port: {port}\n"
        )
    }

    #[test]
    fn only_real_changes_move_revisions_and_only_of_their_kind() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("app.yaml");
        fs::write(&file, format!("{INGRESS}---\n{}", service(80))).unwrap();
        let mut state = DirectoryState::new(tmp.path().to_path_buf());
        state.rescan().unwrap();
        let first = state.store().revisions();

        state.rescan().unwrap();
        assert_eq!(state.store().revisions(), first, "nothing changed");

        // A comment after the last document changes the file but no object or line.
        fs::write(&file, format!("{INGRESS}---\n{}# note\n", service(80))).unwrap();
        state.rescan().unwrap();
        assert_eq!(state.store().revisions(), first, "a comment is no change");

        fs::write(&file, format!("{INGRESS}---\n{}", service(81))).unwrap();
        state.rescan().unwrap();
        let second = state.store().revisions();
        assert_eq!(second.ingress, first.ingress);
        assert_eq!(second.service, first.service + 1);

        fs::write(
            &file,
            format!("# moved down\n{INGRESS}---\n{}", service(81)),
        )
        .unwrap();
        state.rescan().unwrap();
        let third = state.store().revisions();
        assert_eq!(
            third.ingress,
            second.ingress + 1,
            "a new line number is a change: problems must point at the right line"
        );
    }
}
