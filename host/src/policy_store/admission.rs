//! The admission queue: every component that wants in — a new file in the
//! directory, an upload — is compiled, asked for its metadata and
//! smoke-evaluated here, a bounded number at a time, with the rest waiting
//! in order. Nothing here holds a lock the catalog's readers or pin changes
//! need; the queue's own lock is held only to enter and leave it.

use crate::policy::{self, LoadedPolicy, Runtime};
use parking_lot::{Condvar, Mutex};
use serde::Serialize;
use std::time::{SystemTime, UNIX_EPOCH};

/// One admission, as `GET /v1/policies` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdmissionStatus {
    /// Where it came from: a file path, or `upload:<name>`.
    pub source: String,
    pub digest: String,
    pub size_bytes: usize,
    /// `waiting` for a slot, or `admitting` (compiling, `metadata()`, smoke evaluation).
    pub state: &'static str,
    /// When it entered the queue (Unix milliseconds).
    pub since_ms: u64,
}

/// Why an admission did not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("{waiting} admissions are already waiting (the limit); try again when they are done")]
    Full { waiting: usize },
}

pub struct Admissions {
    queue: Mutex<Queue>,
    freed: Condvar,
    /// Admissions running at once (default 1: compiling is CPU-heavy).
    running_limit: usize,
    /// Admissions waiting at most; more are refused (default 16).
    waiting_limit: usize,
}

#[derive(Default)]
struct Queue {
    next_ticket: u64,
    /// Tickets in arrival order, with what they admit.
    entries: Vec<(u64, AdmissionStatus)>,
}

impl Queue {
    fn running(&self) -> usize {
        self.entries.iter().filter(|(_, s)| s.state == "admitting").count()
    }
    fn waiting(&self) -> usize {
        self.entries.len() - self.running()
    }
    fn first_waiting(&self) -> Option<u64> {
        self.entries.iter().find(|(_, s)| s.state == "waiting").map(|(t, _)| *t)
    }
}

impl Admissions {
    pub fn new(running_limit: usize, waiting_limit: usize) -> Admissions {
        Admissions {
            queue: Mutex::new(Queue::default()),
            freed: Condvar::new(),
            running_limit: running_limit.max(1),
            waiting_limit,
        }
    }

    /// What is admitting and waiting now, in arrival order.
    pub fn status(&self) -> Vec<AdmissionStatus> {
        self.queue.lock().entries.iter().map(|(_, s)| s.clone()).collect()
    }

    /// Waits for a slot, then loads `bytes` and smoke-evaluates it.
    /// Blocking: call it from a blocking thread.
    pub fn admit(
        &self,
        runtime: &Runtime,
        source: String,
        digest: &str,
        bytes: &[u8],
    ) -> Result<Result<LoadedPolicy, policy::Error>, QueueError> {
        let ticket = {
            let mut queue = self.queue.lock();
            let waiting = queue.waiting();
            if waiting >= self.waiting_limit {
                return Err(QueueError::Full { waiting });
            }
            let ticket = queue.next_ticket;
            queue.next_ticket += 1;
            let since_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
            let status = AdmissionStatus {
                source,
                digest: digest.to_string(),
                size_bytes: bytes.len(),
                state: "waiting",
                since_ms,
            };
            queue.entries.push((ticket, status));
            while !(queue.running() < self.running_limit && queue.first_waiting() == Some(ticket)) {
                self.freed.wait(&mut queue);
            }
            if let Some((_, status)) = queue.entries.iter_mut().find(|(t, _)| *t == ticket) {
                status.state = "admitting";
            }
            ticket
        };
        // leaves the queue however the admission ends (a panic included)
        struct Leave<'a>(&'a Admissions, u64);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.queue.lock().entries.retain(|(t, _)| *t != self.1);
                self.0.freed.notify_all();
            }
        }
        let _leave = Leave(self, ticket);
        Ok(smoke_tested(runtime, bytes))
    }
}

/// Load and validate, including the smoke evaluation.
fn smoke_tested(runtime: &Runtime, bytes: &[u8]) -> Result<LoadedPolicy, policy::Error> {
    let (policy, _) = runtime.load(bytes)?;
    match policy.evaluate(&super::smoke_snapshot()).outcome {
        Ok(_) | Err(policy::Error::Declined(_)) => Ok(policy),
        Err(error) => Err(match error {
            policy::Error::Trap(m) => policy::Error::Trap(format!("in the smoke evaluation: {m}")),
            other => other,
        }),
    }
}
