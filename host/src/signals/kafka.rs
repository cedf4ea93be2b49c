//! Kafka, three ways (rdkafka, librdkafka underneath):
//!
//! - **directives**: a consumer (group `group_id`) of topics carrying
//!   `ScaleSignal` JSON messages, e.g. `rtc.control.scale`. Each message is
//!   routed to a workload — by the message key or by a JSON field — becomes
//!   a signal in its snapshot and triggers an evaluation at once. Malformed
//!   messages are counted (`scalegate_source_errors_total{source="kafka"}`),
//!   logged once per burst and skipped.
//! - **lag**: a metric per workload, the consumer-group lag of a topic: per
//!   partition, high watermark − committed offset, summed. A partition the
//!   group never committed counts as KEDA counts it: 1 with
//!   `offset_reset: latest` (the default), the whole retained log
//!   (high − low watermark) with `earliest`.
//! - **audit**: every applied decision published as JSON to a topic, keyed
//!   by workload.
//!
//! `options` passes librdkafka properties through (`security.protocol`,
//! `sasl.mechanism`, `sasl.username`, `ssl.ca.location`, …); a secret can be
//! read from a file with `sasl_password_file`. librdkafka reconnects by
//! itself (the directive consumer retries at least every second); lost
//! connections are counted, and while the broker is away the lag goes stale
//! (no scale-down).

use super::poll::{Fetcher, Job, Outcome, Poller, SourceTask, StartSource};
use super::{BurstLog, SignalHub};
use crate::config::{MetricSource, Workload};
use crate::decide::{AuditHook, Clock, DecisionRecord};
use crate::snapshot::{Metric, ScaleAction, Signal};
use crate::telemetry::Metrics;
use futures::future::BoxFuture;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, ClientContext};
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// `sources.kafka`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// `host:port[,host:port…]`.
    pub brokers: String,
    /// Consumer group of the directive consumer (default `scalegate`).
    #[serde(default = "default_group")]
    pub group_id: String,
    /// librdkafka properties, passed through.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Sets `sasl.password` from this file.
    pub sasl_password_file: Option<PathBuf>,
    #[serde(default)]
    pub directives: Vec<DirectiveTopic>,
    pub audit: Option<Audit>,
    /// How often lag is measured (default 5 s).
    #[serde(default = "default_lag_interval", with = "humantime_serde")]
    pub lag_interval: Duration,
    /// Deadline of metadata and offset requests (default 5 s).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_group() -> String {
    "scalegate".into()
}

fn default_lag_interval() -> Duration {
    Duration::from_secs(5)
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// A topic of `ScaleSignal` messages.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectiveTopic {
    pub topic: String,
    /// How a message names its workload (default: the `target` field).
    #[serde(default)]
    pub route: Route,
}

/// The routing value is matched against each workload's name, its target's
/// `namespace/name`, and its target's bare name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// The message key.
    Key,
    /// A top-level string field of the JSON message.
    Field(String),
}

impl Default for Route {
    fn default() -> Self {
        Route::Field("target".into())
    }
}

/// `sources.kafka.audit`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Audit {
    pub topic: String,
}

/// `workloads[].metrics[].kafka_lag`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lag {
    pub topic: String,
    /// The consumer group whose lag to measure (the workload's consumers).
    pub group: String,
    #[serde(default)]
    pub offset_reset: OffsetReset,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OffsetReset {
    #[default]
    Latest,
    Earliest,
}

impl Source {
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.brokers.trim().is_empty() {
            return Err(("brokers", "must not be empty".into()));
        }
        if self.group_id.is_empty() {
            return Err(("group_id", "must not be empty".into()));
        }
        if self.directives.iter().any(|d| d.topic.is_empty()) {
            return Err(("directives", "every directive needs a topic".into()));
        }
        Ok(())
    }

    fn client_config(&self) -> Result<ClientConfig, String> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in &self.options {
            config.set(key, value);
        }
        if let Some(path) = &self.sasl_password_file {
            let password = std::fs::read_to_string(path)
                .map_err(|e| format!("sources.kafka.sasl_password_file: cannot read {}: {e}", path.display()))?;
            config.set("sasl.password", password.trim_end_matches(['\n', '\r']));
        }
        Ok(config)
    }
}

impl Lag {
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        for (field, value) in [("topic", &self.topic), ("group", &self.group)] {
            if value.is_empty() {
                return Err((field, "must not be empty".into()));
            }
        }
        Ok(())
    }
}

/// A Kafka client whose drop happens on a thread of its own: closing a
/// consumer waits, without limit, until librdkafka has left the group,
/// which never happens while the broker is unreachable
/// (fede1024/rust-rdkafka#509). That must neither block a runtime worker
/// nor keep the daemon from exiting after its shutdown.
pub struct CloseAside<T: Send + 'static>(Option<T>);

impl<T: Send + 'static> CloseAside<T> {
    pub fn new(client: T) -> CloseAside<T> {
        CloseAside(Some(client))
    }
}

impl<T: Send + 'static> std::ops::Deref for CloseAside<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.0.as_ref().expect("present until dropped")
    }
}

impl<T: Send + 'static> Drop for CloseAside<T> {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            let closing = std::thread::Builder::new().name("kafka-close".into()).spawn(move || drop(client));
            if let Err(error) = closing {
                tracing::warn!(%error, "cannot start a thread to close a Kafka client; leaking it");
            }
        }
    }
}

/// Sets `key` unless `options` already did.
fn set_default(config: &mut ClientConfig, key: &str, value: &str) {
    if config.get(key).is_none() {
        config.set(key, value);
    }
}

// ---- directives -----------------------------------------------------------

/// Workload names by every name a message may use for them.
fn route_table(workloads: &[Workload]) -> HashMap<String, String> {
    let mut table = HashMap::new();
    let mut bare: HashMap<&str, Vec<&str>> = HashMap::new();
    for w in workloads {
        table.insert(w.name.clone(), w.name.clone());
        table.insert(format!("{}/{}", w.target.namespace, w.target.name), w.name.clone());
        bare.entry(&w.target.name).or_default().push(&w.name);
    }
    for (name, owners) in bare {
        if let [only] = owners.as_slice() {
            table.entry(name.to_string()).or_insert_with(|| only.to_string());
        }
    }
    table
}

/// A `ScaleSignal` message as a signal for one workload: (workload, signal)
/// or (error kind, why).
pub fn parse_directive(
    topic: &str,
    route: &Route,
    routes: &HashMap<String, String>,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    record_ms: Option<u64>,
    now_ms: u64,
) -> Result<(String, Signal), (&'static str, String)> {
    let payload = payload.ok_or(("parse", "empty message".to_string()))?;
    let message: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| ("parse", format!("not JSON: {e}")))?;
    let object = message.as_object().ok_or(("parse", "not a JSON object".to_string()))?;
    let routing = match route {
        Route::Key => key.map(|k| String::from_utf8_lossy(k).into_owned()),
        Route::Field(field) => object.get(field).and_then(|v| v.as_str()).map(str::to_string),
    }
    .ok_or_else(|| ("route", format!("no routing value ({route:?}) in the message")))?;
    let workload = routes.get(&routing).ok_or_else(|| ("route", format!("no workload {routing:?}")))?.clone();

    let field = |names: &[&str]| names.iter().find_map(|n| object.get(*n)).filter(|v| !v.is_null());
    let target_replicas = match field(&["targetReplicas", "target_replicas"]) {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|r| u32::try_from(r).ok())
                .ok_or(("invalid", format!("targetReplicas must be a non-negative integer, got {v}")))?,
        ),
    };
    let delta = match field(&["delta", "replicaDelta", "replica_delta"]) {
        None => None,
        Some(v) => Some(v.as_i64().ok_or(("invalid", format!("delta must be an integer, got {v}")))?),
    };
    let action = match field(&["action", "direction"]) {
        None => delta.map(|d| {
            if d > 0 {
                ScaleAction::ScaleOut
            } else if d < 0 {
                ScaleAction::ScaleIn
            } else {
                ScaleAction::Hold
            }
        }),
        Some(v) => {
            let text = v.as_str().ok_or(("invalid", format!("action must be a string, got {v}")))?;
            Some(match text.to_ascii_lowercase().replace('-', "_").as_str() {
                "scale_out" | "out" | "up" | "scale_up" => ScaleAction::ScaleOut,
                "scale_in" | "in" | "down" | "scale_down" => ScaleAction::ScaleIn,
                "hold" | "none" | "no_change" | "noop" => ScaleAction::Hold,
                other => return Err(("invalid", format!("unknown action {other:?}"))),
            })
        }
    };
    let urgency = match field(&["urgency", "urgencyLevel", "urgency_level"]) {
        None => None,
        Some(v) => Some(match (v.as_u64(), v.as_str().map(str::to_ascii_lowercase).as_deref()) {
            (Some(level), _) if level <= 3 => level as u8,
            (_, Some("low" | "routine")) => 0,
            (_, Some("normal" | "medium")) => 1,
            (_, Some("high")) => 2,
            (_, Some("critical" | "urgent")) => 3,
            _ => return Err(("invalid", format!("urgency must be 0-3 or low/medium/high/critical, got {v}"))),
        }),
    };
    let timestamp_ms = match field(&["timestampMs", "timestamp_ms", "ts", "timestamp"]) {
        Some(v) if v.is_u64() => v.as_u64().unwrap_or(now_ms),
        Some(v) => match v.as_str().map(|t| t.parse::<k8s_openapi::jiff::Timestamp>()) {
            Some(Ok(time)) => time.as_millisecond().max(0) as u64,
            _ => return Err(("invalid", format!("timestamp must be Unix ms or RFC 3339, got {v}"))),
        },
        None => record_ms.unwrap_or(now_ms),
    };
    let reason = field(&["reason", "message"]).and_then(|v| v.as_str()).unwrap_or_default().to_string();
    let known = [
        "targetReplicas",
        "target_replicas",
        "action",
        "direction",
        "urgency",
        "urgencyLevel",
        "urgency_level",
        "timestampMs",
        "timestamp_ms",
        "ts",
        "timestamp",
        "reason",
        "message",
    ];
    let attributes = object
        .iter()
        .filter(|(k, _)| !known.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string)))
        .collect();
    let signal = Signal {
        kind: "scale-signal".into(),
        source: format!("kafka:{topic}"),
        timestamp_ms,
        action,
        target_replicas,
        urgency,
        reason,
        attributes,
    };
    Ok((workload, signal))
}

/// What a Kafka client reports on the side: librdkafka tells of lost
/// connections and failed authentication through callbacks and log lines,
/// not through the call that failed. The last such problem is kept for the
/// error a failed lag measurement reports; the directive consumer, whose
/// problems have no fetch to fail, counts them (`kind` `auth` or `connect`)
/// and logs them once per burst.
pub struct ClientWatch {
    counted: Option<(Arc<Metrics>, parking_lot::Mutex<BurstLog>)>,
    /// Since the last success: the problem to report, and whether it is a
    /// failed authentication.
    last: parking_lot::Mutex<Option<(bool, String)>>,
}

/// `auth` for a failed authentication, `connect` for anything else.
fn problem_kind(error: &KafkaError) -> &'static str {
    use rdkafka::types::RDKafkaErrorCode::{Authentication, SaslAuthenticationFailed};
    match error.rdkafka_error_code() {
        Some(Authentication | SaslAuthenticationFailed) => "auth",
        _ => "connect",
    }
}

impl ClientWatch {
    fn quiet() -> ClientWatch {
        ClientWatch { counted: None, last: Default::default() }
    }

    fn counting(metrics: Arc<Metrics>) -> ClientWatch {
        let log = parking_lot::Mutex::new(BurstLog::new("kafka connection"));
        ClientWatch { counted: Some((metrics, log)), last: Default::default() }
    }

    /// Keeps `problem` as the last one, unless an authentication failure
    /// is already kept: that one explains the rest.
    fn note(&self, auth: bool, problem: String) {
        let mut last = self.last.lock();
        if auth || !last.as_ref().is_some_and(|(kept_auth, _)| *kept_auth) {
            *last = Some((auth, problem));
        }
    }
}

impl ClientContext for ClientWatch {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        use RDKafkaLogLevel::*;
        match level {
            Emerg | Alert | Critical | Error => {
                self.note(false, message.to_string());
                tracing::debug!(target: "librdkafka", facility, "{message}");
            }
            Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
            Notice | Info => tracing::info!(target: "librdkafka", facility, "{message}"),
            Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let problem = format!("{error}: {reason}");
        let kind = problem_kind(&error);
        if let Some((metrics, log)) = &self.counted {
            metrics.count_source_error("kafka", kind);
            log.lock().note(&problem);
        }
        self.note(kind == "auth", problem);
    }
}

impl ConsumerContext for ClientWatch {}

/// Consumes the directive topics until `shutdown`. `None` without topics.
pub fn directive_consumer(
    source: &Source,
    workloads: &[Workload],
    hub: Arc<SignalHub>,
    metrics: Arc<Metrics>,
) -> Result<Option<StartSource>, String> {
    if source.directives.is_empty() {
        return Ok(None);
    }
    let mut config = source.client_config()?;
    config.set("group.id", &source.group_id).set("enable.auto.commit", "true");
    // a group's first start skips old directives unless options say otherwise
    set_default(&mut config, "auto.offset.reset", "latest");
    set_default(&mut config, "session.timeout.ms", "10000");
    // directives are few and urgent: do not let a fetch idle on the broker
    // for librdkafka's default 500 ms when a message may arrive meanwhile
    set_default(&mut config, "fetch.wait.max.ms", "10");
    // after an outage, try the brokers again at least every second instead
    // of librdkafka's backoff of up to 10 s: directives are waiting
    set_default(&mut config, "reconnect.backoff.max.ms", "1000");
    let consumer: CloseAside<StreamConsumer<ClientWatch>> = CloseAside::new(
        config
            .create_with_context(ClientWatch::counting(metrics.clone()))
            .map_err(|e| format!("sources.kafka: cannot create the consumer: {e}"))?,
    );
    let topics: Vec<&str> = source.directives.iter().map(|d| d.topic.as_str()).collect();
    consumer.subscribe(&topics).map_err(|e| format!("sources.kafka.directives: {e}"))?;
    let routes = route_table(workloads);
    let by_topic: HashMap<String, Route> =
        source.directives.iter().map(|d| (d.topic.clone(), d.route.clone())).collect();
    Ok(Some(Box::new(move |clock: Arc<dyn Clock>, shutdown: CancellationToken| -> SourceTask {
        Box::pin(async move {
            let mut bad = BurstLog::new("kafka directive skipped");
            let mut broken = BurstLog::new("kafka consumer error");
            loop {
                let message = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    message = consumer.recv() => message,
                };
                let message = match message {
                    Ok(message) => message,
                    Err(error) => {
                        metrics.count_source_error("kafka", "consumer");
                        broken.note(&error.to_string());
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                let route = by_topic.get(message.topic()).cloned().unwrap_or_default();
                let record_ms = message.timestamp().to_millis().and_then(|t| u64::try_from(t).ok());
                match parse_directive(
                    message.topic(),
                    &route,
                    &routes,
                    message.key(),
                    message.payload(),
                    record_ms,
                    clock.now_ms(),
                ) {
                    Ok((workload, signal)) => {
                        metrics.mark_source_success("kafka");
                        if let Err(error) = hub.signal(&workload, signal) {
                            bad.note(&error.to_string());
                        }
                    }
                    Err((kind, why)) => {
                        metrics.count_source_error("kafka", kind);
                        bad.note(&format!("{}[{}]@{}: {why}", message.topic(), message.partition(), message.offset()));
                    }
                }
            }
        })
    })))
}

// ---- lag --------------------------------------------------------------------

pub struct LagReader {
    source: Source,
    /// A metadata/offsets client per consumer group (they never join it).
    clients: parking_lot::Mutex<HashMap<String, Arc<CloseAside<BaseConsumer<ClientWatch>>>>>,
}

impl LagReader {
    fn client(&self, group: &str) -> Result<Arc<CloseAside<BaseConsumer<ClientWatch>>>, String> {
        let mut clients = self.clients.lock();
        if let Some(client) = clients.get(group) {
            return Ok(client.clone());
        }
        let client: BaseConsumer<ClientWatch> = self
            .source
            .client_config()?
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create_with_context(ClientWatch::quiet())
            .map_err(|e| format!("cannot create a Kafka client for group {group}: {e}"))?;
        let client = Arc::new(CloseAside::new(client));
        clients.insert(group.to_string(), client.clone());
        Ok(client)
    }
}

/// Total lag of `group` on `topic` (blocking); a failure names the problem
/// the client reported on the side (refused connection, failed
/// authentication, …).
fn measure(client: &BaseConsumer<ClientWatch>, lag: &Lag, timeout: Duration) -> Result<f64, (&'static str, String)> {
    let result = lag_of(client, lag, timeout);
    // serve the events queued meanwhile (the client is never polled
    // otherwise): reported problems reach the context, and the queue does
    // not grow while the brokers are away
    let watch = client.context();
    while let Some(event) = client.poll(Duration::ZERO) {
        if let Err(error) = event
            && problem_kind(&error) == "auth"
        {
            watch.note(true, error.to_string());
        }
    }
    let mut last = watch.last.lock();
    match result {
        Ok(lag) => {
            // problems reported before a success are over
            *last = None;
            Ok(lag)
        }
        Err((kind, why)) => match last.as_ref() {
            Some((auth, problem)) if kind == "connect" => {
                let kind = if *auth { "auth" } else { kind };
                Err((kind, format!("{why}; the client reported: {problem}")))
            }
            _ => Err((kind, why)),
        },
    }
}

fn lag_of(client: &BaseConsumer<ClientWatch>, lag: &Lag, timeout: Duration) -> Result<f64, (&'static str, String)> {
    let kafka = |e: rdkafka::error::KafkaError| ("connect", e.to_string());
    let metadata = client.fetch_metadata(Some(&lag.topic), timeout).map_err(kafka)?;
    let topic = metadata
        .topics()
        .iter()
        .find(|t| t.name() == lag.topic)
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .ok_or_else(|| ("not_found", format!("no topic {}", lag.topic)))?;
    let mut wanted = TopicPartitionList::new();
    for partition in topic.partitions() {
        wanted.add_partition(&lag.topic, partition.id());
    }
    let committed = client.committed_offsets(wanted, timeout).map_err(kafka)?;
    let mut total = 0i64;
    for partition in topic.partitions() {
        let (low, high) = client.fetch_watermarks(&lag.topic, partition.id(), timeout).map_err(kafka)?;
        let offset = committed.find_partition(&lag.topic, partition.id()).map(|p| p.offset());
        total += match offset {
            Some(Offset::Offset(done)) => (high - done).max(0),
            _ => match lag.offset_reset {
                OffsetReset::Latest => 1,
                OffsetReset::Earliest => (high - low).max(0),
            },
        };
    }
    Ok(total as f64)
}

impl Fetcher for LagReader {
    type Spec = Lag;
    const SOURCE: &'static str = "kafka";

    fn fetch_all<'a>(&'a self, jobs: &'a [Job<Lag>]) -> BoxFuture<'a, Vec<Outcome>> {
        Box::pin(super::poll::fetch_each(jobs, move |job| self.lag_of(job)))
    }
}

impl LagReader {
    async fn lag_of(&self, job: &Job<Lag>) -> Outcome {
        {
            let client = match self.client(&job.spec.group) {
                Ok(client) => client,
                Err(why) => return Outcome::Failed("connect", why),
            };
            let (lag, timeout, name) = (job.spec.clone(), self.source.timeout, job.metric.clone());
            match tokio::task::spawn_blocking(move || measure(&client, &lag, timeout)).await {
                Ok(Ok(value)) => Outcome::Value(Metric {
                    name,
                    source: "kafka".into(),
                    value,
                    timestamp_ms: crate::decide::SystemClock.now_ms(),
                    pods: vec![],
                }),
                Ok(Err((kind, why))) => Outcome::Failed(kind, why),
                Err(join) => Outcome::Failed("connect", format!("lag task failed: {join}")),
            }
        }
    }
}

/// The poller for every workload metric that measures consumer lag.
pub fn lag_poller(
    source: &Source,
    workloads: &[Workload],
    hub: Arc<SignalHub>,
    metrics: Arc<Metrics>,
) -> Result<Option<Poller<LagReader>>, String> {
    let jobs: Vec<Job<Lag>> = super::poll::jobs(workloads, |_, source| match source {
        MetricSource::KafkaLag(lag) => Some(lag.clone()),
        _ => None,
    });
    if jobs.is_empty() {
        return Ok(None);
    }
    source.client_config()?;
    let fetcher = LagReader { source: source.clone(), clients: Default::default() };
    Ok(Some(Poller { fetcher, jobs, interval: source.lag_interval, hub, metrics }))
}

// ---- audit ------------------------------------------------------------------

/// Publishes applied decisions; `None` without `audit`.
pub fn audit_producer(source: &Source, metrics: Arc<Metrics>) -> Result<Option<AuditHook>, String> {
    let Some(audit) = &source.audit else { return Ok(None) };
    let mut config = source.client_config()?;
    set_default(&mut config, "linger.ms", "5");
    set_default(&mut config, "message.timeout.ms", "30000");
    let producer: FutureProducer =
        config.create().map_err(|e| format!("sources.kafka.audit: cannot create the producer: {e}"))?;
    let topic = audit.topic.clone();
    Ok(Some(Arc::new(move |record: &DecisionRecord| {
        let Ok(payload) = serde_json::to_vec(record) else { return };
        let delivery = producer.send_result(FutureRecord::to(&topic).key(&record.workload).payload(&payload));
        let metrics = metrics.clone();
        match delivery {
            Ok(delivery) => {
                tokio::spawn(async move {
                    if !matches!(delivery.await, Ok(Ok(_))) {
                        metrics.count_source_error("kafka", "audit");
                    }
                });
            }
            Err((error, _)) => {
                metrics.count_source_error("kafka", "audit");
                tracing::warn!(%error, "audit record not queued");
            }
        }
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_pass_through_and_the_sasl_password_comes_from_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("password");
        std::fs::write(&secret, "s3cret\n").unwrap();
        let ca = dir.path().join("ca.pem");
        let ca_key = rcgen::KeyPair::generate().unwrap();
        std::fs::write(&ca, rcgen::CertificateParams::default().self_signed(&ca_key).unwrap().pem()).unwrap();
        let source: Source = serde_json::from_value(serde_json::json!({
            "brokers": "kafka-0:9093,kafka-1:9093",
            "options": {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
                        "sasl.username": "scalegate", "ssl.ca.location": ca},
            "sasl_password_file": secret
        }))
        .unwrap();
        let config = source.client_config().unwrap();
        for (key, value) in [
            ("bootstrap.servers", "kafka-0:9093,kafka-1:9093"),
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "scalegate"),
            ("ssl.ca.location", ca.to_str().unwrap()),
            ("sasl.password", "s3cret"),
        ] {
            assert_eq!(config.get(key), Some(value), "{key}");
        }
        // librdkafka is built with TLS and SCRAM: the client can be made
        let client: Result<BaseConsumer, _> = config.create();
        assert!(client.is_ok(), "{:?}", client.err());
        std::fs::remove_file(&secret).unwrap();
        let error = source.client_config().unwrap_err();
        assert!(error.contains("sources.kafka.sasl_password_file: cannot read"), "{error}");
    }

    fn routes() -> HashMap<String, String> {
        [("rtc/socket", "rtc/socket"), ("socket", "rtc/socket")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn parse(payload: &str) -> Result<(String, Signal), (&'static str, String)> {
        parse_directive("rtc.control.scale", &Route::default(), &routes(), None, Some(payload.as_bytes()), Some(5), 9)
    }

    #[test]
    fn scale_signals_in_either_case_style_become_signals() {
        let (workload, signal) = parse(
            r#"{"target": "socket", "targetReplicas": 12, "urgency": "critical", "reason": "lag spike", "nodeId": "lb-1", "score": 0.9}"#,
        )
        .unwrap();
        assert_eq!(workload, "rtc/socket");
        assert_eq!((signal.target_replicas, signal.urgency), (Some(12), Some(3)));
        assert_eq!((signal.timestamp_ms, signal.reason.as_str()), (5, "lag spike"));
        assert!(signal.attributes.contains(&("nodeId".into(), "lb-1".into())));
        assert!(signal.attributes.contains(&("score".into(), "0.9".into())));
        let (_, signal) =
            parse(r#"{"target": "rtc/socket", "action": "SCALE-OUT", "urgency_level": 2, "ts": 77}"#).unwrap();
        assert_eq!((signal.action, signal.urgency, signal.timestamp_ms), (Some(ScaleAction::ScaleOut), Some(2), 77));
        let (_, signal) = parse(r#"{"target": "socket", "delta": -1}"#).unwrap();
        assert_eq!(signal.action, Some(ScaleAction::ScaleIn));
        assert!(signal.attributes.contains(&("delta".into(), "-1".into())));
    }

    #[test]
    fn malformed_messages_name_the_problem() {
        for (payload, kind, needle) in [
            ("not json", "parse", "not JSON"),
            ("[1, 2]", "parse", "not a JSON object"),
            (r#"{"targetReplicas": 3}"#, "route", "no routing value"),
            (r#"{"target": "checkout", "targetReplicas": 3}"#, "route", "no workload \"checkout\""),
            (r#"{"target": "socket", "targetReplicas": -3}"#, "invalid", "targetReplicas"),
            (r#"{"target": "socket", "action": "sideways"}"#, "invalid", "sideways"),
            (r#"{"target": "socket", "urgency": 7}"#, "invalid", "urgency"),
            (r#"{"target": "socket", "ts": "yesterday"}"#, "invalid", "timestamp"),
        ] {
            let (k, why) = parse(payload).unwrap_err();
            assert_eq!(k, kind, "{payload}: {why}");
            assert!(why.contains(needle), "{payload}: {why}");
        }
        let by_key = parse_directive("t", &Route::Key, &routes(), Some(b"socket"), Some(b"{}"), None, 1).unwrap();
        assert_eq!(by_key.0, "rtc/socket");
    }
}
