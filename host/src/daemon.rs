//! The daemon's assembly and lifecycle, whatever cluster it drives (`scalegate
//! run` passes the Kubernetes API, `scalegate demo` the simulator): signal
//! hub and sources, decision loop, leader election, admin API, policy store
//! watcher — and the phased shutdown that takes them down in order.
//!
//! A replica writes only once it has taken over what the last writer left
//! in the cluster (`takeover`): at start-up when it runs alone, at each new
//! term with leader election.
//!
//! Shutdown (SIGTERM, Ctrl-C or the caller's token): not ready → stop
//! starting evaluations and let the ones in flight finish → store the
//! decision states → stop the watcher and the sources → flush the decision
//! sinks (the Kafka audit topic) → give up leadership (release the Lease) →
//! stop the admin server → return; all within `grace`. What does not finish
//! in time is abandoned and reported.

mod reload;
mod takeover;

pub use reload::{Reloader, check_references};
pub use takeover::{TakeOver, pins_state};

use crate::admin::{self, AdminState, LogLevelSetter};
use crate::clock::Clock;
use crate::cluster::{Cluster, ClusterError, ResourceMetrics};
use crate::config::{self, Config};
use crate::decide::{Decider, DeciderConfig, DecisionLines, Persist};
use crate::k8s::{LeaderElector, LeaseSettings};
use crate::keda;
use crate::leadership::Leadership;
use crate::policy::{CallPool, Runtime};
use crate::policy_store::{PolicyStore, StoreConfig, StoreError};
use crate::signals::{self, SignalHub};
use crate::sink::Answers;
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
    /// This replica's pod, to carry the leader label while it leads.
    pub label_pod: Option<String>,
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
    /// Decision state is to be kept in the cluster, which does not serve
    /// the resource for it (exit 64).
    #[error("decision state: {0}")]
    State(ClusterError),
}

impl StartError {
    /// Whether a setting (rather than the machine) is at fault.
    pub fn is_setting(&self) -> bool {
        !matches!(self, StartError::Listen { .. })
    }
}

/// Where decision state is kept.
#[derive(Debug, Clone)]
pub struct StateSettings {
    /// How often a changed workload state is stored (applied scales are
    /// stored at once).
    pub persist: Persist,
    /// The namespace of the policy pins' stored state (scalegate's own).
    pub namespace: String,
}

/// What the daemon runs with besides the cluster.
pub struct Settings {
    /// The validated configuration (workloads, sources).
    pub config: Config,
    /// The file it came from, followed for changes (`None`: not reloaded).
    pub config_file: Option<PathBuf>,
    pub admin_listen: SocketAddr,
    pub admin_token: Option<String>,
    pub grace: Duration,
    pub log_level: Option<LogLevelSetter>,
    pub election: Option<Election>,
    /// The cluster's resource metrics API, for `pod_metrics` inputs
    /// (`None` without a cluster: such inputs are then a setting error).
    pub resource_metrics: Option<Arc<dyn ResourceMetrics>>,
    /// Keep decision state in the cluster (`None`: memory only; a restart or
    /// a failover starts afresh).
    pub state: Option<StateSettings>,
    /// Serve KEDA's External Scaler (`None`: not served).
    pub keda: Option<KedaSettings>,
    /// Which decisions get a line at `info`.
    pub log_decisions: DecisionLines,
    /// Evaluations captured per workload with their exact snapshots (0: none).
    pub capture: usize,
    /// Where policy calls run (`None`: the blocking pool, 2 × cores slots,
    /// shared with the admin API's on-demand evaluations).
    pub calls: Option<CallPool>,
}

/// Where KEDA's External Scaler listens, and its TLS (`None`: plaintext,
/// only when asked for explicitly).
pub struct KedaSettings {
    pub listen: SocketAddr,
    pub tls: Option<keda::Tls>,
}

/// A running daemon: where its admin API listens and how to reach its parts.
pub struct Running<C: Cluster> {
    pub admin_addr: SocketAddr,
    /// Where KEDA's External Scaler listens, when served.
    pub keda_addr: Option<SocketAddr>,
    /// The decisions served to KEDA.
    pub answers: Arc<Answers>,
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
    reloader: Option<tokio::task::JoinHandle<()>>,
    grace: Duration,
}

/// Where `oci://` policies come from and how often tags are re-resolved.
#[derive(Debug, Clone)]
pub struct Oci {
    pub registries: crate::policy_store::OciConfig,
    pub interval: Duration,
}

/// Opens the policy store (validating every component in `dir`) on the
/// blocking pool, and logs the files it rejected.
pub async fn open_store(runtime: Arc<Runtime>, dir: PathBuf, oci: Option<Oci>) -> Result<PolicyStore, StoreError> {
    let mut config = StoreConfig::new(dir);
    if let Some(oci) = oci {
        (config.oci, config.oci_interval) = (oci.registries, oci.interval);
    }
    open_store_with(runtime, config).await
}

/// [`open_store`] with every store setting given.
pub async fn open_store_with(runtime: Arc<Runtime>, config: StoreConfig) -> Result<PolicyStore, StoreError> {
    let store = tokio::task::spawn_blocking(move || PolicyStore::open(runtime, config))
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
    let sources = Arc::new(Mutex::new(sources));
    if let Some(state) = &settings.state {
        // a cluster that does not serve the state resource is a setting
        // problem: say so now rather than never writing
        if let Err(error @ ClusterError::NotFound(_)) =
            cluster.load_states(std::slice::from_ref(&state.namespace)).await
        {
            return Err(StartError::State(error));
        }
    }
    let calls = settings.calls.clone().unwrap_or_else(|| DeciderConfig::default().calls);
    let answers = Arc::new(Answers::default());
    let decider = Arc::new(Decider::new(
        cluster.clone(),
        clock.clone(),
        Arc::new(store.clone()),
        config.workloads.clone(),
        DeciderConfig {
            metrics: metrics.clone(),
            leadership: leadership.clone(),
            inputs: Some(hub.clone()),
            persist: settings.state.as_ref().map(|s| s.persist),
            calls: calls.clone(),
            answers: Some(answers.clone()),
            log_decisions: settings.log_decisions,
            capture: settings.capture,
            ..DeciderConfig::default()
        },
    ));
    metrics.add_view(Arc::new(crate::decide::Gauges::new(&decider, Some(hub.clone()))));
    let takeover = TakeOver {
        decider: decider.clone(),
        store: store.clone(),
        cluster: cluster.clone(),
        leadership: leadership.clone(),
        pins_namespace: settings.state.as_ref().map(|s| s.namespace.clone()),
    };
    decider.set_sinks(sources.lock().sinks());
    let weak = Arc::downgrade(&decider);
    hub.set_trigger(move |workload| {
        if let Some(decider) = weak.upgrade() {
            decider.trigger(workload);
        }
    });
    let weak = Arc::downgrade(&decider);
    hub.set_wake(move |workload| {
        if let Some(decider) = weak.upgrade() {
            decider.wake(workload);
        }
    });
    let mut elector = None;
    match settings.election {
        Some(election) => {
            let (gauge, takeover, stop_takeover) = (metrics.clone(), takeover.clone(), shutdown.child_token());
            let mut campaign = LeaderElector::new(election.client.clone(), election.settings, leadership.clone());
            if let Some(pod) = &election.label_pod {
                campaign = campaign.labelling(election.client, pod);
            }
            let campaign = campaign.on_change(move |leading| {
                gauge.set_leader(leading);
                if leading {
                    // the new term writes (all workloads at once) after taking over
                    let term = takeover.leadership.term();
                    tokio::spawn(takeover.clone().run(term, stop_takeover.clone()));
                }
            });
            // stopped only after the decisions in flight are done (see `wait`)
            let stop = CancellationToken::new();
            elector = Some((tokio::spawn(campaign.run(stop.clone())), stop));
        }
        None => {
            let term = leadership.term();
            tokio::spawn(takeover.clone().run(term, shutdown.child_token()));
        }
    }
    let listener = tokio::net::TcpListener::bind(settings.admin_listen)
        .await
        .map_err(|e| StartError::Listen { addr: settings.admin_listen, message: e.to_string() })?;
    let admin_addr = listener
        .local_addr()
        .map_err(|e| StartError::Listen { addr: settings.admin_listen, message: e.to_string() })?;
    let admin_shutdown = CancellationToken::new();
    let keda_addr = match &settings.keda {
        Some(keda) => {
            let listener = tokio::net::TcpListener::bind(keda.listen)
                .await
                .map_err(|e| StartError::Listen { addr: keda.listen, message: e.to_string() })?;
            let addr =
                listener.local_addr().map_err(|e| StartError::Listen { addr: keda.listen, message: e.to_string() })?;
            let scaler = keda::Scaler::new(answers.clone(), clock.clone(), metrics.clone());
            let (tls, stop) = (keda.tls.clone(), admin_shutdown.clone());
            let secure = if tls.is_some() { "TLS" } else { "plaintext" };
            tokio::spawn(async move {
                if let Err(error) = scaler.serve(listener, tls, stop).await {
                    tracing::error!(%error, "KEDA External Scaler stopped");
                }
            });
            tracing::info!("KEDA External Scaler on {addr} ({secure})");
            Some(addr)
        }
        None => None,
    };
    let pins: Option<admin::PinSaver> = settings.state.as_ref().map(|state| {
        let (cluster, namespace) = (cluster.clone(), state.namespace.clone());
        Arc::new(move |pins: std::collections::BTreeMap<String, String>| {
            let (cluster, stored) = (cluster.clone(), pins_state(&namespace, &pins));
            Box::pin(async move { cluster.save_state(&stored).await.map_err(|e| e.to_string()) })
                as futures::future::BoxFuture<'static, Result<(), String>>
        }) as admin::PinSaver
    });
    let status = Arc::new(Mutex::new(config::Status {
        file: settings.config_file.clone(),
        generation: 1,
        digest: settings.config_file.as_ref().and_then(|f| std::fs::read(f).ok()).map_or_else(String::new, |bytes| {
            use sha2::Digest as _;
            hex::encode(sha2::Sha256::digest(bytes))
        }),
        applied_at_ms: clock.now_ms(),
        refused: None,
    }));
    let state = Arc::new(AdminState {
        store: store.clone(),
        workloads: decider.clone(),
        metrics,
        token: settings.admin_token,
        ready: ready.clone(),
        log_level: settings.log_level,
        max_upload_bytes: store.max_component_bytes(),
        calls,
        inputs: Some(hub.clone()),
        clock: clock.clone(),
        leadership: leadership.clone(),
        pins,
        push_timeout: Duration::from_secs(10),
        config: Some(status.clone()),
    });
    let admin = tokio::spawn(admin::serve(listener, state, admin_shutdown.clone()));
    let watcher = store.watch(shutdown.child_token());
    // stops with the shutdown token; holds nothing that needs flushing
    drop(store.watch_oci(shutdown.child_token()));
    let reloader = settings.config_file.map(|file| {
        let seen = status.lock().digest.clone();
        let reloader = Reloader {
            file,
            decider: decider.clone(),
            hub: hub.clone(),
            sources: sources.clone(),
            context: context.clone(),
            store: store.clone(),
            metrics: store.metrics(),
            clock: clock.clone(),
            status,
            current: config.clone(),
            seen,
        };
        reloader.spawn(shutdown.child_token())
    });
    decider.run(shutdown.child_token());
    let namespaces = namespaces(&config);
    let (synced, flag) = (cluster.clone(), ready.clone());
    tokio::spawn(async move {
        synced.wait_synced(&namespaces).await;
        flag.store(true, Ordering::Relaxed);
    });
    Ok(Running {
        admin_addr,
        keda_addr,
        answers,
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
        sources,
        reloader,
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
            // a successor continues exactly from here
            self.decider.flush_states().await;
            let _ = (&mut self.watcher).await;
        })
        .await;
        // they stop at the shutdown token; a fetch in flight is abandoned
        if let Some(reloader) = self.reloader.take() {
            reloader.abort();
        }
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
