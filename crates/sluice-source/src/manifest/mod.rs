//! The manifest directory: every `*.yaml`, `*.yml` and `*.json` file below a directory, read
//! into the object store and kept in step with the directory while it changes.
//!
//! - Files hold YAML streams (`---`), JSON values, and `List`s; every object keeps the file and
//!   line its document starts on.
//! - A file with a document that cannot be read (bad YAML or JSON, an invalid object) is
//!   reported, and the objects it last defined stay exactly as they were until it reads
//!   cleanly again; a new file that was never read cleanly contributes its good documents.
//! - A deleted file takes its objects with it. An object defined in two files comes from the
//!   later path in sorted order, with a warning naming both places.
//! - The store is updated object by object, so only the kinds that changed get a new revision.

mod held;
mod locate;
mod parse;
mod scan;
mod state;
mod watch;

use crate::SourceUpdate;
use state::DirectoryState;
use std::path::PathBuf;

/// The objects of a manifest directory, as last read.
#[derive(Debug)]
pub struct ManifestSource {
    state: DirectoryState,
    current: SourceUpdate,
    /// How often the directory is read even without events.
    rescan_every: std::time::Duration,
}

impl ManifestSource {
    /// Reads every *.yaml, *.yml, *.json below `dir` recursively (sorted paths, deterministic).
    /// Fails only when `dir` itself cannot be read; problems with files are in
    /// [`ManifestSource::update`].
    pub fn load(dir: impl Into<PathBuf>) -> std::io::Result<ManifestSource> {
        let mut state = DirectoryState::new(dir.into());
        state.rescan()?;
        let current = publish(&state);
        Ok(ManifestSource {
            state,
            current,
            rescan_every: watch::RESCAN_EVERY,
        })
    }

    /// The current state.
    pub fn update(&self) -> SourceUpdate {
        self.current.clone()
    }

    /// Keeps the published state in step with the directory until the receiver is dropped.
    ///
    /// Watches the directory itself (recursively), not the files, because kubelet updates a
    /// mounted ConfigMap or Secret by swapping its `..data` symlink, which no watch on a file
    /// sees. A burst of events is read once after ~200 ms of quiet, and the directory is also
    /// read every few seconds in case an event was missed. A new [`SourceUpdate`] is sent
    /// only when an object or a problem actually changed.
    pub async fn watch(self, tx: tokio::sync::watch::Sender<SourceUpdate>) {
        watch::run(self, tx).await;
    }

    /// Reads the directory again (`quick`: only files whose metadata changed); returns whether
    /// the published state changed.
    fn rescan(&mut self, quick: bool) -> bool {
        let read = if quick {
            self.state.rescan_quick()
        } else {
            self.state.rescan()
        };
        let before = &self.current;
        let changed = self.state.store().revisions() != before.store.revisions()
            || self.state.problems() != before.problems;
        // Logged when it starts (the problem list changes then), not on every periodic read.
        if let Err(err) = read
            && changed
        {
            tracing::warn!(dir = %self.state.dir().display(), error = %err, "cannot read the manifest directory; keeping what was read before");
        }
        if changed {
            self.current = publish(&self.state);
        }
        changed
    }
}

fn publish(state: &DirectoryState) -> SourceUpdate {
    SourceUpdate {
        store: state.store().clone(),
        problems: state.problems(),
    }
}
