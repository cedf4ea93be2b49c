//! Redis heartbeats: nodes (pods) that write a hash per node — e.g.
//! `HSET heartbeat:socket-3 cpu 0.71 connections 812 mps 1450 latency_ms 38
//! kafka_lag 120 ts 1795341600000`, usually with an `EXPIRE` — as the load
//! balancer of the real-time platform does. Each declared metric reads one
//! field of every hash matching a key pattern and becomes per-pod samples
//! (the node name is the part of the key the `*` matched) plus their sum.
//! A node whose `ts` field (Unix ms) is older than `ttl` is dropped; keys
//! that Redis already expired are simply gone. One `SCAN` and one pipelined
//! `HGETALL` per pattern per poll serve every metric using that pattern.

use super::poll::{Fetcher, Outcome, Poller};
use super::source::{Context, Endpoint, EndpointDefaults, FieldError, Job, Nothing, Source, SourceError, Started};
use crate::clock::Clock;
use crate::snapshot::{Metric, PodSample};
use futures::future::BoxFuture;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

pub struct Heartbeats;

const ENDPOINT: EndpointDefaults = EndpointDefaults {
    url_key: "url",
    // checked by the Redis client, which knows its URL forms
    schemes: &[],
    interval: Duration::from_secs(2),
    timeout: Duration::from_secs(1),
};

impl Source for Heartbeats {
    const NAME: &'static str = "redis";
    const METRIC: Option<&'static str> = Some("redis");
    const LABEL: &'static str = "redis";
    const TITLE: &'static str = "Redis";
    type Settings = Endpoint;
    type Metric = Heartbeat;

    /// `sources.redis`: `url` is `redis://[user:password@]host:port/db` (or
    /// `rediss://` for TLS).
    fn settings(value: serde_json::Value) -> Result<Endpoint, FieldError> {
        let (endpoint, Nothing {}) = Endpoint::split(value, &ENDPOINT)?;
        redis::Client::open(endpoint.url.as_str()).map_err(|e| FieldError::new("url", e.to_string()))?;
        Ok(endpoint)
    }

    fn validate_metric(heartbeat: &Heartbeat) -> Result<(), FieldError> {
        if heartbeat.pattern.matches('*').count() != 1 {
            return Err(FieldError::new(
                "pattern",
                format!("{:?} must contain exactly one * (the node name)", heartbeat.pattern),
            ));
        }
        if heartbeat.field.is_empty() {
            return Err(FieldError::new("field", "must not be empty"));
        }
        Ok(())
    }

    fn refresh(endpoint: &Endpoint) -> Option<Duration> {
        Some(endpoint.interval)
    }

    fn start(endpoint: &Endpoint, jobs: Vec<Job<&Heartbeat>>, context: &Context) -> Result<Started, FieldError> {
        if jobs.is_empty() {
            return Ok(Started::default());
        }
        let jobs: Vec<Job<Heartbeat>> = jobs
            .into_iter()
            .map(|job| {
                let spec = job.spec.render(&job.target);
                job.with(spec)
            })
            .collect();
        let client = redis::Client::open(endpoint.url.as_str()).map_err(|e| FieldError::new("url", e.to_string()))?;
        let fetcher = Redis { endpoint: endpoint.clone(), client, connection: tokio::sync::Mutex::new(None) };
        let poller = Poller::new(fetcher, jobs, endpoint.interval, context);
        Ok(Started { tasks: vec![poller.into_task(context.shutdown.clone())], sink: None })
    }
}

/// `workloads[].metrics[].redis`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// Key pattern with one `*` standing for the node name, e.g. `heartbeat:{{name}}-*`.
    pub pattern: String,
    /// The hash field to read, e.g. `connections`.
    pub field: String,
    /// Nodes whose `ts` is older than this are dropped (default 15 s).
    #[serde(default = "default_ttl", with = "humantime_serde")]
    pub ttl: Duration,
    /// The hash field holding the heartbeat's Unix time in ms (default `ts`).
    #[serde(default = "default_timestamp_field")]
    pub timestamp_field: String,
}

fn default_ttl() -> Duration {
    Duration::from_secs(15)
}

fn default_timestamp_field() -> String {
    "ts".into()
}

impl Heartbeat {
    /// With the target's `{{namespace}}` and `{{name}}` filled in.
    fn render(&self, target: &crate::cluster::Target) -> Heartbeat {
        let pattern = self.pattern.replace("{{namespace}}", &target.namespace).replace("{{name}}", &target.name);
        Heartbeat { pattern, ..self.clone() }
    }
}

/// One `SCAN` and pipelined `HGETALL` per pattern per poll.
pub struct Redis {
    endpoint: Endpoint,
    client: redis::Client,
    connection: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
}

/// Nodes by name: their hash fields.
type Nodes = BTreeMap<String, HashMap<String, String>>;

impl Fetcher for Redis {
    type Spec = Heartbeat;
    const SOURCE: &'static str = "redis";

    fn fetch_all<'a>(&'a self, jobs: &'a [Job<Heartbeat>], clock: &'a dyn Clock) -> BoxFuture<'a, Vec<Outcome>> {
        Box::pin(async move {
            let now_ms = clock.now_ms();
            let mut read: HashMap<&str, Result<Nodes, SourceError>> = HashMap::new();
            for job in jobs {
                if !read.contains_key(job.spec.pattern.as_str()) {
                    let nodes = tokio::time::timeout(self.endpoint.timeout, self.nodes(&job.spec.pattern))
                        .await
                        .unwrap_or_else(|_| {
                            Err(SourceError::Timeout(format!("no answer within {:?}", self.endpoint.timeout)))
                        });
                    if nodes.is_err() {
                        // reconnect at the next attempt
                        *self.connection.lock().await = None;
                    }
                    read.insert(&job.spec.pattern, nodes);
                }
            }
            jobs.iter()
                .map(|job| match &read[job.spec.pattern.as_str()] {
                    Ok(nodes) => samples(&job.metric, &job.spec, nodes, now_ms),
                    Err(error) => Outcome::Failed(error.clone()),
                })
                .collect()
        })
    }
}

impl Redis {
    async fn nodes(&self, pattern: &str) -> Result<Nodes, SourceError> {
        let connect = |e: redis::RedisError| SourceError::Connect(e.to_string());
        let mut slot = self.connection.lock().await;
        if slot.is_none() {
            let connection = self.client.get_multiplexed_async_connection().await.map_err(connect)?;
            *slot = Some(connection);
        }
        let connection = slot.as_mut().expect("connected above");
        let mut keys: Vec<String> = Vec::new();
        {
            let mut iter: redis::AsyncIter<String> =
                redis::AsyncCommands::scan_match(connection, pattern).await.map_err(connect)?;
            while let Some(key) = futures::StreamExt::next(&mut iter).await {
                keys.push(key.map_err(connect)?);
            }
        }
        keys.sort();
        keys.dedup();
        let mut pipe = redis::pipe();
        for key in &keys {
            pipe.hgetall(key);
        }
        let hashes: Vec<HashMap<String, String>> = pipe.query_async(connection).await.map_err(connect)?;
        let (prefix, suffix) = pattern.split_once('*').unwrap_or((pattern, ""));
        Ok(keys
            .into_iter()
            .zip(hashes)
            .filter_map(|(key, hash)| {
                let node = key.strip_prefix(prefix)?.strip_suffix(suffix)?.to_string();
                Some((node, hash))
            })
            .collect())
    }
}

/// One field of every live node.
fn samples(name: &str, heartbeat: &Heartbeat, nodes: &Nodes, now_ms: u64) -> Outcome {
    let ttl = heartbeat.ttl.as_millis() as u64;
    let mut pods = Vec::new();
    let mut skipped = Vec::new();
    for (node, hash) in nodes {
        let Some(ts) = hash.get(&heartbeat.timestamp_field).and_then(|t| t.trim().parse::<u64>().ok()) else {
            skipped.push(format!("{node}: no {} field", heartbeat.timestamp_field));
            continue;
        };
        if now_ms.saturating_sub(ts) > ttl {
            continue; // a node that stopped beating
        }
        match hash.get(&heartbeat.field).map(|v| v.trim().parse::<f64>()) {
            Some(Ok(value)) if value.is_finite() => {
                pods.push(PodSample { pod: node.clone(), value, timestamp_ms: ts, window_ms: 0 })
            }
            Some(_) => skipped.push(format!("{node}: {} is not a finite number", heartbeat.field)),
            None => skipped.push(format!("{node}: no {} field", heartbeat.field)),
        }
    }
    if pods.is_empty() {
        let why = if skipped.is_empty() { "no live node".to_string() } else { skipped.join("; ") };
        return Outcome::Missing(SourceError::Empty(why));
    }
    if !skipped.is_empty() {
        tracing::debug!(metric = name, skipped = %skipped.join("; "), "heartbeats skipped");
    }
    let newest = pods.iter().map(|p| p.timestamp_ms).max().unwrap_or(now_ms);
    let value = pods.iter().map(|p| p.value).sum();
    Outcome::Value(Metric { name: name.into(), source: "redis".into(), value, timestamp_ms: newest, pods })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heartbeat() -> Heartbeat {
        Heartbeat {
            pattern: "hb:*".into(),
            field: "connections".into(),
            ttl: Duration::from_secs(10),
            timestamp_field: "ts".into(),
        }
    }

    fn node(fields: &[(&str, &str)]) -> HashMap<String, String> {
        fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn live_nodes_become_pod_samples_and_stale_ones_are_dropped() {
        let nodes: Nodes = [
            ("socket-0".to_string(), node(&[("connections", "800"), ("ts", "100000")])),
            ("socket-1".to_string(), node(&[("connections", "400"), ("ts", "99000")])),
            ("socket-2".to_string(), node(&[("connections", "999"), ("ts", "80000")])), // 20 s old
            ("socket-3".to_string(), node(&[("connections", "NaN"), ("ts", "100000")])),
            ("socket-4".to_string(), node(&[("cpu", "0.5"), ("ts", "100000")])),
        ]
        .into_iter()
        .collect();
        let Outcome::Value(metric) = samples("connections", &heartbeat(), &nodes, 100_500) else { panic!() };
        assert_eq!(metric.value, 1200.0);
        assert_eq!(metric.pods.iter().map(|p| p.pod.as_str()).collect::<Vec<_>>(), ["socket-0", "socket-1"]);
        assert_eq!(metric.timestamp_ms, 100_000);
    }

    #[test]
    fn no_live_node_is_missing_not_zero() {
        let nodes: Nodes = [("a".to_string(), node(&[("connections", "1"), ("ts", "0")]))].into_iter().collect();
        assert!(matches!(samples("c", &heartbeat(), &nodes, 100_000), Outcome::Missing(SourceError::Empty(_))));
        let bad = Heartbeat { pattern: "hb:*:*".into(), ..heartbeat() };
        assert!(Heartbeats::validate_metric(&bad).unwrap_err().message.contains("exactly one *"));
    }
}
