//! The loop that keeps a manifest source in step with its directory.

use super::ManifestSource;
use crate::SourceUpdate;
use notify::{EventKind, RecursiveMode, Watcher};
use std::path::Path;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};

/// How long the directory must be quiet before a burst of events is read.
const QUIET: Duration = Duration::from_millis(200);
/// A burst that never goes quiet (a writer appending for a long time) is still read this often.
const MAX_DELAY: Duration = Duration::from_secs(1);
/// The safety net: events can be lost (queue overflow, a directory replaced under the watch).
const RESCAN_EVERY: Duration = Duration::from_secs(5);

pub(super) async fn run(mut source: ManifestSource, tx: watch::Sender<SourceUpdate>) {
    let (event_tx, mut events) = mpsc::unbounded_channel::<()>();
    // Kept alive for the whole loop: dropping it stops the watch.
    let _watcher = start_watcher(source.state.dir(), event_tx);
    let mut rescan_timer = tokio::time::interval(RESCAN_EVERY);
    rescan_timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut events_open = true;
    // The first tick fires at once: it catches what changed between load() and now.
    loop {
        tokio::select! {
            _ = tx.closed() => return,
            _ = rescan_timer.tick() => {}
            event = events.recv(), if events_open => {
                if event.is_none() {
                    events_open = false;
                    continue;
                }
                settle(&mut events).await;
                rescan_timer.reset();
            }
        }
        let Some(rescanned) = rescan_off_thread(source).await else {
            return;
        };
        source = rescanned.0;
        if rescanned.1 && tx.send(source.update()).is_err() {
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
async fn rescan_off_thread(mut source: ManifestSource) -> Option<(ManifestSource, bool)> {
    let result = tokio::task::spawn_blocking(move || {
        let changed = source.rescan();
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

fn start_watcher(
    dir: &Path,
    events: mpsc::UnboundedSender<()>,
) -> Option<notify::RecommendedWatcher> {
    let handler = move |event: notify::Result<notify::Event>| {
        match event {
            // Our own reads open files; reacting to them would read forever.
            Ok(event) if matches!(event.kind, EventKind::Access(_)) => return,
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
                every = ?RESCAN_EVERY,
                "cannot watch the manifest directory; changes are picked up by reading it periodically"
            );
            None
        }
    }
}
