//! NATS JetStream backlog: `num_pending + num_ack_pending` of a stream
//! consumer — messages not yet delivered plus delivered but not yet
//! acknowledged — read from the server's monitoring endpoint (`/jsz`, the
//! `-m` port). One request per poll serves every workload.
//!
//! ```yaml
//! sources:
//!   nats: {monitor_url: "http://nats.messaging:8222", interval: 5s, timeout: 2s}
//! workloads:
//!   - metrics: [{name: backlog, nats: {stream: JOBS, consumer: workers}}]
//! ```

use super::poll::{self, Fetcher, Outcome, Poller};
use super::source::{Context, Endpoint, EndpointDefaults, FieldError, Job, Nothing, Source, SourceError, Started};
use crate::clock::Clock;
use crate::snapshot::Metric;
use futures::future::BoxFuture;
use serde::Deserialize;
use std::time::Duration;

pub struct Nats;

const ENDPOINT: EndpointDefaults = EndpointDefaults {
    url_key: "monitor_url",
    schemes: &["http", "https"],
    interval: Duration::from_secs(5),
    timeout: Duration::from_secs(2),
};

/// `workloads[].metrics[].nats`: the consumer whose backlog to read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consumer {
    pub stream: String,
    pub consumer: String,
    /// Only this account (default: any account holding the stream).
    pub account: Option<String>,
}

impl Source for Nats {
    const NAME: &'static str = "nats";
    const METRIC: Option<&'static str> = Some("nats");
    const LABEL: &'static str = "nats";
    const TITLE: &'static str = "NATS";
    type Settings = Endpoint;
    type Metric = Consumer;

    fn settings(value: serde_json::Value) -> Result<Endpoint, FieldError> {
        Endpoint::split::<Nothing>(value, &ENDPOINT).map(|(endpoint, _)| endpoint)
    }

    fn validate_metric(consumer: &Consumer) -> Result<(), FieldError> {
        for (field, value) in [("stream", &consumer.stream), ("consumer", &consumer.consumer)] {
            if value.is_empty() {
                return Err(FieldError::new(field, "must not be empty"));
            }
        }
        Ok(())
    }

    fn refresh(endpoint: &Endpoint) -> Option<Duration> {
        Some(endpoint.interval)
    }

    fn start(endpoint: &Endpoint, jobs: Vec<Job<&Consumer>>, context: &Context) -> Result<Started, FieldError> {
        if jobs.is_empty() {
            return Ok(Started::default());
        }
        let client = reqwest::Client::builder()
            .timeout(endpoint.timeout)
            .build()
            .map_err(|e| FieldError::new("", e.to_string()))?;
        let fetcher = Jsz { endpoint: endpoint.clone(), client };
        let poller = Poller::new(fetcher, poll::owned(jobs), endpoint.interval, context);
        Ok(Started { tasks: vec![poller.into_task(context.shutdown.clone())], sink: None })
    }
}

/// Reads `/jsz` once per poll for every job.
pub struct Jsz {
    endpoint: Endpoint,
    client: reqwest::Client,
}

impl Fetcher for Jsz {
    type Spec = Consumer;
    const SOURCE: &'static str = "nats";

    fn fetch_all<'a>(&'a self, jobs: &'a [Job<Consumer>], clock: &'a dyn Clock) -> BoxFuture<'a, Vec<Outcome>> {
        Box::pin(async move {
            match self.jsz().await {
                Ok(jsz) => {
                    let now_ms = clock.now_ms();
                    jobs.iter().map(|job| backlog(&job.metric, &job.spec, &jsz, now_ms)).collect()
                }
                Err(error) => jobs.iter().map(|_| Outcome::Failed(error.clone())).collect(),
            }
        })
    }
}

impl Jsz {
    async fn jsz(&self) -> Result<serde_json::Value, SourceError> {
        let url = format!("{}/jsz?accounts=true&streams=true&consumers=true", self.endpoint.url.trim_end_matches('/'));
        let response = self.client.get(url).send().await.map_err(|e| {
            if e.is_timeout() {
                SourceError::Timeout(format!("no answer within {:?}", self.endpoint.timeout))
            } else {
                SourceError::Connect(e.to_string())
            }
        })?;
        if !response.status().is_success() {
            return Err(SourceError::Http(format!("HTTP {}", response.status())));
        }
        response.json().await.map_err(|e| SourceError::Parse(format!("/jsz is not JSON: {e}")))
    }
}

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
            return Outcome::Failed(SourceError::NotFound(format!(
                "stream {} has no consumer {}",
                wanted.stream, wanted.consumer
            )));
        };
        let (Some(pending), Some(ack_pending)) =
            (consumer["num_pending"].as_u64(), consumer["num_ack_pending"].as_u64())
        else {
            return Outcome::Failed(SourceError::Parse(format!(
                "consumer {} without num_pending/num_ack_pending",
                wanted.consumer
            )));
        };
        return Outcome::Value(Metric {
            name: name.into(),
            source: "nats".into(),
            value: (pending + ack_pending) as f64,
            timestamp_ms: now_ms,
            pods: vec![],
        });
    }
    Outcome::Failed(SourceError::NotFound(format!("no stream {} on the server", wanted.stream)))
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
                Outcome::Failed(SourceError::NotFound(message)) => assert!(message.contains(needle), "{message}"),
                other => panic!("{other:?}"),
            }
        }
    }
}
