//! Following a directory that may be a mounted ConfigMap: `notify` on the
//! directory itself (which survives the `..data` symlink swap of a
//! ConfigMap update), debounced, with a periodic rescan as a backstop and
//! the watcher re-created if it could not be set up (the directory was
//! missing, inotify limits). The policy store and the configuration file
//! both follow their directory this way.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How a directory is followed.
#[derive(Debug, Clone)]
pub struct Follow {
    pub dir: PathBuf,
    /// Quiet time after a filesystem event before acting.
    pub debounce: Duration,
    /// Act at least this often, events or not.
    pub rescan: Duration,
    /// What is followed, for log lines ("policy directory", "configuration").
    pub what: &'static str,
}

impl Follow {
    /// Calls `changed` after every (debounced) burst of events in the
    /// directory and every `rescan`, until `shutdown`.
    pub async fn run<F, Fut>(self, shutdown: CancellationToken, mut changed: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ()>,
    {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut watcher = self.start_watcher(tx.clone());
        let mut ticker = tokio::time::interval(self.rescan);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(()) = rx.recv() => {
                    // debounce: wait for quiet, then drain
                    tokio::time::sleep(self.debounce).await;
                    while rx.try_recv().is_ok() {}
                }
                _ = ticker.tick() => {
                    if watcher.is_none() {
                        watcher = self.start_watcher(tx.clone());
                    }
                }
            }
            changed().await;
        }
        drop(watcher);
    }

    fn start_watcher(&self, tx: tokio::sync::mpsc::UnboundedSender<()>) -> Option<notify::RecommendedWatcher> {
        use notify::Watcher;
        let what = self.what;
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|event| may_change(&event.kind)) {
                let _ = tx.send(());
            }
        })
        .map_err(|error| tracing::warn!(%error, what, "cannot create a directory watcher; relying on periodic rescans"))
        .ok()?;
        match watcher.watch(Path::new(&self.dir), notify::RecursiveMode::NonRecursive) {
            Ok(()) => Some(watcher),
            Err(error) => {
                tracing::warn!(dir = %self.dir.display(), %error, what, "cannot watch the directory; relying on periodic rescans");
                None
            }
        }
    }
}

/// Whether an event may mean the directory's content changed. Opening or
/// reading an entry does not — and acting on those would feed on itself:
/// the rescan that follows an event opens the directory, and inotify
/// reports that open as an event too.
fn may_change(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Acting on a change reads the directory; that read must not count as
    /// the next change (it did: every rescan caused the next, 150 ms later,
    /// for as long as the daemon ran). A write still does.
    #[tokio::test]
    async fn reading_the_directory_is_not_a_change_but_writing_a_file_is() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("a.wasm"), b"one").expect("write");
        let follow = Follow {
            dir: dir.path().to_path_buf(),
            debounce: Duration::from_millis(20),
            rescan: Duration::from_secs(3600),
            what: "test directory",
        };
        let changes = Arc::new(AtomicUsize::new(0));
        let shutdown = CancellationToken::new();
        let task = {
            let (changes, dir) = (changes.clone(), dir.path().to_path_buf());
            tokio::spawn(follow.run(shutdown.clone(), move || {
                changes.fetch_add(1, Ordering::SeqCst);
                // what a rescan does: list the directory, read its files
                for entry in std::fs::read_dir(&dir).expect("list").flatten() {
                    let _ = std::fs::read(entry.path()).expect("read");
                }
                async {}
            }))
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(changes.load(Ordering::SeqCst), 0, "nothing changed yet");

        std::fs::write(dir.path().join("b.wasm"), b"two").expect("write");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after_write = changes.load(Ordering::SeqCst);
        assert!(after_write >= 1, "a new file is a change");
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            changes.load(Ordering::SeqCst),
            after_write,
            "reading the directory after a change caused further changes"
        );
        shutdown.cancel();
        task.await.expect("follow ends");
    }
}
