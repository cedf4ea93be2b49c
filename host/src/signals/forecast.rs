//! Forecasts over HTTP, in the forecaster format of the KEDA external
//! scaler our users run (`GET /forecast/current?workload=NAME`):
//!
//! ```json
//! {"workload": "my-api", "metric": "http_rps", "generatedAt": "2026-11-22T10:00:00Z",
//!  "stepSeconds": 60, "values": [120.0, 135.5, …], "desiredReplicas": [4, 5, …]}
//! ```
//!
//! The metric's value is the first point of `desiredReplicas` (or of
//! `values` when the forecaster sends no replica series); the whole series
//! goes into the snapshot's `forecasts` (named after the metric, starting at
//! the generation time) for policies that look ahead, e.g. the maximum over
//! a lead time. Freshness is judged from `generatedAt`, not from when the
//! answer arrived: a forecaster that keeps serving an old forecast goes
//! stale like one that is down.

use super::poll::{self, Fetcher, Outcome, Poller};
use super::source::{Context, Endpoint, EndpointDefaults, FieldError, Job, Nothing, Source, SourceError, Started};
use crate::clock::Clock;
use crate::snapshot::{Forecast, Metric};
use futures::future::BoxFuture;
use serde::Deserialize;
use std::time::Duration;

pub struct Forecasts;

const ENDPOINT: EndpointDefaults = EndpointDefaults {
    url_key: "url",
    schemes: &["http", "https"],
    interval: Duration::from_secs(30),
    timeout: Duration::from_secs(5),
};

/// `workloads[].metrics[].forecast`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Series {
    /// The workload's name at the forecaster (default: the target's name).
    pub workload: Option<String>,
}

impl Source for Forecasts {
    const NAME: &'static str = "forecast";
    const METRIC: Option<&'static str> = Some("forecast");
    const LABEL: &'static str = "forecast";
    const TITLE: &'static str = "forecaster";
    type Settings = Endpoint;
    type Metric = Series;

    fn settings(value: serde_json::Value) -> Result<Endpoint, FieldError> {
        Endpoint::split::<Nothing>(value, &ENDPOINT).map(|(endpoint, _)| endpoint)
    }

    fn refresh(endpoint: &Endpoint) -> Option<Duration> {
        Some(endpoint.interval)
    }

    fn start(endpoint: &Endpoint, jobs: Vec<Job<&Series>>, context: &Context) -> Result<Started, FieldError> {
        if jobs.is_empty() {
            return Ok(Started::default());
        }
        let jobs: Vec<Job<String>> = jobs
            .into_iter()
            .map(|job| Job {
                spec: job.spec.workload.clone().unwrap_or_else(|| job.target.name.clone()),
                workload: job.workload,
                target: job.target,
                metric: job.metric,
            })
            .collect();
        let client = reqwest::Client::builder()
            .timeout(endpoint.timeout)
            .build()
            .map_err(|e| FieldError::new("", e.to_string()))?;
        let poller = Poller::new(Forecaster { endpoint: endpoint.clone(), client }, jobs, endpoint.interval, context);
        Ok(Started { tasks: vec![poller.into_task(context.shutdown.clone())], sink: None })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    generated_at: String,
    step_seconds: u32,
    #[serde(default)]
    values: Vec<f64>,
    #[serde(default)]
    desired_replicas: Vec<f64>,
}

/// Fetches each job's forecast (`spec`: the workload's name at the forecaster).
pub struct Forecaster {
    endpoint: Endpoint,
    client: reqwest::Client,
}

impl Fetcher for Forecaster {
    type Spec = String;
    const SOURCE: &'static str = "forecast";

    fn fetch_all<'a>(&'a self, jobs: &'a [Job<String>], _clock: &'a dyn Clock) -> BoxFuture<'a, Vec<Outcome>> {
        Box::pin(poll::fetch_each(jobs, |job| self.fetch(job)))
    }
}

impl Forecaster {
    async fn fetch(&self, job: &Job<String>) -> Outcome {
        let url = format!("{}/forecast/current", self.endpoint.url.trim_end_matches('/'));
        let response = match self.client.get(url).query(&[("workload", job.spec.as_str())]).send().await {
            Ok(response) => response,
            Err(e) if e.is_timeout() => {
                return Outcome::Failed(SourceError::Timeout(format!("no answer within {:?}", self.endpoint.timeout)));
            }
            Err(e) => return Outcome::Failed(SourceError::Connect(e.to_string())),
        };
        if !response.status().is_success() {
            return Outcome::Failed(SourceError::Http(format!("HTTP {}", response.status())));
        }
        match response.bytes().await {
            Ok(body) => interpret(&job.metric, &body),
            Err(e) => Outcome::Failed(SourceError::Connect(format!("reading the answer: {e}"))),
        }
    }
}

fn interpret(name: &str, body: &[u8]) -> Outcome {
    let answer: Answer = match serde_json::from_slice(body) {
        Ok(answer) => answer,
        Err(e) => {
            return Outcome::Failed(SourceError::Parse(format!(
                "the forecast is not valid JSON in the forecaster format: {e}"
            )));
        }
    };
    let generated_ms = match answer.generated_at.parse::<k8s_openapi::jiff::Timestamp>() {
        Ok(time) => time.as_millisecond().max(0) as u64,
        Err(e) => return Outcome::Failed(SourceError::Parse(format!("generatedAt {:?}: {e}", answer.generated_at))),
    };
    if answer.step_seconds == 0 {
        return Outcome::Failed(SourceError::Parse("stepSeconds must be positive".into()));
    }
    let series = if answer.desired_replicas.is_empty() { answer.values } else { answer.desired_replicas };
    if series.iter().any(|v| !v.is_finite()) {
        return Outcome::Failed(SourceError::Nan("the forecast holds a non-finite value".into()));
    }
    let Some(first) = series.first().copied() else {
        return Outcome::Missing(SourceError::Empty("the forecast has no points".into()));
    };
    let metric =
        Metric { name: name.into(), source: "forecast".into(), value: first, timestamp_ms: generated_ms, pods: vec![] };
    let forecast = Forecast {
        name: name.into(),
        generated_ms,
        start_ms: generated_ms,
        step_seconds: answer.step_seconds,
        values: series,
    };
    Outcome::Forecast(Box::new((metric, forecast)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_series_wins_over_values_and_keeps_its_generation_time() {
        let body = br#"{"workload": "api", "metric": "rps", "generatedAt": "2026-11-22T10:00:00Z",
                        "stepSeconds": 60, "values": [100, 200], "desiredReplicas": [4, 7, 9]}"#;
        let Outcome::Forecast(pair) = interpret("lead", body) else { panic!() };
        let (metric, forecast) = *pair;
        assert_eq!((metric.value, metric.timestamp_ms), (4.0, 1_795_341_600_000));
        assert_eq!(forecast.values, [4.0, 7.0, 9.0]);
        assert_eq!((forecast.step_seconds, forecast.generated_ms), (60, 1_795_341_600_000));
        let values_only = br#"{"generatedAt": "2026-11-22T10:00:00Z", "stepSeconds": 30, "values": [12.5]}"#;
        let Outcome::Forecast(pair) = interpret("rps", values_only) else { panic!() };
        assert_eq!(pair.0.value, 12.5);
    }

    #[test]
    fn malformed_forecasts_are_errors_naming_the_problem() {
        for (body, kind, needle) in [
            (&b"<html>oops</html>"[..], "parse", "not valid JSON"),
            (br#"{"generatedAt": "yesterday", "stepSeconds": 60, "values": [1]}"#, "parse", "generatedAt"),
            (br#"{"generatedAt": "2026-11-22T10:00:00Z", "stepSeconds": 0, "values": [1]}"#, "parse", "stepSeconds"),
            (br#"{"generatedAt": "2026-11-22T10:00:00Z", "stepSeconds": 60}"#, "empty", "no points"),
        ] {
            match interpret("x", body) {
                Outcome::Failed(error) | Outcome::Missing(error) => {
                    assert_eq!(error.kind(), kind, "{error}");
                    assert!(error.to_string().contains(needle), "{error}");
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
