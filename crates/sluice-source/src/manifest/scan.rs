//! Which manifest files a directory holds right now.

use sluice_model::Problem;
use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Manifest files below a directory, as paths relative to it, in sorted order.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub files: BTreeSet<PathBuf>,
    /// Subdirectories that could not be read (relative paths): the files they held before are
    /// kept, since they may well still be there.
    pub unreadable_dirs: Vec<PathBuf>,
    pub problems: Vec<Problem>,
}

pub(crate) fn is_manifest(path: &Path) -> bool {
    path.extension()
        .and_then(|ext| ext.to_str())
        .is_some_and(|ext| ["yaml", "yml", "json"].contains(&ext.to_ascii_lowercase().as_str()))
}

pub(crate) fn is_json(path: &Path) -> bool {
    path.extension()
        .and_then(|ext| ext.to_str())
        .is_some_and(|ext| ext.eq_ignore_ascii_case("json"))
}

/// Lists `root` recursively. Hidden entries (`.git`, editor swap files, and kubelet's `..data`
/// and `..<timestamp>` directories) are skipped: in a kubelet volume every file is reachable
/// through its top-level symlink, so the hidden directories would only read it twice.
/// Symlinks are followed. Fails only when `root` itself cannot be read.
pub(crate) fn list_manifests(root: &Path) -> io::Result<Listing> {
    let mut walk = Walk {
        root,
        listing: Listing::default(),
        visited: HashSet::new(),
    };
    if let Ok(canonical) = fs::canonicalize(root) {
        walk.visited.insert(canonical);
    }
    let entries = sorted_entries(root)?;
    walk.entries(Path::new(""), entries);
    Ok(walk.listing)
}

struct Walk<'a> {
    root: &'a Path,
    listing: Listing,
    /// Canonical directories already walked, so that a symlink loop ends.
    visited: HashSet<PathBuf>,
}

impl Walk<'_> {
    fn entries(&mut self, dir: &Path, entries: Vec<fs::DirEntry>) {
        for entry in entries {
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let relative = dir.join(&name);
            let full = self.root.join(&relative);
            match fs::metadata(&full) {
                Ok(meta) if meta.is_dir() => self.subdirectory(&relative, &full),
                Ok(meta) if meta.is_file() && is_manifest(&relative) => {
                    self.listing.files.insert(relative);
                }
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    // A dangling symlink holds no manifest; kubelet leaves them for a moment
                    // while it swaps `..data`.
                    tracing::debug!(path = %full.display(), "skipping a dangling symlink");
                }
                Err(err) => {
                    if is_manifest(&relative) {
                        // Listed anyway: reading it reports the error and keeps its objects.
                        self.listing.files.insert(relative);
                    } else {
                        tracing::debug!(path = %full.display(), error = %err, "skipping an entry that cannot be examined");
                    }
                }
            }
        }
    }

    fn subdirectory(&mut self, relative: &Path, full: &Path) {
        if let Ok(canonical) = fs::canonicalize(full)
            && !self.visited.insert(canonical)
        {
            tracing::debug!(path = %full.display(), "skipping a directory already read (symlink loop?)");
            return;
        }
        match sorted_entries(full) {
            Ok(entries) => self.entries(relative, entries),
            Err(err) => {
                self.listing.unreadable_dirs.push(relative.to_path_buf());
                self.listing.problems.push(unreadable_directory(full, &err));
            }
        }
    }
}

fn sorted_entries(dir: &Path) -> io::Result<Vec<fs::DirEntry>> {
    let mut entries = fs::read_dir(dir)?.collect::<io::Result<Vec<_>>>()?;
    entries.sort_by_key(|entry| entry.file_name());
    Ok(entries)
}

pub(crate) fn unreadable_directory(dir: &Path, err: &io::Error) -> Problem {
    Problem {
        object: None,
        origin: None,
        field: None,
        severity: sluice_model::Severity::Rejected,
        reason: format!(
            "cannot read directory {}: {err}; make it readable by Sluice (the objects read from it before stay in effect)",
            dir.display()
        ),
    }
}
