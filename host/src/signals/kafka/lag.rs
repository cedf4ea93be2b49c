//! Consumer-group lag as a workload metric: per partition, high watermark −
//! committed offset, summed. A partition the group never committed counts
//! as KEDA counts it: 1 with `offset_reset: latest` (the default), the whole
//! retained log (high − low watermark) with `earliest`. Measured on the
//! blocking pool with a metadata/offsets client per group (it never joins
//! the group); a failure names what the client reported on the side.

use super::client::{ClientWatch, CloseAside, Lag, OffsetReset, Settings, problem_kind};
use crate::clock::Clock;
use crate::signals::poll::{self, Fetcher, Outcome, Poller};
use crate::signals::source::{Context, Job, SourceError, SourceTask};
use crate::snapshot::Metric;
use futures::future::BoxFuture;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Measures lag with one metadata/offsets client per consumer group.
pub struct LagReader {
    settings: Settings,
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
            .settings
            .client_config()
            .map_err(|e| e.to_string())?
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
fn measure(client: &BaseConsumer<ClientWatch>, lag: &Lag, timeout: Duration) -> Result<f64, SourceError> {
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
        Err(SourceError::Connect(why)) => match last.as_ref() {
            Some((true, problem)) => Err(SourceError::Auth(format!("{why}; the client reported: {problem}"))),
            Some((false, problem)) => Err(SourceError::Connect(format!("{why}; the client reported: {problem}"))),
            None => Err(SourceError::Connect(why)),
        },
        Err(other) => Err(other),
    }
}

fn lag_of(client: &BaseConsumer<ClientWatch>, lag: &Lag, timeout: Duration) -> Result<f64, SourceError> {
    let kafka = |e: rdkafka::error::KafkaError| SourceError::Connect(e.to_string());
    let metadata = client.fetch_metadata(Some(&lag.topic), timeout).map_err(kafka)?;
    let topic = metadata
        .topics()
        .iter()
        .find(|t| t.name() == lag.topic)
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .ok_or_else(|| SourceError::NotFound(format!("no topic {}", lag.topic)))?;
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

    fn fetch_all<'a>(&'a self, jobs: &'a [Job<Lag>], clock: &'a dyn Clock) -> BoxFuture<'a, Vec<Outcome>> {
        Box::pin(poll::fetch_each(jobs, move |job| self.lag_of(job, clock)))
    }
}

impl LagReader {
    async fn lag_of(&self, job: &Job<Lag>, clock: &dyn Clock) -> Outcome {
        let client = match self.client(&job.spec.group) {
            Ok(client) => client,
            Err(why) => return Outcome::Failed(SourceError::Connect(why)),
        };
        let (lag, timeout, name) = (job.spec.clone(), self.settings.timeout, job.metric.clone());
        match tokio::task::spawn_blocking(move || measure(&client, &lag, timeout)).await {
            Ok(Ok(value)) => Outcome::Value(Metric {
                name,
                source: "kafka".into(),
                value,
                timestamp_ms: clock.now_ms(),
                pods: vec![],
            }),
            Ok(Err(error)) => Outcome::Failed(error),
            Err(join) => Outcome::Failed(SourceError::Connect(format!("lag task failed: {join}"))),
        }
    }
}

/// The polling task for every workload metric that measures consumer lag.
pub fn poller(settings: &Settings, jobs: Vec<Job<Lag>>, context: &Context) -> SourceTask {
    let reader = LagReader { settings: settings.clone(), clients: Default::default() };
    Poller::new(reader, jobs, settings.lag_interval, context).into_task(context.shutdown.clone())
}
