//! What every Kafka client of the source shares: `sources.kafka`, the
//! librdkafka configuration built from it, closing clients aside, and the
//! side channel on which librdkafka reports lost connections and failed
//! authentication.

use crate::signals::source::{BurstLog, FieldError};
use crate::telemetry::Metrics;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, ClientContext};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// `sources.kafka`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
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
    /// How long the broker may hold the directive consumer's fetch while no
    /// message is there (librdkafka's `fetch.wait.max.ms`). A broker that
    /// holds a fetch for the whole wait even when a directive arrives
    /// (tansu does) adds up to this much to every directive; one that
    /// answers at once (Apache Kafka, per the protocol's `min_bytes`) does
    /// not, and then a longer wait only saves idle fetches. Default 0 ms:
    /// the lowest reaction time anywhere, at the highest idle cost (see
    /// docs/BENCHMARKS.md for both, per setting).
    #[serde(default = "default_fetch_wait", with = "humantime_serde")]
    pub fetch_wait: Duration,
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

fn default_fetch_wait() -> Duration {
    Duration::ZERO
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

impl Settings {
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.brokers.trim().is_empty() {
            return Err(FieldError::new("brokers", "must not be empty"));
        }
        if self.group_id.is_empty() {
            return Err(FieldError::new("group_id", "must not be empty"));
        }
        if self.directives.iter().any(|d| d.topic.is_empty()) {
            return Err(FieldError::new("directives", "every directive needs a topic"));
        }
        if self.fetch_wait > Duration::from_secs(5) {
            return Err(FieldError::new("fetch_wait", "must be at most 5s (directives wait that long)"));
        }
        Ok(())
    }

    /// librdkafka settings shared by every client: brokers, `options`, the
    /// SASL password from its file.
    pub fn client_config(&self) -> Result<ClientConfig, FieldError> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in &self.options {
            config.set(key, value);
        }
        if let Some(path) = &self.sasl_password_file {
            let password = std::fs::read_to_string(path)
                .map_err(|e| FieldError::new("sasl_password_file", format!("cannot read {}: {e}", path.display())))?;
            config.set("sasl.password", password.trim_end_matches(['\n', '\r']));
        }
        Ok(config)
    }
}

impl Lag {
    pub fn validate(&self) -> Result<(), FieldError> {
        for (field, value) in [("topic", &self.topic), ("group", &self.group)] {
            if value.is_empty() {
                return Err(FieldError::new(field, "must not be empty"));
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
pub fn set_default(config: &mut ClientConfig, key: &str, value: &str) {
    if config.get(key).is_none() {
        config.set(key, value);
    }
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
    pub last: parking_lot::Mutex<Option<(bool, String)>>,
}

/// `auth` for a failed authentication, `connect` for anything else.
pub fn problem_kind(error: &KafkaError) -> &'static str {
    use rdkafka::types::RDKafkaErrorCode::{Authentication, SaslAuthenticationFailed};
    match error.rdkafka_error_code() {
        Some(Authentication | SaslAuthenticationFailed) => "auth",
        _ => "connect",
    }
}

impl ClientWatch {
    pub fn quiet() -> ClientWatch {
        ClientWatch { counted: None, last: Default::default() }
    }

    pub fn counting(metrics: Arc<Metrics>) -> ClientWatch {
        let log = parking_lot::Mutex::new(BurstLog::new("kafka connection"));
        ClientWatch { counted: Some((metrics, log)), last: Default::default() }
    }

    /// Keeps `problem` as the last one, unless an authentication failure
    /// is already kept: that one explains the rest.
    pub fn note(&self, auth: bool, problem: String) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::consumer::BaseConsumer;

    #[test]
    fn options_pass_through_and_the_sasl_password_comes_from_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("password");
        std::fs::write(&secret, "s3cret\n").unwrap();
        let ca = dir.path().join("ca.pem");
        let ca_key = rcgen::KeyPair::generate().unwrap();
        std::fs::write(&ca, rcgen::CertificateParams::default().self_signed(&ca_key).unwrap().pem()).unwrap();
        let source: Settings = serde_json::from_value(serde_json::json!({
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
        assert_eq!(error.field, "sasl_password_file");
        assert!(error.message.contains("cannot read"), "{error}");
    }
}
