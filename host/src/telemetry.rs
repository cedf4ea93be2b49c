//! Metrics the daemon exposes on `GET /metrics` (Prometheus text format).
//!
//! Labels are bounded: error kinds, clamp kinds and outcomes come from fixed
//! vocabularies (`metric_label()`); no pod names. The decision loop and the
//! policy store record here; the admin API renders it. Per-workload gauges
//! (namespace, name, binding — as many as configured workloads) are views
//! computed at scrape time from the loop's latest decisions
//! (`decide::gauges`), so they cost no memory per series.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceErrorLabel {
    pub source: String,
    pub kind: String,
}

/// All counters and histograms, registered once.
pub struct Metrics {
    registry: Registry,
    /// Decisions by outcome: `scaled`, `unchanged`, `dry_run`, `failed_write`.
    pub decisions: Family<KindLabel, Counter>,
    /// Guardrail adjustments by kind (`min`, `max`, `step_up`, …).
    pub clamps: Family<KindLabel, Counter>,
    /// Policy faults by kind (`timeout`, `trap`, `memory_limit`, …).
    pub policy_faults: Family<KindLabel, Counter>,
    /// Wall time of one policy call, seconds.
    pub evaluation_seconds: Histogram,
    /// Policy versions admitted (`loaded`) or refused (`rejected`) by the store.
    pub reloads: Family<KindLabel, Counter>,
    /// 1 while this replica holds the leader Lease (always 0 without leader election).
    pub leader: Gauge,
    /// Wall time of one fetch from a signal source, seconds.
    pub source_fetch_seconds: Family<SourceLabel, Histogram>,
    /// Failed or unusable fetches by source and kind (`timeout`, `http`, `empty`, `nan`, …).
    pub source_errors: Family<SourceErrorLabel, Counter>,
    /// Unix time of the last successful fetch per source (alert on `time() - x`).
    pub source_last_success: Family<SourceLabel, Gauge>,
    /// Signals queued for an evaluation, by source (`kafka:<topic>`, `push`).
    pub signals: Family<SourceLabel, Counter>,
    /// Signals dropped because a workload's queue was full (oldest first).
    pub signals_dropped: Family<SourceLabel, Counter>,
    /// Decision states stored in the cluster (`written`) or not (the error kind).
    pub state_writes: Family<KindLabel, Counter>,
    /// Configuration changes applied (`applied`) or refused (the kind of problem).
    pub config_reloads: Family<KindLabel, Counter>,
    /// KEDA External Scaler calls by RPC and outcome.
    pub keda_rpc_seconds: Family<RpcLabel, Histogram>,
    /// 1 while the last check of an OCI policy reference succeeded.
    pub oci_reference_up: Family<SourceLabel, Gauge>,
    /// Metrics computed at scrape time from the running parts (the
    /// per-workload gauges of the decision loop): nothing kept per series.
    views: parking_lot::RwLock<Vec<Arc<dyn Collector>>>,
}

/// A collector shared between the metrics and a scrape's registry.
#[derive(Debug)]
struct Shared(Arc<dyn Collector>);

impl Collector for Shared {
    fn encode(&self, encoder: prometheus_client::encoding::DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }
}

/// The contract versions the host serves, for `scalegate_info{wit}` (the
/// same as `policy::Contract::served()`; a test there keeps them equal —
/// telemetry sits below `policy`).
pub const CONTRACTS: &str = "0.1.0,0.2.0";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InfoLabel {
    pub version: String,
    pub wit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabel {
    pub rpc: String,
    pub code: String,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("scalegate");
        let decisions = Family::<KindLabel, Counter>::default();
        registry.register("decisions", "Decisions by outcome", decisions.clone());
        let clamps = Family::<KindLabel, Counter>::default();
        registry.register("guardrail_clamps", "Guardrail adjustments by kind", clamps.clone());
        let policy_faults = Family::<KindLabel, Counter>::default();
        registry.register("policy_faults", "Policy faults by kind", policy_faults.clone());
        // 5 µs … ~10 s
        let evaluation_seconds =
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(5e-6, 4.0, 11));
        registry.register("policy_evaluation_seconds", "Wall time of one policy call", evaluation_seconds.clone());
        let reloads = Family::<KindLabel, Counter>::default();
        registry.register("policy_reloads", "Policy versions admitted or refused by the store", reloads.clone());
        let leader = Gauge::default();
        registry.register("leader", "1 while this replica holds the leader lease", leader.clone());
        let source_fetch_seconds = Family::<SourceLabel, Histogram>::new_with_constructor(|| {
            // 1 ms … ~16 s
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(1e-3, 4.0, 8))
        });
        registry.register(
            "source_fetch_seconds",
            "Wall time of one fetch from a signal source",
            source_fetch_seconds.clone(),
        );
        let source_errors = Family::<SourceErrorLabel, Counter>::default();
        registry.register("source_errors", "Failed or unusable fetches by source and kind", source_errors.clone());
        let source_last_success = Family::<SourceLabel, Gauge>::default();
        registry.register(
            "source_last_success_timestamp_seconds",
            "Unix time of the last successful fetch per source",
            source_last_success.clone(),
        );
        let signals = Family::<SourceLabel, Counter>::default();
        registry.register("signals", "Signals queued for an evaluation, by source", signals.clone());
        let signals_dropped = Family::<SourceLabel, Counter>::default();
        registry.register(
            "signals_dropped",
            "Signals dropped from a full workload queue (the oldest), by source",
            signals_dropped.clone(),
        );
        let state_writes = Family::<KindLabel, Counter>::default();
        registry.register(
            "state_writes",
            "Decision states stored in the cluster (written) or not (error kind)",
            state_writes.clone(),
        );
        let config_reloads = Family::<KindLabel, Counter>::default();
        registry.register(
            "config_reloads",
            "Configuration changes applied (applied) or refused (kind of problem)",
            config_reloads.clone(),
        );
        let keda_rpc_seconds = Family::<RpcLabel, Histogram>::new_with_constructor(|| {
            // 10 µs … ~2.6 s
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(1e-5, 4.0, 10))
        });
        registry.register(
            "keda_rpc_seconds",
            "KEDA External Scaler calls by RPC and outcome (ok, not_found, unavailable, …)",
            keda_rpc_seconds.clone(),
        );
        let oci_reference_up = Family::<SourceLabel, Gauge>::default();
        registry.register(
            "policy_oci_reference_up",
            "1 while the last check of an OCI policy reference succeeded, 0 while it fails (the version pulled before keeps running)",
            oci_reference_up.clone(),
        );
        let info = Family::<InfoLabel, Gauge>::default();
        info.get_or_create(&InfoLabel {
            version: env!("CARGO_PKG_VERSION").into(),
            wit: format!("scalegate:policy@{CONTRACTS}"),
        })
        .set(1);
        registry.register("info", "The build: scalegate version and the policy world it serves", info);
        Metrics {
            registry,
            views: parking_lot::RwLock::new(Vec::new()),
            keda_rpc_seconds,
            oci_reference_up,
            state_writes,
            config_reloads,
            decisions,
            clamps,
            policy_faults,
            evaluation_seconds,
            reloads,
            leader,
            source_fetch_seconds,
            source_errors,
            source_last_success,
            signals,
            signals_dropped,
        }
    }

    pub fn observe_keda(&self, rpc: &str, code: &str, took: std::time::Duration) {
        let label = RpcLabel { rpc: rpc.into(), code: code.into() };
        self.keda_rpc_seconds.get_or_create(&label).observe(took.as_secs_f64());
    }

    pub fn observe_fetch(&self, source: &str, took: std::time::Duration) {
        self.source_fetch_seconds.get_or_create(&SourceLabel { source: source.into() }).observe(took.as_secs_f64());
    }

    pub fn mark_source_success(&self, source: &str) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        self.source_last_success.get_or_create(&SourceLabel { source: source.into() }).set(now as i64);
    }

    pub fn count_source_error(&self, source: &str, kind: &str) {
        self.source_errors.get_or_create(&SourceErrorLabel { source: source.into(), kind: kind.into() }).inc();
    }

    /// A signal queued; `dropped` names the source of one pushed out, if any.
    pub fn count_signal(&self, source: &str, dropped: Option<&str>) {
        self.signals.get_or_create(&SourceLabel { source: source.into() }).inc();
        if let Some(dropped) = dropped {
            self.signals_dropped.get_or_create(&SourceLabel { source: dropped.into() }).inc();
        }
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    pub fn count(family: &Family<KindLabel, Counter>, kind: &str) {
        family.get_or_create(&KindLabel { kind: kind.to_string() }).inc();
    }

    /// The Prometheus text exposition.
    /// Adds metrics computed at each scrape.
    pub fn add_view(&self, view: Arc<dyn Collector>) {
        self.views.write().push(view);
    }

    pub fn render(&self) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut text = String::new();
        let mut views = Registry::with_prefix("scalegate");
        for view in self.views.read().iter() {
            views.register_collector(Box::new(Shared(view.clone())));
        }
        encode_registry(&mut text, &self.registry)
            .and_then(|()| encode_registry(&mut text, &views))
            .and_then(|()| encode_eof(&mut text))
            .expect("writing to a String cannot fail");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_bounded_labels() {
        let metrics = Metrics::new();
        Metrics::count(&metrics.decisions, "scaled");
        Metrics::count(&metrics.decisions, "scaled");
        Metrics::count(&metrics.policy_faults, "timeout");
        metrics.evaluation_seconds.observe(0.000_02);
        let text = metrics.render();
        assert!(text.contains("scalegate_decisions_total{kind=\"scaled\"} 2"), "{text}");
        assert!(text.contains("scalegate_policy_faults_total{kind=\"timeout\"} 1"), "{text}");
        assert!(text.contains("scalegate_policy_evaluation_seconds_count 1"), "{text}");
    }
}
