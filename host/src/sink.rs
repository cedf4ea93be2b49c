//! Where decisions go besides the cluster: sinks receive every applied
//! decision record (the Kafka audit topic is one) and are flushed on
//! shutdown, so no record of an applied decision is lost on SIGTERM; and
//! [`Answers`], the latest decision of each workload another autoscaler
//! applies (KEDA, through `keda.rs`).

use futures::future::BoxFuture;
use std::time::Duration;

pub trait DecisionSink: Send + Sync + 'static {
    /// Publishes one applied decision (`record` is its JSON form), keyed by
    /// workload. Must not block: queue and return.
    fn publish(&self, workload: &str, record: &[u8]);

    /// Waits until everything published so far is delivered, or `timeout`.
    fn flush(&self, timeout: Duration) -> BoxFuture<'_, Result<(), String>>;
}

/// What the loop last decided for a workload whose actuator is `keda`: the
/// answer KEDA's External Scaler serves (`keda.rs`). Published after every
/// evaluation of such a workload — by a standby too, so every replica can
/// answer — and never computed on request.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// Replicas after the guardrails.
    pub desired: u32,
    /// `desired` above the workload's activation threshold.
    pub active: bool,
    /// What the policies reported (`decision.metrics`), by name.
    pub metrics: Vec<(String, f64)>,
    /// When it was decided (ms since the epoch).
    pub at_ms: u64,
}

/// One served workload: its latest answer (none before its first
/// decision) and how often it is decided.
struct Served {
    answer: tokio::sync::watch::Sender<Option<Answer>>,
    interval_ms: u64,
}

/// The answers of every workload served to KEDA, each behind a watch
/// channel so streams learn of a new decision at once.
#[derive(Default)]
pub struct Answers {
    served: parking_lot::RwLock<std::collections::HashMap<String, Served>>,
}

impl Answers {
    /// Serves exactly `workloads` (name, evaluation interval) from now on:
    /// kept ones keep their answer and watchers, removed ones close their
    /// streams.
    pub fn serve(&self, workloads: impl IntoIterator<Item = (String, Duration)>) {
        let mut served = self.served.write();
        let mut next = std::collections::HashMap::new();
        for (name, interval) in workloads {
            let interval_ms = interval.as_millis() as u64;
            let entry = match served.remove(&name) {
                Some(entry) => Served { interval_ms, ..entry },
                None => Served { answer: tokio::sync::watch::Sender::new(None), interval_ms },
            };
            next.insert(name, entry);
        }
        *served = next;
    }

    /// Records a new answer for `workload` (ignored if it is not served).
    pub fn publish(&self, workload: &str, answer: Answer) {
        if let Some(served) = self.served.read().get(workload) {
            served.answer.send_replace(Some(answer));
        }
    }

    /// The latest answer and the workload's interval; `None` for a workload
    /// not served.
    pub fn latest(&self, workload: &str) -> Option<(Option<Answer>, Duration)> {
        let served = self.served.read();
        let entry = served.get(workload)?;
        Some((entry.answer.borrow().clone(), Duration::from_millis(entry.interval_ms)))
    }

    /// Follows `workload`'s answers; `None` for a workload not served.
    pub fn watch(&self, workload: &str) -> Option<tokio::sync::watch::Receiver<Option<Answer>>> {
        Some(self.served.read().get(workload)?.answer.subscribe())
    }
}
