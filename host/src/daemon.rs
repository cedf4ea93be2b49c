//! The daemon's assembly and lifecycle: policy store (+ watcher), decision
//! loop, admin API — and the phased shutdown that takes them down in order.
//!
//! Shutdown (SIGTERM, Ctrl-C or the caller's token): not ready → stop
//! starting evaluations and let the ones in flight finish → stop the watcher
//! → give up leadership (release the Lease) → stop the admin server →
//! return; all within `grace`. What does not
//! finish in time is abandoned and reported.

use crate::admin::{self, AdminState, LogLevelSetter};
use crate::config::{Sources, Workload};
use crate::decide::{Clock, Cluster, Decider, DeciderConfig, Leadership};
use crate::k8s::{LeaderElector, LeaseSettings};
use crate::policy::Runtime;
use crate::policy_store::{PolicyStore, StoreConfig};
use crate::signals::pod_metrics::{self, PodMetricsApi};
use crate::signals::poll::StartSource;
use crate::signals::{SignalHub, forecast, kafka, nats, prometheus, redis};
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

/// A start-up failure caused by a setting (exit code 64 in `scalegate run`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSetting(pub String);

/// Process-level settings (flags, not the config file).
pub struct Settings {
    pub workloads: Vec<Workload>,
    /// Connections to signal sources (`sources:` of the config file).
    pub sources: Sources,
    pub admin_listen: SocketAddr,
    pub admin_token: Option<String>,
    pub grace: Duration,
    pub log_level: Option<LogLevelSetter>,
    pub election: Option<Election>,
    /// The cluster's resource metrics API, for `pod_metrics` inputs
    /// (`None` without a cluster: such inputs are then a setting error).
    pub pod_metrics: Option<Arc<dyn PodMetricsApi>>,
}

/// A running daemon: where its admin API listens and how to reach its parts.
pub struct Running<C: Cluster, K: Clock> {
    pub admin_addr: SocketAddr,
    pub decider: Arc<Decider<C, K>>,
    pub store: PolicyStore,
    pub ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
    tasks: tokio::task::JoinSet<()>,
    watcher: tokio::task::JoinHandle<()>,
    admin: tokio::task::JoinHandle<()>,
    admin_shutdown: CancellationToken,
    elector: Option<(tokio::task::JoinHandle<()>, CancellationToken)>,
    sources: Vec<tokio::task::JoinHandle<()>>,
    grace: Duration,
}

/// Opens the policy store (validating every component in `dir`) on the
/// blocking pool, and logs the files it rejected.
pub async fn open_store(runtime: Arc<Runtime>, dir: PathBuf) -> anyhow::Result<PolicyStore> {
    let store = tokio::task::spawn_blocking(move || PolicyStore::open(runtime, StoreConfig::new(dir))).await??;
    for problem in &store.catalog().problems {
        tracing::warn!(path = %problem.path.display(), kind = %problem.kind, message = %problem.message, "policy rejected");
    }
    Ok(store)
}

/// Starts everything; returns once the admin API listens and the loop runs.
pub async fn start<C: Cluster, K: Clock>(
    settings: Settings,
    store: PolicyStore,
    cluster: Arc<C>,
    clock: Arc<K>,
    shutdown: CancellationToken,
) -> anyhow::Result<Running<C, K>> {
    let ready = Arc::new(AtomicBool::new(false));
    let metrics = store.metrics();
    let leadership = settings.election.as_ref().map(|_| Arc::new(Leadership::default()));
    let hub = Arc::new(SignalHub::new(&settings.workloads, metrics.clone()));
    let mut pollers: Vec<StartSource> = Vec::new();
    if let Some(source) = &settings.sources.prometheus
        && let Some(poller) =
            prometheus::poller(source, &settings.workloads, hub.clone(), metrics.clone()).map_err(InvalidSetting)?
    {
        pollers.push(poller.into_start());
    }
    if let Some(source) = &settings.sources.forecast
        && let Some(poller) =
            forecast::poller(source, &settings.workloads, hub.clone(), metrics.clone()).map_err(InvalidSetting)?
    {
        pollers.push(poller.into_start());
    }
    if let Some(source) = &settings.sources.redis
        && let Some(poller) =
            redis::poller(source, &settings.workloads, hub.clone(), metrics.clone()).map_err(InvalidSetting)?
    {
        pollers.push(poller.into_start());
    }
    if let Some(source) = &settings.sources.nats
        && let Some(poller) =
            nats::poller(source, &settings.workloads, hub.clone(), metrics.clone()).map_err(InvalidSetting)?
    {
        pollers.push(poller.into_start());
    }
    if let Some(poller) = pod_metrics::poller(
        settings.sources.pod_metrics.as_ref(),
        settings.pod_metrics.clone(),
        &settings.workloads,
        hub.clone(),
        metrics.clone(),
    )
    .map_err(InvalidSetting)?
    {
        pollers.push(poller.into_start());
    }
    let mut audit = None;
    if let Some(source) = &settings.sources.kafka {
        if let Some(poller) =
            kafka::lag_poller(source, &settings.workloads, hub.clone(), metrics.clone()).map_err(InvalidSetting)?
        {
            pollers.push(poller.into_start());
        }
        if let Some(start) = kafka::directive_consumer(source, &settings.workloads, hub.clone(), metrics.clone())
            .map_err(InvalidSetting)?
        {
            pollers.push(start);
        }
        audit = kafka::audit_producer(source, metrics.clone()).map_err(InvalidSetting)?;
    }
    let source_clock: Arc<dyn Clock> = clock.clone();
    let decider = Arc::new(Decider::new(
        cluster,
        clock,
        store.clone(),
        settings.workloads,
        DeciderConfig {
            metrics: metrics.clone(),
            leadership: leadership.clone(),
            inputs: Some(hub.clone()),
            audit,
            ..DeciderConfig::default()
        },
    ));
    let weak = Arc::downgrade(&decider);
    hub.set_trigger(move |workload| {
        if let Some(decider) = weak.upgrade() {
            decider.trigger(workload);
        }
    });
    let sources: Vec<tokio::task::JoinHandle<()>> =
        pollers.into_iter().map(|start| tokio::spawn(start(source_clock.clone(), shutdown.child_token()))).collect();
    let mut elector = None;
    if let (Some(election), Some(lead)) = (settings.election, leadership) {
        let (gauge, loop_) = (metrics.clone(), decider.clone());
        let campaign = LeaderElector::new(election.client, election.settings, lead).on_change(move |leading| {
            gauge.set_leader(leading);
            if leading {
                // a new leader acts now rather than at each workload's next tick
                loop_.trigger_all();
            }
        });
        // stopped only after the decisions in flight are done (see `wait`)
        let stop = CancellationToken::new();
        elector = Some((tokio::spawn(campaign.run(stop.clone())), stop));
    }
    let listener = tokio::net::TcpListener::bind(settings.admin_listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.admin_listen))?;
    let admin_addr = listener.local_addr()?;
    let admin_shutdown = CancellationToken::new();
    let state = Arc::new(AdminState {
        store: store.clone(),
        workloads: decider.clone(),
        metrics,
        token: settings.admin_token,
        ready: ready.clone(),
        log_level: settings.log_level,
        max_upload_bytes: 64 << 20,
        inputs: Some(hub),
        clock: source_clock.clone(),
    });
    let admin = tokio::spawn(admin::serve(listener, state, admin_shutdown.clone()));
    let watcher = store.watch(shutdown.child_token());
    let tasks = decider.run(shutdown.child_token());
    ready.store(true, Ordering::Relaxed);
    Ok(Running {
        admin_addr,
        decider,
        store,
        ready,
        shutdown,
        tasks,
        watcher,
        admin,
        admin_shutdown,
        elector,
        sources,
        grace: settings.grace,
    })
}

impl<C: Cluster, K: Clock> Running<C, K> {
    /// Waits for the shutdown token, then takes everything down in order.
    pub async fn wait(mut self) {
        self.shutdown.cancelled().await;
        tracing::info!("shutting down: not ready, finishing decisions in flight");
        self.ready.store(false, Ordering::Relaxed);
        let drained = tokio::time::timeout(self.grace, async {
            while self.tasks.join_next().await.is_some() {}
            let _ = (&mut self.watcher).await;
        })
        .await;
        for source in self.sources.drain(..) {
            // they stop at the shutdown token; a fetch in flight is abandoned
            source.abort();
        }
        if drained.is_err() {
            tracing::warn!(grace = ?self.grace, "grace period over; abandoning unfinished decisions");
            self.tasks.abort_all();
            self.watcher.abort();
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
