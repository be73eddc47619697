//! The loop that keeps a manifest source in step with its directory.

use super::ManifestSource;
use crate::SourceUpdate;
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};

/// How long the directory must be quiet before a burst of events is read. Short, because it is
/// added to every change's latency; atomic writers (kubelet's symlink swap, editors that rename)
/// produce their burst within microseconds, and a file caught half-written is only reported
/// until the next event re-reads it (its objects' last good versions keep serving meanwhile).
const QUIET: Duration = Duration::from_millis(25);
/// A burst that never goes quiet (a writer appending for a long time) is still read this often.
const MAX_DELAY: Duration = Duration::from_secs(1);
/// The safety net: events can be lost (queue overflow, a directory replaced under the watch).
pub(super) const RESCAN_EVERY: Duration = Duration::from_secs(5);

pub(super) async fn run(mut source: ManifestSource, tx: watch::Sender<SourceUpdate>) {
    let (event_tx, mut events) = mpsc::unbounded_channel::<()>();
    let mut dir_watch = DirWatch::start(source.state.dir(), &event_tx, source.rescan_every);
    let mut rescan_timer = tokio::time::interval(source.rescan_every);
    rescan_timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The first tick fires at once: it catches what changed between load() and now.
    loop {
        let quick = tokio::select! {
            _ = tx.closed() => return,
            _ = rescan_timer.tick() => false,
            Some(()) = events.recv() => {
                settle(&mut events).await;
                rescan_timer.reset();
                true
            }
        };
        let Some((rescanned, changed)) = rescan_off_thread(source, quick).await else {
            return;
        };
        source = rescanned;
        dir_watch.follow_replacement(&event_tx, source.rescan_every);
        if changed && tx.send(source.update()).is_err() {
            return;
        }
    }
}

/// Waits until no event came for [`QUIET`] (or [`MAX_DELAY`] passed), so that a burst, like
/// kubelet's symlink swap or an editor's save, is read once and complete.
async fn settle(events: &mut mpsc::UnboundedReceiver<()>) {
    let deadline = Instant::now() + MAX_DELAY;
    loop {
        let wait_until = (Instant::now() + QUIET).min(deadline);
        match tokio::time::timeout_at(wait_until, events.recv()).await {
            Ok(Some(())) if Instant::now() < deadline => continue,
            _ => return,
        }
    }
}

/// File reads block, so they run on the blocking pool.
async fn rescan_off_thread(
    mut source: ManifestSource,
    quick: bool,
) -> Option<(ManifestSource, bool)> {
    let result = tokio::task::spawn_blocking(move || {
        let changed = source.rescan(quick);
        (source, changed)
    })
    .await;
    match result {
        Ok(done) => Some(done),
        Err(err) => {
            tracing::error!(error = %err, "reading the manifest directory failed; it is no longer watched");
            None
        }
    }
}

/// The notify watch on the directory, and which directory it is on: a watch follows the
/// directory it was put on, so when the path is given a new directory (`mv new dir`, a
/// re-created mount point) the watch has to be put on again.
struct DirWatch {
    dir: PathBuf,
    watcher: Option<notify::RecommendedWatcher>,
    identity: Option<DirIdentity>,
}

impl DirWatch {
    fn start(dir: &Path, events: &mpsc::UnboundedSender<()>, rescan_every: Duration) -> Self {
        let identity = DirIdentity::of(dir);
        DirWatch {
            dir: dir.to_path_buf(),
            watcher: start_watcher(dir, events.clone(), rescan_every),
            identity,
        }
    }

    fn follow_replacement(&mut self, events: &mpsc::UnboundedSender<()>, rescan_every: Duration) {
        let identity = DirIdentity::of(&self.dir);
        if identity.is_none() || identity == self.identity {
            return;
        }
        tracing::info!(dir = %self.dir.display(), "the manifest directory was replaced; watching the new one");
        // The old watcher goes first so that two never report the same directory.
        self.watcher = None;
        self.watcher = start_watcher(&self.dir, events.clone(), rescan_every);
        self.identity = identity;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DirIdentity {
    device: u64,
    inode: u64,
}

impl DirIdentity {
    #[cfg(unix)]
    fn of(dir: &Path) -> Option<DirIdentity> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(dir).ok()?;
        Some(DirIdentity {
            device: meta.dev(),
            inode: meta.ino(),
        })
    }

    #[cfg(not(unix))]
    fn of(_dir: &Path) -> Option<DirIdentity> {
        None
    }
}

fn start_watcher(
    dir: &Path,
    events: mpsc::UnboundedSender<()>,
    rescan_every: Duration,
) -> Option<notify::RecommendedWatcher> {
    let handler = move |event: notify::Result<notify::Event>| {
        match event {
            // Our own reads open and close files; reacting to them would read forever. A
            // close after writing is the end of a save, though, so that one counts.
            Ok(event)
                if matches!(event.kind, EventKind::Access(access)
                    if access != AccessKind::Close(AccessMode::Write)) =>
            {
                return;
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(error = %err, "manifest directory watch error; reading the directory again");
            }
        }
        let _ = events.send(());
    };
    let watched = notify::recommended_watcher(handler).and_then(|mut watcher| {
        watcher
            .watch(dir, RecursiveMode::Recursive)
            .map(|()| watcher)
    });
    match watched {
        Ok(watcher) => Some(watcher),
        Err(err) => {
            tracing::warn!(
                dir = %dir.display(),
                error = %err,
                every = ?rescan_every,
                "cannot watch the manifest directory; changes are picked up by reading it periodically"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn service(name: &str, port: u16) -> String {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  ports:\n  - port: {port}\n"
        )
    }

    fn port(update: &SourceUpdate, name: &str) -> Option<i32> {
        let key = sluice_store::NamespacedName::new("default", name);
        let stored = update.store.services.get(&key)?;
        Some(stored.object.ports.first()?.port)
    }

    async fn wait_for(
        rx: &mut watch::Receiver<SourceUpdate>,
        what: &str,
        done: impl Fn(&SourceUpdate) -> bool,
    ) {
        let seen = tokio::time::timeout(Duration::from_secs(10), async {
            while !done(&rx.borrow_and_update()) {
                rx.changed().await.unwrap();
            }
        })
        .await;
        assert!(seen.is_ok(), "not within 10 s: {what}");
    }

    /// Starts watching with the periodic safety net out of the way, so that only events can
    /// bring changes, and returns once the watch is live.
    async fn watch_events_only(dir: &Path) -> watch::Receiver<SourceUpdate> {
        let mut source = ManifestSource::load(dir).unwrap();
        source.rescan_every = Duration::from_secs(3600);
        let (tx, mut rx) = watch::channel(source.update());
        tokio::spawn(source.watch(tx));
        // The watch is put on before the first read, so any published change proves it live.
        fs::write(dir.join("zz-ready.yaml"), service("ready", 1)).unwrap();
        wait_for(&mut rx, "the first read", |u| port(u, "ready").is_some()).await;
        rx
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_kubelet_data_swap_is_seen_by_the_directory_watch() {
        use std::os::unix::fs::symlink;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let old = dir.join("..2024_01_01_00_00_00.1");
        fs::create_dir(&old).unwrap();
        fs::write(old.join("svc.yaml"), service("k", 80)).unwrap();
        symlink("..2024_01_01_00_00_00.1", dir.join("..data")).unwrap();
        symlink("..data/svc.yaml", dir.join("svc.yaml")).unwrap();
        let mut rx = watch_events_only(dir).await;
        assert_eq!(port(&rx.borrow(), "k"), Some(80));

        let new = dir.join("..2024_01_01_00_01_00.2");
        fs::create_dir(&new).unwrap();
        fs::write(new.join("svc.yaml"), service("k", 81)).unwrap();
        symlink("..2024_01_01_00_01_00.2", dir.join("..data_tmp")).unwrap();
        fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
        fs::remove_dir_all(&old).unwrap();
        wait_for(&mut rx, "the swapped ..data", |u| port(u, "k") == Some(81)).await;
    }

    /// A watch follows the directory it was put on, so after the path is given a new
    /// directory only a watch put on again can see a change made in it.
    #[cfg(unix)]
    #[tokio::test]
    async fn a_replaced_directory_is_watched_again() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("manifests");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("a.yaml"), service("a", 80)).unwrap();
        let mut rx = watch_events_only(&dir).await;

        let staged = tmp.path().join("staged");
        fs::create_dir(&staged).unwrap();
        fs::write(staged.join("b.yaml"), service("b", 81)).unwrap();
        fs::rename(&dir, tmp.path().join("old")).unwrap();
        fs::rename(&staged, &dir).unwrap();
        wait_for(&mut rx, "the new directory's b.yaml", |u| {
            port(u, "b").is_some() && port(u, "a").is_none()
        })
        .await;

        fs::write(dir.join("c.yaml"), service("c", 82)).unwrap();
        wait_for(&mut rx, "c.yaml in the new directory", |u| {
            port(u, "c").is_some()
        })
        .await;
    }
}
