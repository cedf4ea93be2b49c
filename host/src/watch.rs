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
            if event.is_ok() {
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
