//! NATS JetStream backlog: `num_pending + num_ack_pending` of a stream
//! consumer — messages not yet delivered plus delivered but not yet
//! acknowledged — read from the server's monitoring endpoint (`/jsz`, the
//! `-m` port). One request per poll serves every workload.

use super::SignalHub;
use super::poll::{Fetcher, Job, Outcome, Poller};
use crate::config::{MetricSource, Workload};
use crate::snapshot::Metric;
use crate::telemetry::Metrics;
use futures::future::BoxFuture;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// `sources.nats`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The monitoring endpoint, e.g. `http://nats.messaging:8222`.
    pub monitor_url: String,
    /// How often the backlog is read (default 5 s).
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Deadline of one request (default 2 s).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_interval() -> Duration {
    Duration::from_secs(5)
}

fn default_timeout() -> Duration {
    Duration::from_secs(2)
}

impl Source {
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        super::check_endpoint("monitor_url", &self.monitor_url, self.interval)?;
        Ok(())
    }
}

/// `workloads[].metrics[].nats`: the consumer whose backlog to read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consumer {
    pub stream: String,
    pub consumer: String,
    /// Only this account (default: any account holding the stream).
    pub account: Option<String>,
}

impl Consumer {
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        for (field, value) in [("stream", &self.stream), ("consumer", &self.consumer)] {
            if value.is_empty() {
                return Err((field, "must not be empty".into()));
            }
        }
        Ok(())
    }
}

pub struct Nats {
    source: Source,
    client: reqwest::Client,
}

impl Fetcher for Nats {
    type Spec = Consumer;
    const SOURCE: &'static str = "nats";

    fn fetch_all<'a>(&'a self, jobs: &'a [Job<Consumer>]) -> BoxFuture<'a, Vec<Outcome>> {
        Box::pin(async move {
            match self.jsz().await {
                Ok((now_ms, jsz)) => jobs.iter().map(|job| backlog(&job.metric, &job.spec, &jsz, now_ms)).collect(),
                Err((kind, why)) => jobs.iter().map(|_| Outcome::Failed(kind, why.clone())).collect(),
            }
        })
    }
}

impl Nats {
    async fn jsz(&self) -> Result<(u64, serde_json::Value), (&'static str, String)> {
        let url =
            format!("{}/jsz?accounts=true&streams=true&consumers=true", self.source.monitor_url.trim_end_matches('/'));
        let response = self.client.get(url).send().await.map_err(|e| {
            if e.is_timeout() {
                ("timeout", format!("no answer within {:?}", self.source.timeout))
            } else {
                ("connect", e.to_string())
            }
        })?;
        if !response.status().is_success() {
            return Err(("http", format!("HTTP {}", response.status())));
        }
        let body: serde_json::Value = response.json().await.map_err(|e| ("parse", format!("/jsz is not JSON: {e}")))?;
        let now_ms = crate::decide::SystemClock.now_ms();
        Ok((now_ms, body))
    }
}

use crate::decide::Clock as _;

/// The consumer's backlog in a `/jsz` document.
fn backlog(name: &str, wanted: &Consumer, jsz: &serde_json::Value, now_ms: u64) -> Outcome {
    let accounts = jsz["account_details"].as_array().map(Vec::as_slice).unwrap_or_default();
    for account in accounts {
        if wanted.account.as_deref().is_some_and(|a| account["name"] != a) {
            continue;
        }
        let streams = account["stream_detail"].as_array().map(Vec::as_slice).unwrap_or_default();
        let Some(stream) = streams.iter().find(|s| s["name"] == wanted.stream.as_str()) else { continue };
        let consumers = stream["consumer_detail"].as_array().map(Vec::as_slice).unwrap_or_default();
        let Some(consumer) = consumers.iter().find(|c| c["name"] == wanted.consumer.as_str()) else {
            return Outcome::Failed(
                "not_found",
                format!("stream {} has no consumer {}", wanted.stream, wanted.consumer),
            );
        };
        let (Some(pending), Some(ack_pending)) =
            (consumer["num_pending"].as_u64(), consumer["num_ack_pending"].as_u64())
        else {
            return Outcome::Failed(
                "parse",
                format!("consumer {} without num_pending/num_ack_pending", wanted.consumer),
            );
        };
        return Outcome::Value(Metric {
            name: name.into(),
            source: "nats".into(),
            value: (pending + ack_pending) as f64,
            timestamp_ms: now_ms,
            pods: vec![],
        });
    }
    Outcome::Failed("not_found", format!("no stream {} on the server", wanted.stream))
}

/// The poller for every workload metric read from NATS; `None` if none is.
pub fn poller(
    source: &Source,
    workloads: &[Workload],
    hub: Arc<SignalHub>,
    metrics: Arc<Metrics>,
) -> Result<Option<Poller<Nats>>, String> {
    let jobs: Vec<Job<Consumer>> = super::poll::jobs(workloads, |_, source| match source {
        MetricSource::Nats(consumer) => Some(consumer.clone()),
        _ => None,
    });
    if jobs.is_empty() {
        return Ok(None);
    }
    let client =
        reqwest::Client::builder().timeout(source.timeout).build().map_err(|e| format!("sources.nats: {e}"))?;
    let fetcher = Nats { source: source.clone(), client };
    Ok(Some(Poller { fetcher, jobs, interval: source.interval, hub, metrics }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn jsz() -> serde_json::Value {
        json!({"account_details": [{"name": "$G", "stream_detail": [{"name": "JOBS", "consumer_detail": [
            {"name": "workers", "num_pending": 40, "num_ack_pending": 2},
            {"name": "audit", "num_pending": 0, "num_ack_pending": 0}
        ]}]}]})
    }

    fn consumer(stream: &str, name: &str) -> Consumer {
        Consumer { stream: stream.into(), consumer: name.into(), account: None }
    }

    #[test]
    fn backlog_is_pending_plus_ack_pending() {
        let Outcome::Value(metric) = backlog("backlog", &consumer("JOBS", "workers"), &jsz(), 7) else { panic!() };
        assert_eq!((metric.value, metric.timestamp_ms), (42.0, 7));
    }

    #[test]
    fn missing_streams_consumers_and_accounts_are_named() {
        for (wanted, needle) in [
            (consumer("MAIL", "workers"), "no stream MAIL"),
            (consumer("JOBS", "nobody"), "no consumer nobody"),
            (Consumer { account: Some("TEAM".into()), ..consumer("JOBS", "workers") }, "no stream JOBS"),
        ] {
            match backlog("b", &wanted, &jsz(), 0) {
                Outcome::Failed("not_found", message) => assert!(message.contains(needle), "{message}"),
                other => panic!("{other:?}"),
            }
        }
    }
}
