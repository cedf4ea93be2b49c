//! Directives: a consumer of topics carrying `ScaleSignal` JSON messages,
//! e.g. `rtc.control.scale`. Each message is routed to a workload — by the
//! message key or by a JSON field, matched against the workload's name, its
//! target's `namespace/name` and its target's bare name — becomes a signal
//! in its snapshot and triggers an evaluation at once. Malformed messages
//! are counted (`scalegate_source_errors_total{source="kafka"}`), logged
//! once per burst and skipped.
//!
//! **Delivery.** Only a replica that may write consumes: when its term is
//! ready it assigns itself every partition of the directive topics (the
//! Lease already makes it the only consumer, so it does not wait for a
//! consumer-group rebalance, nor for a killed predecessor's group session to
//! expire) and it stops when it stops leading; no directive goes to a
//! standby. The group (`group_id`) holds the committed offsets. A partition
//! the group never committed starts at its end (`auto.offset.reset:
//! latest`, the default) or its beginning (`earliest`), and that start is
//! committed at once, so a successor starts there too. Offsets are committed only for directives
//! whose decision has been written (or that a newer directive for the same
//! workload superseded): each signal carries a receipt, and per partition
//! the committed offset is the oldest directive not yet settled. After a
//! failover the new leader reads from there; directives already acted on
//! are recognised by the offsets the workload's decision state keeps. That
//! is at-least-once delivery with exactly-once effect per workload: the
//! newest directive of each workload wins.

use super::client::{ClientWatch, CloseAside, Route, Settings, set_default};
use crate::leadership::Leadership;
use crate::signals::delivery::{Origin, Receipt};
use crate::signals::hub::SignalHub;
use crate::signals::source::{BurstLog, Context, FieldError, SourceError, SourceTask};
use crate::snapshot::{ScaleAction, Signal};
use crate::telemetry::Metrics;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A `ScaleSignal` message as a signal for one workload: (workload, signal)
/// or (error kind, why).
pub fn parse_directive(
    topic: &str,
    route: &Route,
    resolve: impl Fn(&str) -> Option<String>,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    record_ms: Option<u64>,
    now_ms: u64,
) -> Result<(String, Signal), SourceError> {
    let payload = payload.ok_or_else(|| SourceError::Parse("empty message".to_string()))?;
    let message: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| SourceError::Parse(format!("not JSON: {e}")))?;
    let object = message.as_object().ok_or_else(|| SourceError::Parse("not a JSON object".to_string()))?;
    let routing = match route {
        Route::Key => key.map(|k| String::from_utf8_lossy(k).into_owned()),
        Route::Field(field) => object.get(field).and_then(|v| v.as_str()).map(str::to_string),
    }
    .ok_or_else(|| SourceError::Route(format!("no routing value ({route:?}) in the message")))?;
    let workload = resolve(&routing).ok_or_else(|| SourceError::Route(format!("no workload {routing:?}")))?;

    let field = |names: &[&str]| names.iter().find_map(|n| object.get(*n)).filter(|v| !v.is_null());
    let target_replicas =
        match field(&["targetReplicas", "target_replicas"]) {
            None => None,
            Some(v) => Some(v.as_u64().and_then(|r| u32::try_from(r).ok()).ok_or_else(|| {
                SourceError::Invalid(format!("targetReplicas must be a non-negative integer, got {v}"))
            })?),
        };
    let delta = match field(&["delta", "replicaDelta", "replica_delta"]) {
        None => None,
        Some(v) => Some(v.as_i64().ok_or_else(|| SourceError::Invalid(format!("delta must be an integer, got {v}")))?),
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
            let text = v.as_str().ok_or_else(|| SourceError::Invalid(format!("action must be a string, got {v}")))?;
            Some(match text.to_ascii_lowercase().replace('-', "_").as_str() {
                "scale_out" | "out" | "up" | "scale_up" => ScaleAction::ScaleOut,
                "scale_in" | "in" | "down" | "scale_down" => ScaleAction::ScaleIn,
                "hold" | "none" | "no_change" | "noop" => ScaleAction::Hold,
                other => return Err(SourceError::Invalid(format!("unknown action {other:?}"))),
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
            _ => {
                return Err(SourceError::Invalid(format!("urgency must be 0-3 or low/medium/high/critical, got {v}")));
            }
        }),
    };
    let timestamp_ms = match field(&["timestampMs", "timestamp_ms", "ts", "timestamp"]) {
        Some(v) if v.is_u64() => v.as_u64().unwrap_or(now_ms),
        Some(v) => match v.as_str().map(|t| t.parse::<k8s_openapi::jiff::Timestamp>()) {
            Some(Ok(time)) => time.as_millisecond().max(0) as u64,
            _ => return Err(SourceError::Invalid(format!("timestamp must be Unix ms or RFC 3339, got {v}"))),
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

/// The directive consumer's task: consumes while this replica may write,
/// until the context's shutdown.
pub fn consumer(settings: &Settings, context: &Context) -> Result<SourceTask, FieldError> {
    let mut config = settings.client_config()?;
    config
        .set("group.id", &settings.group_id)
        // stored offsets only (see the module doc), committed every second
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false");
    set_default(&mut config, "auto.commit.interval.ms", "1000");
    // a group's first start skips old directives unless options say otherwise
    set_default(&mut config, "auto.offset.reset", "latest");
    set_default(&mut config, "session.timeout.ms", "10000");
    // directives are few and urgent: a fetch may idle on the broker only
    // `fetch_wait`, not librdkafka's default 500 ms
    set_default(&mut config, "fetch.wait.max.ms", &settings.fetch_wait.as_millis().to_string());
    // after an outage, try the brokers again at least every second instead
    // of librdkafka's backoff of up to 10 s: directives are waiting
    set_default(&mut config, "reconnect.backoff.max.ms", "1000");
    // a bad option fails start-up, not the first term
    let probe: StreamConsumer<ClientWatch> = config
        .create_with_context(ClientWatch::quiet())
        .map_err(|e| FieldError::new("", format!("cannot create the consumer: {e}")))?;
    drop(CloseAside::new(probe));
    let start_at_end = config.get("auto.offset.reset").is_some_and(|reset| reset == "latest" || reset == "end");
    let directives = Directives {
        config,
        topics: settings.directives.iter().map(|d| d.topic.clone()).collect(),
        routes: settings.directives.iter().map(|d| (d.topic.clone(), d.route.clone())).collect(),
        hub: context.hub.clone(),
        metrics: context.metrics.clone(),
        clock: context.clock.clone(),
        leadership: context.leadership.clone(),
        start_at_end,
        timeout: settings.timeout,
    };
    let shutdown = context.shutdown.clone();
    Ok(Box::pin(async move { directives.run(shutdown).await }))
}

struct Directives {
    config: ClientConfig,
    topics: Vec<String>,
    routes: HashMap<String, Route>,
    hub: Arc<SignalHub>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn crate::clock::Clock>,
    leadership: Arc<Leadership>,
    /// A partition the group never committed starts at its end (`latest`).
    start_at_end: bool,
    timeout: Duration,
}

/// A directive whose decision is written: (topic, partition, offset).
type Settled = (String, i32, i64);

/// Per partition: directives received and not yet settled, and the next
/// offset after the last one received.
#[derive(Default)]
struct Progress {
    partitions: HashMap<(String, i32), (BTreeSet<i64>, i64)>,
}

impl Progress {
    fn received(&mut self, topic: &str, partition: i32, offset: i64) {
        let (pending, next) = self.partitions.entry((topic.to_string(), partition)).or_default();
        pending.insert(offset);
        *next = (*next).max(offset + 1);
    }

    /// Settles a directive; returns the partition's new commit point (the
    /// oldest directive still pending, else the next offset to read).
    fn settled(&mut self, topic: &str, partition: i32, offset: i64) -> Option<i64> {
        let (pending, next) = self.partitions.get_mut(&(topic.to_string(), partition))?;
        pending.remove(&offset);
        Some(pending.first().copied().unwrap_or(*next))
    }
}

impl Directives {
    async fn run(self, shutdown: CancellationToken) {
        loop {
            // wait for a term that may write
            while !self.leadership.may_write() {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
            if !self.lead(&shutdown).await {
                return;
            }
        }
    }

    /// Consumes while this replica may write. Returns false at shutdown.
    async fn lead(&self, shutdown: &CancellationToken) -> bool {
        let consumer: CloseAside<StreamConsumer<ClientWatch>> =
            match self.config.create_with_context(ClientWatch::counting(self.metrics.clone())) {
                Ok(consumer) => CloseAside::new(consumer),
                Err(error) => {
                    tracing::error!(%error, "cannot create the directive consumer");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    return !shutdown.is_cancelled();
                }
            };
        let mut assigned = TopicPartitionList::new();
        // the first assignment, then new partitions every 30 s
        let mut refresh = tokio::time::interval(Duration::from_secs(30));
        refresh.tick().await;
        match tokio::task::block_in_place(|| self.assign_new(&consumer, &mut assigned)) {
            Ok(()) => {
                tracing::info!(topics = ?self.topics, partitions = assigned.count(), "consuming directives (this replica leads)")
            }
            Err(error) => {
                self.metrics.count_source_error("kafka", "connect");
                tracing::error!(%error, "cannot assign the directive partitions; trying again");
                tokio::select! {
                    _ = shutdown.cancelled() => return false,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => return true,
                }
            }
        }
        let (settled, mut settlements) = mpsc::unbounded_channel::<Settled>();
        let mut progress = Progress::default();
        let mut bad = BurstLog::new("kafka directive skipped");
        let mut broken = BurstLog::new("kafka consumer error");
        let mut check = tokio::time::interval(Duration::from_millis(100));
        // leaving the group (on drop, aside) commits what was stored
        let keep_going = loop {
            tokio::select! {
                _ = shutdown.cancelled() => break false,
                _ = check.tick() => {
                    if !self.leadership.may_write() {
                        tracing::info!("not leading any more: the directive consumer stops");
                        break true;
                    }
                }
                _ = refresh.tick() => {
                    if let Err(error) = tokio::task::block_in_place(|| self.assign_new(&consumer, &mut assigned)) {
                        tracing::warn!(%error, "cannot look for new directive partitions");
                    }
                }
                Some((topic, partition, offset)) = settlements.recv() => {
                    if let Some(commit) = progress.settled(&topic, partition, offset) {
                        store(&consumer, &topic, partition, commit);
                    }
                }
                message = consumer.recv() => match message {
                    Ok(message) => self.take(&message, &mut progress, &settled, &consumer, &mut bad),
                    Err(error) => {
                        self.metrics.count_source_error("kafka", "consumer");
                        broken.note(&error.to_string());
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                },
            }
        };
        // settle what is already known before the consumer leaves
        while let Ok((topic, partition, offset)) = settlements.try_recv() {
            if let Some(commit) = progress.settled(&topic, partition, offset) {
                store(&consumer, &topic, partition, commit);
            }
        }
        keep_going
    }

    /// Assigns the partitions of the directive topics not assigned yet, each
    /// at the group's committed offset, or — never committed — at its end
    /// (`latest`) or beginning, committing that start at once. Blocking.
    fn assign_new(
        &self,
        consumer: &StreamConsumer<ClientWatch>,
        assigned: &mut TopicPartitionList,
    ) -> Result<(), KafkaError> {
        let mut wanted = TopicPartitionList::new();
        for topic in &self.topics {
            let metadata = consumer.fetch_metadata(Some(topic), self.timeout)?;
            for partition in metadata.topics().iter().filter(|t| t.name() == topic).flat_map(|t| t.partitions()) {
                if assigned.find_partition(topic, partition.id()).is_none() {
                    wanted.add_partition(topic, partition.id());
                }
            }
        }
        if wanted.count() == 0 {
            return Ok(());
        }
        let committed = consumer.committed_offsets(wanted.clone(), self.timeout)?;
        let (mut start, mut first) = (TopicPartitionList::new(), TopicPartitionList::new());
        for element in wanted.elements() {
            let (topic, partition) = (element.topic(), element.partition());
            let offset = match committed.find_partition(topic, partition).map(|e| e.offset()) {
                Some(Offset::Offset(offset)) => offset,
                _ => {
                    let (low, high) = consumer.fetch_watermarks(topic, partition, self.timeout)?;
                    let offset = if self.start_at_end { high } else { low };
                    first.add_partition_offset(topic, partition, Offset::Offset(offset))?;
                    offset
                }
            };
            start.add_partition_offset(topic, partition, Offset::Offset(offset))?;
        }
        if first.count() > 0 {
            consumer.commit(&first, CommitMode::Sync)?;
            tracing::info!(
                partitions = first.count(),
                "directive partitions the group never committed start where they are now"
            );
        }
        consumer.incremental_assign(&start)?;
        for element in start.elements() {
            assigned.add_partition_offset(element.topic(), element.partition(), element.offset())?;
        }
        Ok(())
    }

    /// One message: routed to its workload with a receipt, or skipped.
    fn take(
        &self,
        message: &BorrowedMessage<'_>,
        progress: &mut Progress,
        settled: &mpsc::UnboundedSender<Settled>,
        consumer: &StreamConsumer<ClientWatch>,
        bad: &mut BurstLog,
    ) {
        let (topic, partition, offset) = (message.topic().to_string(), message.partition(), message.offset());
        progress.received(&topic, partition, offset);
        let route = self.routes.get(&topic).cloned().unwrap_or_default();
        let record_ms = message.timestamp().to_millis().and_then(|t| u64::try_from(t).ok());
        let parsed = parse_directive(
            &topic,
            &route,
            |name| self.hub.resolve(name),
            message.key(),
            message.payload(),
            record_ms,
            self.clock.now_ms(),
        );
        let skip = |progress: &mut Progress| {
            if let Some(commit) = progress.settled(&topic, partition, offset) {
                store(consumer, &topic, partition, commit);
            }
        };
        match parsed {
            Ok((workload, signal)) => {
                self.metrics.mark_source_success("kafka");
                let origin = Origin { stream: format!("kafka:{topic}/{partition}"), offset };
                let (sender, done) = (settled.clone(), (topic.clone(), partition, offset));
                let receipt = Receipt::new(Some(origin), move |_| {
                    let _ = sender.send(done);
                });
                if let Err((error, _unsettled)) = self.hub.signal(&workload, signal, Some(receipt)) {
                    bad.note(&error.to_string());
                    skip(progress);
                }
            }
            Err(error) => {
                self.metrics.count_source_error("kafka", error.kind());
                bad.note(&format!("{topic}[{partition}]@{offset}: {error}"));
                skip(progress);
            }
        }
    }
}

/// Marks `commit` (the next offset to read) as the partition's offset to
/// commit; librdkafka commits stored offsets every `auto.commit.interval.ms`
/// and when the consumer is closed.
fn store(consumer: &StreamConsumer<ClientWatch>, topic: &str, partition: i32, commit: i64) {
    let mut list = TopicPartitionList::new();
    if list.add_partition_offset(topic, partition, Offset::Offset(commit)).is_ok()
        && let Err(error) = consumer.store_offsets(&list)
    {
        tracing::debug!(%error, topic, partition, commit, "offset not stored");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commit_point_is_the_oldest_directive_not_yet_settled() {
        let mut progress = Progress::default();
        for offset in [5, 6, 7] {
            progress.received("t", 0, offset);
        }
        progress.received("t", 1, 40);
        assert_eq!(progress.settled("t", 0, 6), Some(5), "5 is still pending");
        assert_eq!(progress.settled("t", 0, 5), Some(7));
        assert_eq!(progress.settled("t", 0, 7), Some(8), "all settled: the next offset to read");
        assert_eq!(progress.settled("t", 1, 40), Some(41));
        assert_eq!(progress.settled("t", 2, 1), None, "a partition never received");
    }

    fn routes() -> HashMap<String, String> {
        [("rtc/socket", "rtc/socket"), ("socket", "rtc/socket")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn parse(payload: &str) -> Result<(String, Signal), SourceError> {
        let routes = routes();
        let resolve = |name: &str| routes.get(name).cloned();
        parse_directive("rtc.control.scale", &Route::default(), resolve, None, Some(payload.as_bytes()), Some(5), 9)
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
            let error = parse(payload).unwrap_err();
            assert_eq!(error.kind(), kind, "{payload}: {error}");
            assert!(error.to_string().contains(needle), "{payload}: {error}");
        }
        let routes = routes();
        let resolve = |name: &str| routes.get(name).cloned();
        let by_key = parse_directive("t", &Route::Key, resolve, Some(b"socket"), Some(b"{}"), None, 1).unwrap();
        assert_eq!(by_key.0, "rtc/socket");
    }
}
