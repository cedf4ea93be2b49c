//! How scalegate's requests to the API are bounded and retried: at most
//! `max_in_flight` at once (the rest wait their turn, so a burst of
//! evaluations never opens thousands of connections), a deadline per
//! request, exponential backoff for transient failures (timeouts,
//! transport errors, 429, 5xx), and failures turned into [`ClusterError`]s
//! that name the object and, where there is one, the fix.

use crate::cluster::ClusterError;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// How requests are bounded and retried.
#[derive(Debug, Clone)]
pub struct KubeSettings {
    /// Deadline of one request.
    pub request_timeout: Duration,
    /// Attempts for a transient failure (timeout, transport, 429, 5xx).
    pub attempts: u32,
    /// First backoff; doubled per attempt up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Conflicting writes re-read and retried before giving up.
    pub conflict_retries: u32,
    /// `fieldManager` of writes and `reportingInstance` of Events.
    pub identity: String,
    /// How long an observation waits for a namespace's pod cache to fill.
    pub cache_sync_timeout: Duration,
    /// Requests in flight at once (watches and the Lease not counted).
    pub max_in_flight: usize,
}

impl Default for KubeSettings {
    fn default() -> Self {
        KubeSettings {
            request_timeout: Duration::from_secs(5),
            attempts: 4,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            conflict_retries: 3,
            identity: "scalegate".into(),
            cache_sync_timeout: Duration::from_secs(10),
            max_in_flight: 64,
        }
    }
}

/// Why a request failed, after retries.
#[derive(Debug)]
pub enum CallError {
    Status(u16, String),
    Timeout(Duration),
    Transport(String),
}

impl CallError {
    pub fn from_kube(error: kube::Error) -> CallError {
        match error {
            kube::Error::Api(status) => CallError::Status(status.code, status.message),
            other => CallError::Transport(other.to_string()),
        }
    }

    pub fn transient(&self) -> bool {
        match self {
            CallError::Status(code, _) => *code == 429 || *code >= 500,
            CallError::Timeout(_) | CallError::Transport(_) => true,
        }
    }

    /// A message for the decision record, naming the object and the fix.
    pub fn describe(&self, verb: &str, object: &str) -> ClusterError {
        match self {
            CallError::Status(404, _) => ClusterError::NotFound(format!("{object} not found")),
            CallError::Status(409, _) => {
                ClusterError::Conflict(format!("conflict writing {object}: the object changed"))
            }
            CallError::Status(403, message) => ClusterError::Forbidden(format!(
                "forbidden to {verb} {object} (check the RBAC rules of scalegate's service account): {message}"
            )),
            CallError::Status(code, message) if *code == 429 || *code >= 500 => {
                ClusterError::Http(format!("{verb} {object}: HTTP {code}: {message}"))
            }
            CallError::Status(code, message) => {
                ClusterError::Invalid(format!("{verb} {object}: HTTP {code}: {message}"))
            }
            CallError::Timeout(after) => ClusterError::Timeout(format!(
                "{verb} {object}: no answer within {}",
                humantime::format_duration(*after)
            )),
            CallError::Transport(message) => ClusterError::Unavailable(format!("{verb} {object}: {message}")),
        }
    }
}

/// Requests with [`KubeSettings`]' deadline and retries.
#[derive(Debug, Clone)]
pub struct Requests {
    pub settings: KubeSettings,
    in_flight: Arc<Semaphore>,
}

impl Requests {
    pub fn new(settings: KubeSettings) -> Requests {
        let in_flight = Arc::new(Semaphore::new(settings.max_in_flight.max(1)));
        Requests { settings, in_flight }
    }

    /// One request with the request deadline, once a slot is free (the wait
    /// for the slot is not part of the deadline).
    pub async fn attempt<T>(&self, call: impl Future<Output = Result<T, kube::Error>>) -> Result<T, CallError> {
        let _slot = self.in_flight.acquire().await.expect("the semaphore is never closed");
        match tokio::time::timeout(self.settings.request_timeout, call).await {
            Ok(result) => result.map_err(CallError::from_kube),
            Err(_) => Err(CallError::Timeout(self.settings.request_timeout)),
        }
    }

    /// Runs `call` with the request deadline, retrying transient failures
    /// with exponential backoff.
    pub async fn retrying<T, F, Fut>(&self, mut call: F) -> Result<T, CallError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        let mut delay = self.settings.backoff;
        let mut attempt = 1;
        loop {
            match self.attempt(call()).await {
                Err(error) if error.transient() && attempt < self.settings.attempts => {
                    tracing::debug!(?error, attempt, "transient API failure; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.settings.max_backoff);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}
