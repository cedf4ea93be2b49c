//! What an input is, below the hub and the sources: a workload metric's
//! spec ([`MetricSpec`]), a parsed block of configuration ([`Configured`]),
//! and the errors of settings ([`FieldError`]) and of reads
//! ([`SourceError`]).

use serde::de::DeserializeOwned;
use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

/// A setting that is wrong: where (relative to the block it was read from,
/// e.g. `headers.x-org` inside `sources.prometheus`) and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Dotted path inside the block; empty for the block itself.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError { field: field.into(), message: message.into() }
    }

    /// The full path of the field under `prefix`.
    pub fn under(&self, prefix: &str) -> String {
        if self.field.is_empty() { prefix.to_string() } else { format!("{prefix}.{}", self.field) }
    }
}

/// Deserializes a block, naming the offending field on failure.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let field = if path == "." { String::new() } else { path };
        FieldError::new(field, error.into_inner().to_string())
    })
}

/// A failed or unusable read of an input. [`SourceError::kind`] is the
/// `kind` label of `scalegate_source_errors_total`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// No answer within the deadline.
    #[error("{0}")]
    Timeout(String),
    /// No connection, or the connection broke.
    #[error("{0}")]
    Connect(String),
    /// Credentials refused.
    #[error("{0}")]
    Auth(String),
    /// An HTTP status that is not success.
    #[error("{0}")]
    Http(String),
    /// Refused by authorization.
    #[error("{0}")]
    Forbidden(String),
    /// What was asked for does not exist there.
    #[error("{0}")]
    NotFound(String),
    /// An answer or message that cannot be read.
    #[error("{0}")]
    Parse(String),
    /// The server refused the query.
    #[error("{0}")]
    Query(String),
    /// No value (e.g. an empty query result).
    #[error("{0}")]
    Empty(String),
    /// A value that is not a finite number.
    #[error("{0}")]
    Nan(String),
    /// Several values where one was expected.
    #[error("{0}")]
    Multiple(String),
    /// A message for no known workload.
    #[error("{0}")]
    Route(String),
    /// A message with a field that makes no sense.
    #[error("{0}")]
    Invalid(String),
    /// The target itself could not be read.
    #[error("{0}")]
    Target(String),
}

impl SourceError {
    /// Bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceError::Timeout(_) => "timeout",
            SourceError::Connect(_) => "connect",
            SourceError::Auth(_) => "auth",
            SourceError::Http(_) => "http",
            SourceError::Forbidden(_) => "forbidden",
            SourceError::NotFound(_) => "not_found",
            SourceError::Parse(_) => "parse",
            SourceError::Query(_) => "query",
            SourceError::Empty(_) => "empty",
            SourceError::Nan(_) => "nan",
            SourceError::Multiple(_) => "multiple",
            SourceError::Route(_) => "route",
            SourceError::Invalid(_) => "invalid",
            SourceError::Target(_) => "target",
        }
    }
}

/// A parsed block (settings or metric spec) with the JSON it came from.
#[derive(Clone)]
pub struct Configured {
    raw: serde_json::Value,
    parsed: Arc<dyn Any + Send + Sync>,
}

impl Configured {
    pub fn new<T: Send + Sync + 'static>(raw: serde_json::Value, parsed: T) -> Configured {
        Configured { raw, parsed: Arc::new(parsed) }
    }

    pub fn raw(&self) -> &serde_json::Value {
        &self.raw
    }

    /// The typed value, when it is a `T`.
    pub fn get<T: 'static>(&self) -> Option<&T> {
        self.parsed.downcast_ref::<T>()
    }
}

impl PartialEq for Configured {
    fn eq(&self, other: &Configured) -> bool {
        self.raw == other.raw
    }
}

impl std::fmt::Debug for Configured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.raw)
    }
}

/// One named input of a workload, read from one source.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSpec {
    pub name: String,
    /// The source's registry name (`prometheus`, `kafka`, `push`, …).
    pub source: &'static str,
    /// The source's bounded label (the hub's slots, stale-input names).
    pub label: &'static str,
    /// The source's spec of this metric (`metrics[].<key>`).
    pub spec: Configured,
    /// Older values are left out of the snapshot (default: three refreshes of the source).
    pub max_age: Duration,
    /// A stale required input holds scale-down (default true).
    pub required: bool,
}
