//! Where decisions go besides the cluster: sinks receive every applied
//! decision record (the Kafka audit topic is one) and are flushed on
//! shutdown, so no record of an applied decision is lost on SIGTERM.

use futures::future::BoxFuture;
use std::time::Duration;

pub trait DecisionSink: Send + Sync + 'static {
    /// Publishes one applied decision (`record` is its JSON form), keyed by
    /// workload. Must not block: queue and return.
    fn publish(&self, workload: &str, record: &[u8]);

    /// Waits until everything published so far is delivered, or `timeout`.
    fn flush(&self, timeout: Duration) -> BoxFuture<'_, Result<(), String>>;
}
