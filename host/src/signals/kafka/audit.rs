//! The audit topic: every applied decision published as JSON, keyed by
//! workload, through a producer that is flushed when the daemon stops (no
//! record of an applied decision is lost on SIGTERM).

use super::client::{Audit, Settings, set_default};
use crate::signals::source::FieldError;
use crate::sink::DecisionSink;
use crate::telemetry::Metrics;
use futures::future::BoxFuture;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use std::sync::Arc;
use std::time::Duration;

/// Publishes applied decisions to `sources.kafka.audit.topic`.
pub struct AuditProducer {
    producer: FutureProducer,
    topic: String,
    metrics: Arc<Metrics>,
}

impl AuditProducer {
    pub fn new(settings: &Settings, audit: &Audit, metrics: Arc<Metrics>) -> Result<AuditProducer, FieldError> {
        let mut config = settings.client_config()?;
        set_default(&mut config, "linger.ms", "5");
        set_default(&mut config, "message.timeout.ms", "30000");
        let producer: FutureProducer =
            config.create().map_err(|e| FieldError::new("audit", format!("cannot create the producer: {e}")))?;
        Ok(AuditProducer { producer, topic: audit.topic.clone(), metrics })
    }
}

impl DecisionSink for AuditProducer {
    fn publish(&self, workload: &str, record: &[u8]) {
        let delivery = self.producer.send_result(FutureRecord::to(&self.topic).key(workload).payload(record));
        match delivery {
            Ok(delivery) => {
                let metrics = self.metrics.clone();
                tokio::spawn(async move {
                    if !matches!(delivery.await, Ok(Ok(_))) {
                        metrics.count_source_error("kafka", "audit");
                    }
                });
            }
            Err((error, _)) => {
                self.metrics.count_source_error("kafka", "audit");
                tracing::warn!(%error, "audit record not queued");
            }
        }
    }

    fn flush(&self, timeout: Duration) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let producer = self.producer.clone();
            // librdkafka's flush blocks until delivered or the deadline
            tokio::task::spawn_blocking(move || producer.flush(timeout))
                .await
                .map_err(|e| format!("flush task failed: {e}"))?
                .map_err(|e| format!("audit records not delivered within {timeout:?}: {e}"))
        })
    }
}
