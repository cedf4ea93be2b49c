//! Configuration hot reload: the configuration file (in a cluster, a
//! mounted ConfigMap) is followed like the policy directory. A change that
//! parses, validates, names only policies the store holds, and whose
//! sources can start, is applied without a restart — sources restarted
//! where their settings or inputs changed, the hub's slots, the loop's
//! workloads (added ones continue from their stored state, rebound ones
//! keep the state of the bindings that stay). Anything else is refused as a
//! whole, with the field at fault, counted and shown (`GET /v1/config`);
//! the running configuration stays. `policies.directory` cannot change
//! while running (a restart does it).

use crate::clock::Clock;
use crate::cluster::Cluster;
use crate::config::{Config, Error as ConfigError, ErrorKind, Refused, Status};
use crate::decide::Decider;
use crate::policy::PolicyRef;
use crate::policy_store::{Catalog, PolicyStore};
use crate::signals::{self, SignalHub};
use crate::telemetry::Metrics;
use crate::watch::Follow;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Every binding's reference must name something the store holds.
pub fn check_references(config: &Config, catalog: &Catalog) -> Result<(), ConfigError> {
    let loaded = || {
        let mut names: Vec<String> = catalog.status().iter().map(|s| format!("{}@{}", s.name, s.version)).collect();
        names.dedup();
        if names.is_empty() { "none".to_string() } else { names.join(", ") }
    };
    for (index, workload) in config.workloads.iter().enumerate() {
        let bindings = workload
            .policies
            .iter()
            .enumerate()
            .map(|(i, b)| (format!("workloads[{index}].policies[{i}].policy"), &b.policy))
            .chain(workload.shadow.iter().map(|b| (format!("workloads[{index}].shadow.policy"), &b.policy)));
        for (path, reference) in bindings {
            if catalog.resolve(reference).is_none() {
                let pulled = |text: &String| match catalog.oci.get(text).and_then(|s| s.error.clone()) {
                    Some(error) => format!("it could not be pulled: {error}"),
                    None => "it has not been pulled".to_string(),
                };
                let hint = match reference {
                    PolicyRef::Latest(_) => "no valid version of it is in the store".to_string(),
                    PolicyRef::Oci(text) => pulled(text),
                    _ => "that version is not in the store".to_string(),
                };
                return Err(ConfigError {
                    kind: ErrorKind::Invalid,
                    path,
                    message: format!("policy {reference} not found: {hint} (loaded: {})", loaded()),
                });
            }
        }
    }
    Ok(())
}

/// Why a change was refused: the kind (the metric label: `read`,
/// `syntax`, `invalid`, `reference` or `source`) and the field at fault.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
struct Refusal {
    kind: &'static str,
    path: String,
    message: String,
}

impl Refusal {
    fn new(kind: &'static str, path: String, message: String) -> Refusal {
        Refusal { kind, path, message }
    }
}

impl From<ConfigError> for Refusal {
    fn from(error: ConfigError) -> Refusal {
        Refusal::new(error.kind(), error.path, error.message)
    }
}

pub struct Reloader<C: Cluster> {
    pub file: PathBuf,
    pub decider: Arc<Decider<C>>,
    pub hub: Arc<SignalHub>,
    pub sources: Arc<Mutex<signals::Running>>,
    pub context: signals::Context,
    pub store: PolicyStore,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    pub status: Arc<Mutex<Status>>,
    /// The configuration running now.
    pub current: Config,
    /// sha256 of the file as last read (applied or refused).
    pub seen: String,
}

impl<C: Cluster> Reloader<C> {
    /// Follows the file's directory until `shutdown`.
    pub fn spawn(self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let dir = match self.file.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let follow = Follow {
            dir,
            debounce: Duration::from_millis(150),
            rescan: Duration::from_secs(30),
            what: "configuration",
        };
        let reloader = Arc::new(tokio::sync::Mutex::new(self));
        tokio::spawn(follow.run(shutdown, move || {
            let reloader = reloader.clone();
            async move { reloader.lock().await.check().await }
        }))
    }

    /// Reads the file; applies it if it changed and is acceptable.
    pub async fn check(&mut self) {
        let bytes = match std::fs::read(&self.file) {
            Ok(bytes) => bytes,
            Err(error) => {
                // a ConfigMap swap can leave the file missing for a moment: try at the next event
                tracing::debug!(file = %self.file.display(), %error, "configuration file not readable now");
                return;
            }
        };
        let digest = hex::encode(Sha256::digest(&bytes));
        if digest == self.seen {
            return;
        }
        self.seen = digest.clone();
        match self.apply(&bytes).await {
            Ok(()) => {
                let mut status = self.status.lock();
                status.generation += 1;
                status.digest = digest;
                status.applied_at_ms = self.clock.now_ms();
                status.refused = None;
                Metrics::count(&self.metrics.config_reloads, "applied");
            }
            Err(Refusal { kind, path, message }) => {
                tracing::error!(file = %self.file.display(), kind, %path, %message, "configuration change refused; the running configuration stays");
                Metrics::count(&self.metrics.config_reloads, kind);
                self.status.lock().refused =
                    Some(Refused { kind: kind.into(), path, message, digest, at_ms: self.clock.now_ms() });
            }
        }
    }

    async fn apply(&mut self, bytes: &[u8]) -> Result<(), Refusal> {
        let text = String::from_utf8_lossy(bytes);
        let config = Config::parse(&text)?;
        if config == self.current {
            return Ok(());
        }
        if config.policy_dir != self.current.policy_dir {
            tracing::warn!("policies.directory changed: that takes a restart; the store keeps following the old one");
        }
        self.store.follow_oci(config.oci_references()).await;
        check_references(&config, &self.store.catalog()).map_err(|e| Refusal::new("reference", e.path, e.message))?;
        self.sources
            .lock()
            .apply(&config.sources, config.declared(), &self.context)
            .map_err(|e| Refusal::new("source", e.path, e.message))?;
        self.hub.reconfigure(config.declared());
        let (added, changed, removed) = self.decider.reconfigure(config.workloads.clone()).await;
        self.decider.set_sinks(self.sources.lock().sinks());
        tracing::info!(added, changed, removed, workloads = config.workloads.len(), "configuration applied");
        self.current = config;
        Ok(())
    }
}
