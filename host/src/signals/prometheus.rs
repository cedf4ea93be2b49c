//! Prometheus: PromQL instant queries per workload metric, templated with
//! the workload's `{{namespace}}`, `{{name}}`, `{{kind}}` and
//! `{{workload}}`, run every `interval` (all queries concurrently, each
//! with its own timeout), results written to the signal hub.
//!
//! Results that are not one finite number are handled as configured per
//! query: an empty result (`on_empty`), NaN or ±Inf (`on_nan`) — `zero`,
//! `missing` (the metric is not updated and ages out) or `error` — and
//! several series (`on_multiple`: `sum`, `max`, `min` or `error`). With
//! `pod_label`, each series is one pod's sample, named by that label (the
//! shape the `hpa` policy's Pods metrics read).

use super::poll::{self, Fetcher, Outcome, Poller};
use super::source::{Context, Endpoint, EndpointDefaults, FieldError, Job, Source, SourceError, Started};
use crate::clock::Clock;
use crate::cluster::Target;
use crate::snapshot::{Metric, PodSample};
use futures::future::BoxFuture;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub struct Prometheus;

const ENDPOINT: EndpointDefaults = EndpointDefaults {
    url_key: "url",
    schemes: &["http", "https"],
    interval: Duration::from_secs(15),
    timeout: Duration::from_secs(5),
};

/// `sources.prometheus`: the endpoint (`url`, e.g.
/// `http://prometheus-server.monitoring:9090`; `interval` 15 s; `timeout`
/// 5 s) and how to reach it.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub endpoint: Endpoint,
    pub access: Access,
}

/// Credentials, headers and trust of `sources.prometheus`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Access {
    /// `Authorization: Bearer` from this file (re-read at every poll, so rotated tokens work).
    pub bearer_token_file: Option<PathBuf>,
    pub basic_auth: Option<BasicAuth>,
    /// Extra headers, e.g. `X-Scope-OrgID` for a multi-tenant backend.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// PEM bundle of CAs to trust for `https` (in addition to the built-in roots).
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    pub password_file: PathBuf,
}

/// What to do with an empty result or a NaN/±Inf value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// Use 0.
    Zero,
    /// Do not update the metric (it ages out; counted, not an error).
    #[default]
    Missing,
    /// Count it as a failed query.
    Error,
}

/// What to do with several series.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Combine {
    Sum,
    Max,
    Min,
    #[default]
    Error,
}

/// `workloads[].metrics[].prometheus`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    /// PromQL returning an instant vector or a scalar.
    pub query: String,
    #[serde(default)]
    pub on_empty: Fallback,
    #[serde(default)]
    pub on_nan: Fallback,
    #[serde(default)]
    pub on_multiple: Combine,
    /// Each series is a pod's sample, named by this label (e.g. `pod`).
    pub pod_label: Option<String>,
}

const PLACEHOLDERS: [&str; 4] = ["{{namespace}}", "{{name}}", "{{kind}}", "{{workload}}"];

impl Query {
    /// The first problem, by field.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.query.trim().is_empty() {
            return Err(FieldError::new("query", "must not be empty"));
        }
        let mut rest = self.query.clone();
        for placeholder in PLACEHOLDERS {
            rest = rest.replace(placeholder, "");
        }
        if let Some(start) = rest.find("{{") {
            let unknown: String = rest[start..].chars().take_while(|c| *c != '}').collect();
            return Err(FieldError::new(
                "query",
                format!("unknown placeholder {unknown}}}}} (known: {})", PLACEHOLDERS.join(", ")),
            ));
        }
        Ok(())
    }

    /// The query for one workload binding (`workload` is its name).
    pub fn render(&self, workload: &str, target: &Target) -> String {
        self.query
            .replace("{{namespace}}", &target.namespace)
            .replace("{{name}}", &target.name)
            .replace("{{kind}}", &target.kind)
            .replace("{{workload}}", workload)
    }
}

impl Source for Prometheus {
    const NAME: &'static str = "prometheus";
    const METRIC: Option<&'static str> = Some("prometheus");
    const LABEL: &'static str = "prometheus";
    const TITLE: &'static str = "Prometheus";
    type Settings = Settings;
    type Metric = Query;

    fn settings(value: serde_json::Value) -> Result<Settings, FieldError> {
        let (endpoint, access): (Endpoint, Access) = Endpoint::split(value, &ENDPOINT)?;
        for name in access.headers.keys() {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(FieldError::new("headers", format!("invalid header name {name:?}")));
            }
        }
        Ok(Settings { endpoint, access })
    }

    fn validate_metric(query: &Query) -> Result<(), FieldError> {
        query.validate()
    }

    fn refresh(settings: &Settings) -> Option<Duration> {
        Some(settings.endpoint.interval)
    }

    /// Fails with the setting at fault: an unreadable CA or credential
    /// file, an invalid header value.
    fn start(settings: &Settings, jobs: Vec<Job<&Query>>, context: &Context) -> Result<Started, FieldError> {
        if jobs.is_empty() {
            return Ok(Started::default());
        }
        let jobs: Vec<Job<(Query, String)>> = jobs
            .into_iter()
            .map(|job| {
                let promql = job.spec.render(&job.workload, &job.target);
                let query = job.spec.clone();
                job.with((query, promql))
            })
            .collect();
        let access = &settings.access;
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &access.headers {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| FieldError::new("headers", format!("{name:?}: {e}")))?;
            let value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|e| FieldError::new(format!("headers.{name}"), e.to_string()))?;
            headers.insert(name, value);
        }
        let mut builder = reqwest::Client::builder().timeout(settings.endpoint.timeout).default_headers(headers);
        if let Some(path) = &access.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| FieldError::new("ca_file", format!("cannot read {}: {e}", path.display())))?;
            for certificate in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| FieldError::new("ca_file", format!("{}: {e}", path.display())))?
            {
                builder = builder.add_root_certificate(certificate);
            }
        }
        for (field, path) in [
            ("bearer_token_file", access.bearer_token_file.as_ref()),
            ("basic_auth.password_file", access.basic_auth.as_ref().map(|b| &b.password_file)),
        ] {
            if let Some(path) = path {
                std::fs::read_to_string(path)
                    .map_err(|e| FieldError::new(field, format!("cannot read {}: {e}", path.display())))?;
            }
        }
        let client = builder.build().map_err(|e| FieldError::new("", e.to_string()))?;
        let fetcher = Queries { settings: settings.clone(), client };
        let poller = Poller::new(fetcher, jobs, settings.endpoint.interval, context);
        Ok(Started { tasks: vec![poller.into_task(context.shutdown.clone())], sink: None })
    }
}

/// Runs the queries (see [`Fetcher`]).
pub struct Queries {
    settings: Settings,
    client: reqwest::Client,
}

impl Fetcher for Queries {
    type Spec = (Query, String);
    const SOURCE: &'static str = "prometheus";

    fn fetch_all<'a>(&'a self, jobs: &'a [Job<(Query, String)>], _clock: &'a dyn Clock) -> BoxFuture<'a, Vec<Outcome>> {
        Box::pin(async move {
            let auth = self.auth();
            poll::fetch_each(jobs, |job| self.query(job, auth.clone())).await
        })
    }
}

impl Queries {
    /// Credentials, read fresh (token files rotate).
    fn auth(&self) -> Option<Auth> {
        let access = &self.settings.access;
        if let Some(path) = &access.bearer_token_file {
            return std::fs::read_to_string(path).ok().map(|t| Auth::Bearer(t.trim().to_string()));
        }
        access.basic_auth.as_ref().and_then(|basic| {
            std::fs::read_to_string(&basic.password_file)
                .ok()
                .map(|p| Auth::Basic(basic.username.clone(), p.trim_end_matches(['\n', '\r']).to_string()))
        })
    }

    async fn query(&self, job: &Job<(Query, String)>, auth: Option<Auth>) -> Outcome {
        let (query, promql) = &job.spec;
        let url = format!("{}/api/v1/query", self.settings.endpoint.url.trim_end_matches('/'));
        let mut request = self.client.get(url).query(&[("query", promql.as_str())]);
        request = match auth {
            Some(Auth::Bearer(token)) => request.bearer_auth(token),
            Some(Auth::Basic(user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        };
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) if error.is_timeout() => {
                let timeout = self.settings.endpoint.timeout;
                return Outcome::Failed(SourceError::Timeout(format!("no answer within {timeout:?}")));
            }
            Err(error) => return Outcome::Failed(SourceError::Connect(format!("{error}"))),
        };
        let status = response.status();
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(error) => return Outcome::Failed(SourceError::Connect(format!("reading the answer: {error}"))),
        };
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            let detail: String = text.chars().take(300).collect();
            return Outcome::Failed(SourceError::Http(format!("HTTP {status}: {detail}")));
        }
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(answer) => interpret(&job.metric, query, &answer),
            Err(error) => Outcome::Failed(SourceError::Parse(format!("the answer is not JSON: {error}"))),
        }
    }
}

#[derive(Clone)]
enum Auth {
    Bearer(String),
    Basic(String, String),
}

fn number(value: &serde_json::Value) -> Option<(u64, f64)> {
    let pair = value.as_array()?;
    let timestamp = pair.first()?.as_f64()?;
    let value: f64 = pair.get(1)?.as_str()?.parse().ok()?;
    Some(((timestamp * 1000.0) as u64, value))
}

/// Turns a Prometheus API answer into a metric, per the query's rules.
fn interpret(name: &str, query: &Query, answer: &serde_json::Value) -> Outcome {
    if answer["status"] != "success" {
        let error = answer["error"].as_str().unwrap_or("no error message");
        return Outcome::Failed(SourceError::Query(format!("Prometheus refused the query: {error}")));
    }
    let data = &answer["data"];
    let series: Vec<(&serde_json::Value, u64, f64)> = match data["resultType"].as_str() {
        Some("vector") => {
            let Some(result) = data["result"].as_array() else {
                return Outcome::Failed(SourceError::Parse("vector result without a result list".into()));
            };
            let mut series = Vec::with_capacity(result.len());
            for item in result {
                match number(&item["value"]) {
                    Some((timestamp, value)) => series.push((&item["metric"], timestamp, value)),
                    None => return Outcome::Failed(SourceError::Parse(format!("malformed sample {item}"))),
                }
            }
            series
        }
        Some("scalar") => match number(&data["result"]) {
            Some((timestamp, value)) => vec![(&serde_json::Value::Null, timestamp, value)],
            None => return Outcome::Failed(SourceError::Parse("malformed scalar".into())),
        },
        other => {
            return Outcome::Failed(SourceError::Query(format!(
                "result type {other:?}: write an instant query returning a vector or a scalar"
            )));
        }
    };
    let fallback = |rule: Fallback, error: SourceError, timestamp: u64| match rule {
        Fallback::Zero => Ok((timestamp, 0.0)),
        Fallback::Missing => Err(Outcome::Missing(error)),
        Fallback::Error => Err(Outcome::Failed(error)),
    };
    let metric = |value: f64, timestamp_ms: u64, pods: Vec<PodSample>| {
        Outcome::Value(Metric { name: name.into(), source: "prometheus".into(), value, timestamp_ms, pods })
    };

    if let Some(label) = &query.pod_label {
        let mut pods = Vec::with_capacity(series.len());
        let mut newest = 0;
        for (labels, timestamp, value) in &series {
            let Some(pod) = labels[label.as_str()].as_str() else {
                return Outcome::Failed(SourceError::Parse(format!("a series has no {label:?} label: {labels}")));
            };
            let value = if value.is_finite() {
                *value
            } else {
                match fallback(query.on_nan, SourceError::Nan(format!("pod {pod}: {value}")), *timestamp) {
                    Ok((_, value)) => value,
                    Err(Outcome::Missing(..)) => continue,
                    Err(failed) => return failed,
                }
            };
            newest = newest.max(*timestamp);
            pods.push(PodSample { pod: pod.into(), value, timestamp_ms: *timestamp, window_ms: 0 });
        }
        if pods.is_empty() {
            return match fallback(query.on_empty, SourceError::Empty("no series".into()), 0) {
                Ok((_, value)) => metric(value, 0, vec![]),
                Err(outcome) => outcome,
            };
        }
        let total = pods.iter().map(|p| p.value).sum();
        return metric(total, newest, pods);
    }

    let (timestamp, value) = match series.as_slice() {
        [] => match fallback(query.on_empty, SourceError::Empty("the query returned no series".into()), 0) {
            Ok(pair) => pair,
            Err(outcome) => return outcome,
        },
        [(_, timestamp, value)] => (*timestamp, *value),
        several => {
            let timestamp = several.iter().map(|s| s.1).max().unwrap_or(0);
            let values = several.iter().map(|s| s.2);
            let value = match query.on_multiple {
                Combine::Sum => values.sum(),
                Combine::Max => values.fold(f64::NEG_INFINITY, f64::max),
                Combine::Min => values.fold(f64::INFINITY, f64::min),
                Combine::Error => {
                    return Outcome::Failed(SourceError::Multiple(format!(
                        "{} series; aggregate in PromQL or set on_multiple",
                        several.len()
                    )));
                }
            };
            (timestamp, value)
        }
    };
    if !value.is_finite() {
        return match fallback(query.on_nan, SourceError::Nan(format!("the value is {value}")), timestamp) {
            Ok((timestamp, value)) => metric(value, timestamp, vec![]),
            Err(outcome) => outcome,
        };
    }
    metric(value, timestamp, vec![])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn query(extra: serde_json::Value) -> Query {
        let mut base = json!({"query": "up"});
        base.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    fn vector(samples: &[(&str, &str)]) -> serde_json::Value {
        let result: Vec<_> =
            samples.iter().map(|(pod, v)| json!({"metric": {"pod": pod}, "value": [1700000000.5, v]})).collect();
        json!({"status": "success", "data": {"resultType": "vector", "result": result}})
    }

    fn value(outcome: Outcome) -> f64 {
        match outcome {
            Outcome::Value(metric) => metric.value,
            other => panic!("expected a value, got {other:?}"),
        }
    }

    #[test]
    fn a_single_series_or_scalar_is_the_value_with_its_timestamp() {
        let outcome = interpret("rps", &query(json!({})), &vector(&[("a", "12.5")]));
        let Outcome::Value(metric) = outcome else { panic!() };
        assert_eq!((metric.value, metric.timestamp_ms), (12.5, 1_700_000_000_500));
        let scalar = json!({"status": "success", "data": {"resultType": "scalar", "result": [1.0, "3"]}});
        assert_eq!(value(interpret("x", &query(json!({})), &scalar)), 3.0);
    }

    #[test]
    fn empty_nan_and_multiple_follow_the_configured_rule() {
        let empty = vector(&[]);
        assert!(matches!(interpret("x", &query(json!({})), &empty), Outcome::Missing(SourceError::Empty(_))));
        assert_eq!(value(interpret("x", &query(json!({"on_empty": "zero"})), &empty)), 0.0);
        assert!(matches!(
            interpret("x", &query(json!({"on_empty": "error"})), &empty),
            Outcome::Failed(SourceError::Empty(_))
        ));

        for nan in ["NaN", "+Inf", "-Inf"] {
            let answer = vector(&[("a", nan)]);
            assert!(
                matches!(interpret("x", &query(json!({})), &answer), Outcome::Missing(SourceError::Nan(_))),
                "{nan}"
            );
            assert_eq!(value(interpret("x", &query(json!({"on_nan": "zero"})), &answer)), 0.0);
            assert!(matches!(
                interpret("x", &query(json!({"on_nan": "error"})), &answer),
                Outcome::Failed(SourceError::Nan(_))
            ));
        }

        let two = vector(&[("a", "1"), ("b", "4")]);
        assert!(matches!(interpret("x", &query(json!({})), &two), Outcome::Failed(SourceError::Multiple(_))));
        assert_eq!(value(interpret("x", &query(json!({"on_multiple": "sum"})), &two)), 5.0);
        assert_eq!(value(interpret("x", &query(json!({"on_multiple": "max"})), &two)), 4.0);
        assert_eq!(value(interpret("x", &query(json!({"on_multiple": "min"})), &two)), 1.0);
    }

    #[test]
    fn pod_label_turns_series_into_pod_samples() {
        let answer = vector(&[("web-0", "10"), ("web-1", "NaN"), ("web-2", "30")]);
        let Outcome::Value(metric) = interpret("rps", &query(json!({"pod_label": "pod"})), &answer) else { panic!() };
        assert_eq!(metric.pods.iter().map(|p| p.pod.as_str()).collect::<Vec<_>>(), ["web-0", "web-2"]);
        assert_eq!(metric.value, 40.0);
        let missing_label = json!({"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "1"]}]}});
        assert!(matches!(
            interpret("rps", &query(json!({"pod_label": "pod"})), &missing_label),
            Outcome::Failed(SourceError::Parse(_))
        ));
    }

    #[test]
    fn refused_queries_and_malformed_answers_are_errors() {
        let refused = json!({"status": "error", "errorType": "bad_data", "error": "parse error at char 3"});
        assert!(
            matches!(interpret("x", &query(json!({})), &refused), Outcome::Failed(SourceError::Query(m)) if m.contains("parse error"))
        );
        let matrix = json!({"status": "success", "data": {"resultType": "matrix", "result": []}});
        assert!(matches!(interpret("x", &query(json!({})), &matrix), Outcome::Failed(SourceError::Query(_))));
        let garbage = json!({"status": "success", "data": {"resultType": "vector", "result": [{"value": "x"}]}});
        assert!(matches!(interpret("x", &query(json!({})), &garbage), Outcome::Failed(SourceError::Parse(_))));
    }

    #[test]
    fn queries_are_templated_and_unknown_placeholders_refused() {
        let q =
            query(json!({"query": "sum(rate(http_requests_total{namespace=\"{{namespace}}\",app=\"{{name}}\"}[1m]))"}));
        assert!(q.validate().is_ok());
        let bad = query(json!({"query": "up{job=\"{{service}}\"}"}));
        let error = bad.validate().unwrap_err();
        assert_eq!(error.field, "query");
        assert!(error.message.contains("{{service}}"), "{error}");
    }
}
