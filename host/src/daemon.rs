//! The daemon's assembly and lifecycle, whatever cluster it drives (`scalegate
//! run` passes the Kubernetes API, `scalegate demo` the simulator): signal
//! hub and sources, decision loop, leader election, admin API, policy store
//! watcher — and the phased shutdown that takes them down in order.
//!
//! Shutdown (SIGTERM, Ctrl-C or the caller's token): not ready → stop
//! starting evaluations and let the ones in flight finish → stop the watcher
//! and the sources → flush the decision sinks (the Kafka audit topic) → give
//! up leadership (release the Lease) → stop the admin server → return; all
//! within `grace`. What does not finish in time is abandoned and reported.

use crate::admin::{self, AdminState, LogLevelSetter};
use crate::clock::Clock;
use crate::cluster::{Cluster, ResourceMetrics};
use crate::config::Config;
use crate::decide::{Decider, DeciderConfig};
use crate::k8s::{LeaderElector, LeaseSettings};
use crate::leadership::Leadership;
use crate::policy::Runtime;
use crate::policy_store::{PolicyStore, StoreConfig, StoreError};
use crate::signals::{self, SignalHub};
use parking_lot::Mutex;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Leader election: only the holder of the Lease writes.
pub struct Election {
    pub client: kube::Client,
    pub settings: LeaseSettings,
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting of the configuration makes start-up impossible (exit 64).
    #[error("{0}")]
    Setting(#[from] signals::source::FieldError),
    /// A source could not start with its settings (exit 64).
    #[error("{0}")]
    Source(#[from] signals::StartError),
    /// The admin API cannot listen (exit 70).
    #[error("cannot listen on {addr}: {message}")]
    Listen { addr: SocketAddr, message: String },
}

impl StartError {
    /// Whether a setting (rather than the machine) is at fault.
    pub fn is_setting(&self) -> bool {
        !matches!(self, StartError::Listen { .. })
    }
}

/// What the daemon runs with besides the cluster.
pub struct Settings {
    /// The validated configuration (workloads, sources).
    pub config: Config,
    pub admin_listen: SocketAddr,
    pub admin_token: Option<String>,
    pub grace: Duration,
    pub log_level: Option<LogLevelSetter>,
    pub election: Option<Election>,
    /// The cluster's resource metrics API, for `pod_metrics` inputs
    /// (`None` without a cluster: such inputs are then a setting error).
    pub resource_metrics: Option<Arc<dyn ResourceMetrics>>,
}

/// A running daemon: where its admin API listens and how to reach its parts.
pub struct Running<C: Cluster> {
    pub admin_addr: SocketAddr,
    pub decider: Arc<Decider<C>>,
    pub store: PolicyStore,
    pub hub: Arc<SignalHub>,
    pub ready: Arc<AtomicBool>,
    pub leadership: Arc<Leadership>,
    shutdown: CancellationToken,
    watcher: tokio::task::JoinHandle<()>,
    admin: tokio::task::JoinHandle<()>,
    admin_shutdown: CancellationToken,
    elector: Option<(tokio::task::JoinHandle<()>, CancellationToken)>,
    sources: Arc<Mutex<signals::Running>>,
    grace: Duration,
}

/// Opens the policy store (validating every component in `dir`) on the
/// blocking pool, and logs the files it rejected.
pub async fn open_store(runtime: Arc<Runtime>, dir: PathBuf) -> Result<PolicyStore, StoreError> {
    let store = tokio::task::spawn_blocking(move || PolicyStore::open(runtime, StoreConfig::new(dir)))
        .await
        .map_err(|e| StoreError::Directory { path: String::new(), message: format!("opening task failed: {e}") })??;
    for problem in &store.catalog().problems {
        tracing::warn!(path = %problem.path.display(), kind = %problem.kind, message = %problem.message, "policy rejected");
    }
    Ok(store)
}

/// Starts everything; returns once the admin API listens and the loop runs.
/// Readiness follows once the cluster's caches hold the targets' namespaces.
pub async fn start<C: Cluster>(
    settings: Settings,
    store: PolicyStore,
    cluster: Arc<C>,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> Result<Running<C>, StartError> {
    let ready = Arc::new(AtomicBool::new(false));
    let metrics = store.metrics();
    let leadership = Arc::new(if settings.election.is_some() { Leadership::elected() } else { Leadership::sole() });
    let config = settings.config;
    let hub = Arc::new(SignalHub::new(config.declared(), metrics.clone()));
    let context = signals::Context {
        hub: hub.clone(),
        metrics: metrics.clone(),
        clock: clock.clone(),
        resource_metrics: settings.resource_metrics.clone(),
        leadership: leadership.clone(),
        shutdown: shutdown.child_token(),
    };
    let mut sources = signals::Running::default();
    sources.apply(&config.sources, config.declared(), &context)?;
    let decider = Arc::new(Decider::new(
        cluster.clone(),
        clock.clone(),
        Arc::new(store.clone()),
        config.workloads.clone(),
        DeciderConfig {
            metrics: metrics.clone(),
            leadership: leadership.clone(),
            inputs: Some(hub.clone()),
            ..DeciderConfig::default()
        },
    ));
    decider.set_sinks(sources.sinks());
    let weak = Arc::downgrade(&decider);
    hub.set_trigger(move |workload| {
        if let Some(decider) = weak.upgrade() {
            decider.trigger(workload);
        }
    });
    let mut elector = None;
    match settings.election {
        Some(election) => {
            let (gauge, loop_, lead) = (metrics.clone(), decider.clone(), leadership.clone());
            let campaign =
                LeaderElector::new(election.client, election.settings, leadership.clone()).on_change(move |leading| {
                    gauge.set_leader(leading);
                    if leading {
                        lead.ready(lead.term());
                        // a new leader acts now rather than at each workload's next tick
                        loop_.trigger_all();
                    }
                });
            // stopped only after the decisions in flight are done (see `wait`)
            let stop = CancellationToken::new();
            elector = Some((tokio::spawn(campaign.run(stop.clone())), stop));
        }
        None => leadership.ready(leadership.term()),
    }
    let listener = tokio::net::TcpListener::bind(settings.admin_listen)
        .await
        .map_err(|e| StartError::Listen { addr: settings.admin_listen, message: e.to_string() })?;
    let admin_addr = listener
        .local_addr()
        .map_err(|e| StartError::Listen { addr: settings.admin_listen, message: e.to_string() })?;
    let admin_shutdown = CancellationToken::new();
    let state = Arc::new(AdminState {
        store: store.clone(),
        workloads: decider.clone(),
        metrics,
        token: settings.admin_token,
        ready: ready.clone(),
        log_level: settings.log_level,
        max_upload_bytes: 64 << 20,
        inputs: Some(hub.clone()),
        clock: clock.clone(),
    });
    let admin = tokio::spawn(admin::serve(listener, state, admin_shutdown.clone()));
    let watcher = store.watch(shutdown.child_token());
    decider.run(shutdown.child_token());
    let namespaces = namespaces(&config);
    let (synced, flag) = (cluster.clone(), ready.clone());
    tokio::spawn(async move {
        synced.wait_synced(&namespaces).await;
        flag.store(true, Ordering::Relaxed);
    });
    Ok(Running {
        admin_addr,
        decider,
        store,
        hub,
        ready,
        leadership,
        shutdown,
        watcher,
        admin,
        admin_shutdown,
        elector,
        sources: Arc::new(Mutex::new(sources)),
        grace: settings.grace,
    })
}

/// The namespaces of the configured targets, each once.
fn namespaces(config: &Config) -> Vec<String> {
    let mut namespaces: Vec<String> = config.workloads.iter().map(|w| w.target.namespace.clone()).collect();
    namespaces.sort();
    namespaces.dedup();
    namespaces
}

impl<C: Cluster> Running<C> {
    /// Waits for the shutdown token, then takes everything down in order.
    pub async fn wait(mut self) {
        self.shutdown.cancelled().await;
        tracing::info!("shutting down: not ready, finishing decisions in flight");
        self.ready.store(false, Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + self.grace;
        let drained = tokio::time::timeout_at(deadline, async {
            self.decider.stopped().await;
            let _ = (&mut self.watcher).await;
        })
        .await;
        // they stop at the shutdown token; a fetch in flight is abandoned
        self.sources.lock().stop();
        if drained.is_err() {
            tracing::warn!(grace = ?self.grace, "grace period over; abandoning unfinished decisions");
            self.watcher.abort();
        }
        for sink in self.decider.sinks().iter() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now()).max(Duration::from_millis(500));
            if let Err(error) = sink.flush(left).await {
                tracing::warn!(%error, "decision records not delivered");
            }
        }
        if let Some((task, stop)) = self.elector.take() {
            // stops writing, then releases the Lease for a standby
            stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        self.admin_shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut self.admin).await;
        tracing::info!("stopped");
    }
}

/// Cancels `token` on SIGTERM or Ctrl-C.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGTERM");
                    let _ = tokio::signal::ctrl_c().await;
                    token.cancel();
                    return;
                }
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        token.cancel();
    });
}
