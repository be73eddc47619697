//! What every file contributed, and the object store built from it, kept in step file by file.

use super::held::{Held, SharedObject};
use super::parse::{self, FileObject, ObjectKey, ParsedFile};
use super::scan;
use sluice_model::{Origin, Problem};
use sluice_store::ObjectStore;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a file's metadata says about its content: equal stamps mean (short of a writer that
/// keeps size and restores times) equal content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: u64,
    changed: (i64, i64),
}

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode: meta.ino(),
            changed: (meta.ctime(), meta.ctime_nsec()),
        })
    }
}

/// The directory as last read.
#[derive(Debug)]
pub(crate) struct DirectoryState {
    dir: PathBuf,
    /// Shared with the update last published: changed in place while nobody else holds it,
    /// copied on the first change after a publish (so an unchanged directory costs one copy).
    store: Arc<ObjectStore>,
    /// By path relative to `dir`; sorted, which is also the order in which duplicates win.
    files: BTreeMap<Arc<Path>, FileEntry>,
    /// Every object some file defines or the store still holds. The key is shared with the
    /// definitions of the files that define the object: at 62,000 objects a copy of each key
    /// per map (with its two strings) was several MB.
    objects: BTreeMap<SharedKey, Tracked>,
    /// The objects defined in more than one file (kept so that listing problems does not walk
    /// every object).
    duplicated: BTreeSet<SharedKey>,
    scan_problems: Vec<Problem>,
}

#[derive(Debug)]
struct FileEntry {
    /// The path as shown to users: under `dir` as it was given.
    display: Arc<str>,
    /// Of the content last parsed; `None` after a read error, so the next read parses again.
    fingerprint: Option<u64>,
    /// The file's metadata when it was last read: a quick rescan reads only files whose
    /// metadata moved.
    stamp: Option<FileStamp>,
    /// The objects this file contributes: from its last parse that had no errors (or its first).
    objects: Definitions,
    ever_applied: bool,
    problems: Vec<Problem>,
}

impl DirectoryState {
    pub fn new(dir: PathBuf) -> Self {
        DirectoryState {
            dir,
            store: Arc::default(),
            files: BTreeMap::new(),
            objects: BTreeMap::new(),
            duplicated: BTreeSet::new(),
            scan_problems: Vec::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn store(&self) -> &Arc<ObjectStore> {
        &self.store
    }

    /// Reads the directory again and applies what changed. Fails only when the directory itself
    /// cannot be read; then everything read before stays.
    pub fn rescan(&mut self) -> io::Result<()> {
        self.rescan_with(false)
    }

    /// Like [`DirectoryState::rescan`], but files whose size, times and inode are what they were
    /// at the last read are not read again: after a file event, only what changed is read (a
    /// directory of 27 MB of manifests is not re-read and re-hashed for one changed file). The
    /// periodic rescan reads everything, in case a change kept every one of those.
    pub fn rescan_quick(&mut self) -> io::Result<()> {
        self.rescan_with(true)
    }

    fn rescan_with(&mut self, quick: bool) -> io::Result<()> {
        let listing = match scan::list_manifests(&self.dir) {
            Ok(listing) => listing,
            Err(err) => {
                self.scan_problems = vec![scan::unreadable_directory(&self.dir, &err)];
                return Err(err);
            }
        };
        self.scan_problems = listing.problems;
        let mut touched = BTreeSet::new();
        let gone: Vec<Arc<Path>> = self
            .files
            .keys()
            .filter(|path| {
                !listing.files.contains::<Path>(path)
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
            self.refresh(path, quick, &mut touched);
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
        for key in &self.duplicated {
            if let Some(tracked) = self.objects.get(key) {
                problems.push(self.duplicate_warning(key, &tracked.owners));
            }
        }
        problems
    }

    fn duplicate_warning(&self, key: &ObjectKey, paths: &[Arc<Path>]) -> Problem {
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
    fn refresh(&mut self, path: &Path, quick: bool, touched: &mut BTreeSet<SharedKey>) {
        let full = self.dir.join(path);
        let entry = self
            .files
            .entry(Arc::from(path))
            .or_insert_with(|| FileEntry {
                display: full.display().to_string().into(),
                fingerprint: None,
                stamp: None,
                objects: Definitions::default(),
                ever_applied: false,
                problems: Vec::new(),
            });
        let display = entry.display.clone();
        let stamp = FileStamp::of(&full);
        if quick && stamp.is_some() && stamp == entry.stamp && entry.fingerprint.is_some() {
            return;
        }
        entry.stamp = stamp;
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
        objects: BTreeMap<ObjectKey, FileObject>,
        touched: &mut BTreeSet<SharedKey>,
    ) {
        let Some((path, entry)) = self.files.get_key_value(path) else {
            return;
        };
        let path = path.clone();
        for key in entry.objects.keys() {
            if let Some(tracked) = self.objects.get_mut(&**key) {
                tracked.owners.retain(|owner| *owner != path);
            }
            touched.insert(key.clone());
        }
        // Sized to the file's objects: it is kept as long as the file is.
        let mut definitions = Vec::with_capacity(objects.len());
        for (key, object) in objects {
            let key = match self.objects.get_key_value(&key) {
                Some((shared, _)) => shared.clone(),
                None => Arc::new(key),
            };
            let owners = &mut self.objects.entry(key.clone()).or_default().owners;
            if let Err(at) = owners.binary_search(&path) {
                owners.insert(at, path.clone());
            }
            touched.insert(key.clone());
            definitions.push((key, Some(object)));
        }
        if let Some(entry) = self.files.get_mut(&path) {
            entry.objects = Definitions(definitions);
        }
    }

    /// Brings the store in line for objects whose definitions may have changed.
    fn reconcile(&mut self, touched: BTreeSet<SharedKey>) {
        for key in touched {
            let Some(tracked) = self.objects.get_mut(&*key) else {
                self.duplicated.remove(&*key);
                continue;
            };
            if tracked.owners.len() > 1 {
                self.duplicated.insert(key.clone());
            } else {
                self.duplicated.remove(&*key);
            }
            let entry = tracked
                .owners
                .last()
                .and_then(|path| self.files.get_mut(path));
            let Some((entry, winner)) = entry.and_then(|entry| {
                let winner = entry.objects.take(&key)?;
                Some((entry, winner))
            }) else {
                if tracked.applied.take().is_some() {
                    Arc::make_mut(&mut self.store).remove(key.0, &key.1);
                }
                self.objects.remove(&*key);
                continue;
            };
            let FileObject {
                object,
                fingerprint,
                origin,
            } = winner;
            let unchanged = tracked.applied.as_ref().is_some_and(|applied| {
                applied.origin == origin && applied.fingerprint == fingerprint
            });
            if !unchanged {
                Arc::make_mut(&mut self.store).upsert(object.into_decoded(&key.1), origin.clone());
                tracked.applied = Some(Applied {
                    origin: origin.clone(),
                    fingerprint,
                });
            }
            // The definition shares the store's object; a re-read file's unchanged objects,
            // decoded again, are dropped here for the store's equal copy. So each object is
            // held once.
            match SharedObject::from_store(&self.store, key.0, &key.1) {
                Some(shared) => {
                    let shared = FileObject {
                        object: Held::Shared(shared),
                        fingerprint,
                        origin,
                    };
                    entry.objects.put(&key, shared);
                }
                None => {
                    // Cannot happen: the store has what was applied. Should it, reading the
                    // file again restores the definition.
                    tracing::error!(object = %key.1, kind = %key.0, "a manifest object is missing from the store; reading its file again");
                    entry.fingerprint = None;
                }
            }
        }
    }
}

/// An object's key, one allocation shared by the tracking map and every file defining it.
type SharedKey = Arc<ObjectKey>;

/// A file's definitions, sorted by key: a vector sized to the file rather than a map's nodes.
/// A definition is `None` only while it moves into the store (or, should the store lack an
/// applied object, until the file is read again).
#[derive(Debug, Default)]
struct Definitions(Vec<(SharedKey, Option<FileObject>)>);

impl Definitions {
    fn keys(&self) -> impl Iterator<Item = &SharedKey> {
        self.0.iter().map(|(key, _)| key)
    }

    fn position(&self, key: &ObjectKey) -> Option<usize> {
        self.0.binary_search_by(|(own, _)| (**own).cmp(key)).ok()
    }

    fn slot(&mut self, key: &ObjectKey) -> Option<&mut Option<FileObject>> {
        let at = self.position(key)?;
        Some(&mut self.0[at].1)
    }

    fn get(&self, key: &ObjectKey) -> Option<&FileObject> {
        self.0[self.position(key)?].1.as_ref()
    }

    fn take(&mut self, key: &ObjectKey) -> Option<FileObject> {
        self.slot(key)?.take()
    }

    fn put(&mut self, key: &ObjectKey, object: FileObject) {
        if let Some(slot) = self.slot(key) {
            *slot = Some(object);
        }
    }
}

/// One object: the files that define it and the definition the store holds.
#[derive(Debug, Default)]
struct Tracked {
    /// In path order, so the last one wins; nearly always just one.
    owners: Vec<Arc<Path>>,
    /// `None` until stored; compared with the winner to upsert only what really changed.
    applied: Option<Applied>,
}

/// The definition an object in the store came from.
#[derive(Debug)]
struct Applied {
    origin: Origin,
    fingerprint: u64,
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
    fn an_object_defined_twice_is_warned_about_until_one_goes() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("a.yaml"), service(80)).unwrap();
        fs::write(tmp.path().join("b.yaml"), service(81)).unwrap();
        let mut state = DirectoryState::new(tmp.path().to_path_buf());
        state.rescan().unwrap();
        let duplicates = |state: &DirectoryState| {
            state
                .problems()
                .iter()
                .filter(|p| p.reason.contains("defined more than once"))
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
        };
        let found = duplicates(&state);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains("b.yaml"),
            "the later path wins: {found:?}"
        );
        fs::remove_file(tmp.path().join("b.yaml")).unwrap();
        state.rescan().unwrap();
        assert_eq!(duplicates(&state), Vec::<String>::new());
    }

    #[test]
    fn a_quick_rescan_reads_files_whose_metadata_moved() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("svc.yaml");
        fs::write(&file, service(80)).unwrap();
        let mut state = DirectoryState::new(tmp.path().to_path_buf());
        state.rescan_quick().unwrap();
        let port = |state: &DirectoryState| {
            let stored =
                &state.store().services[&sluice_store::NamespacedName::new("default", "web")];
            stored.object.ports[0].port
        };
        assert_eq!(port(&state), 80);
        // Same length, new content: the times and the inode (a rename over it) move.
        let tmp_file = tmp.path().join(".svc.tmp");
        fs::write(&tmp_file, service(81)).unwrap();
        fs::rename(&tmp_file, &file).unwrap();
        state.rescan_quick().unwrap();
        assert_eq!(port(&state), 81);
        // Rewritten in place with a new length.
        fs::write(&file, service(8080)).unwrap();
        state.rescan_quick().unwrap();
        assert_eq!(port(&state), 8080);
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

    fn web_key() -> ObjectKey {
        (
            sluice_model::ObjectKind::Service,
            sluice_store::NamespacedName::new("default", "web"),
        )
    }

    fn port(state: &DirectoryState) -> Option<i32> {
        let stored = state.store().services.get(&web_key().1)?;
        Some(stored.object.ports.first()?.port)
    }

    /// Whether the definition in `file` holds the very object the store holds.
    fn shares_the_stored_object(state: &DirectoryState, file: &str) -> bool {
        let Some(definition) = state.files[Path::new(file)].objects.get(&web_key()) else {
            return false;
        };
        match (&definition.object, state.store().services.get(&web_key().1)) {
            (Held::Shared(SharedObject::Service(held)), Some(stored)) => {
                Arc::ptr_eq(held, &stored.object)
            }
            _ => false,
        }
    }

    #[test]
    fn each_object_is_held_once_also_after_its_file_is_read_again() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("app.yaml");
        fs::write(
            &file,
            format!(
                "{INGRESS}---
{}",
                service(80)
            ),
        )
        .unwrap();
        let mut state = DirectoryState::new(tmp.path().to_path_buf());
        state.rescan().unwrap();
        assert!(shares_the_stored_object(&state, "app.yaml"));
        let published = state.store().clone();

        // The Ingress changes, so the file is decoded again, Service and all.
        let edited = INGRESS.replace("spec: {}", "spec: {ingressClassName: x}");
        fs::write(&file, format!("{edited}---\n{}", service(80))).unwrap();
        state.rescan().unwrap();
        assert!(shares_the_stored_object(&state, "app.yaml"));
        assert!(
            Arc::ptr_eq(
                &published.services[&web_key().1].object,
                &state.store().services[&web_key().1].object
            ),
            "the unchanged Service is the same object as before"
        );
        let (before, after) = (published.revisions(), state.store().revisions());
        assert_eq!(
            (after.ingress, after.service),
            (before.ingress + 1, before.service)
        );
    }

    #[test]
    fn each_key_is_one_allocation_shared_by_the_files_and_the_tracking_map() {
        let tmp = tempfile::tempdir().unwrap();
        let mut state = DirectoryState::new(tmp.path().to_path_buf());
        fs::write(tmp.path().join("1.yaml"), service(80)).unwrap();
        fs::write(tmp.path().join("2.yaml"), service(81)).unwrap();
        state.rescan().unwrap();
        // Read again with new content, so the definitions are rebuilt from a fresh parse.
        fs::write(tmp.path().join("1.yaml"), service(82)).unwrap();
        state.rescan().unwrap();
        let (tracked, _) = state.objects.get_key_value(&web_key()).unwrap();
        for file in ["1.yaml", "2.yaml"] {
            let keys: Vec<&SharedKey> = state.files[Path::new(file)].objects.keys().collect();
            assert_eq!(keys.len(), 1, "{file}");
            assert!(Arc::ptr_eq(keys[0], tracked), "{file} holds its own copy");
        }
        assert_eq!(port(&state), Some(81));
    }

    #[test]
    fn a_definition_that_lost_comes_back_when_the_winner_goes() {
        let tmp = tempfile::tempdir().unwrap();
        let mut state = DirectoryState::new(tmp.path().to_path_buf());
        fs::write(tmp.path().join("1.yaml"), service(80)).unwrap();
        state.rescan().unwrap();
        assert_eq!(port(&state), Some(80));

        fs::write(tmp.path().join("2.yaml"), service(81)).unwrap();
        state.rescan().unwrap();
        assert_eq!(port(&state), Some(81));
        assert!(shares_the_stored_object(&state, "2.yaml"));
        assert!(!shares_the_stored_object(&state, "1.yaml"));

        fs::remove_file(tmp.path().join("2.yaml")).unwrap();
        state.rescan().unwrap();
        assert_eq!(
            port(&state),
            Some(80),
            "1.yaml's definition is in effect again"
        );
        assert!(shares_the_stored_object(&state, "1.yaml"));
        assert_eq!(state.problems(), Vec::new());

        fs::remove_file(tmp.path().join("1.yaml")).unwrap();
        state.rescan().unwrap();
        assert!(state.store().is_empty());
        assert!(
            state.objects.is_empty(),
            "nothing is tracked for a gone object"
        );
    }
}
