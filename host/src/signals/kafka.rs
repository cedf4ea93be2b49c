//! Kafka, three ways (rdkafka, librdkafka underneath):
//!
//! - **directives**: a consumer (group `group_id`) of topics carrying
//!   `ScaleSignal` JSON messages, e.g. `rtc.control.scale`. Each message is
//!   routed to a workload — by the message key or by a JSON field — becomes
//!   a signal in its snapshot and triggers an evaluation at once. Malformed
//!   messages are counted (`scalegate_source_errors_total{source="kafka"}`),
//!   logged once per burst and skipped.
//! - **lag**: a metric per workload, the consumer-group lag of a topic: per
//!   partition, high watermark − committed offset, summed. A partition the
//!   group never committed counts as KEDA counts it: 1 with
//!   `offset_reset: latest` (the default), the whole retained log
//!   (high − low watermark) with `earliest`.
//! - **audit**: every applied decision published as JSON to a topic, keyed
//!   by workload.
//!
//! `options` passes librdkafka properties through (`security.protocol`,
//! `sasl.mechanism`, `sasl.username`, `ssl.ca.location`, …); a secret can be
//! read from a file with `sasl_password_file`. librdkafka reconnects by
//! itself (the directive consumer retries at least every second); lost
//! connections are counted, and while the broker is away the lag goes stale
//! (no scale-down).

mod audit;
mod client;
mod directives;
mod lag;

pub use client::{Audit, CloseAside, DirectiveTopic, Lag, OffsetReset, Route, Settings};
pub use directives::parse_directive;

use crate::signals::poll;
use crate::signals::source::{Context, FieldError, Job, Source, Started, from_value};
use std::sync::Arc;
use std::time::Duration;

pub struct Kafka;

impl Source for Kafka {
    const NAME: &'static str = "kafka";
    const METRIC: Option<&'static str> = Some("kafka_lag");
    const LABEL: &'static str = "kafka";
    const TITLE: &'static str = "Kafka";
    type Settings = Settings;
    type Metric = Lag;

    fn settings(value: serde_json::Value) -> Result<Settings, FieldError> {
        let settings: Settings = from_value(value)?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate_metric(lag: &Lag) -> Result<(), FieldError> {
        lag.validate()
    }

    fn refresh(settings: &Settings) -> Option<Duration> {
        Some(settings.lag_interval)
    }

    /// The lag poller (with lag metrics), the directive consumer (with
    /// directive topics) and the audit producer (with an audit topic).
    fn start(settings: &Settings, jobs: Vec<Job<&Lag>>, context: &Context) -> Result<Started, FieldError> {
        let mut started = Started::default();
        // a bad password file or option fails here, before anything runs
        settings.client_config()?;
        if !jobs.is_empty() {
            started.tasks.push(lag::poller(settings, poll::owned(jobs), context));
        }
        if !settings.directives.is_empty() {
            started.tasks.push(directives::consumer(settings, context)?);
        }
        if let Some(audit) = &settings.audit {
            started.sink = Some(Arc::new(audit::AuditProducer::new(settings, audit, context.metrics.clone())?));
        }
        Ok(started)
    }
}
