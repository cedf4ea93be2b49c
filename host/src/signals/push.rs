//! Pushed inputs: metrics and signals that arrive through the admin API
//! (`POST /v1/signals`) rather than being read. A workload declares a
//! pushed metric with `push: {}`; it is fresh for three of the workload's
//! intervals by default. Nothing runs for this source: the admin API writes
//! into the hub.

use super::source::{Context, FieldError, Job, Nothing, Source, Started, from_value};
use serde::Deserialize;
use std::time::Duration;

pub struct Push;

/// `workloads[].metrics[].push`: nothing to set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pushed {}

impl Source for Push {
    const NAME: &'static str = "push";
    const METRIC: Option<&'static str> = Some("push");
    const LABEL: &'static str = "push";
    const TITLE: &'static str = "push";
    type Settings = Nothing;
    type Metric = Pushed;

    fn settings(value: serde_json::Value) -> Result<Nothing, FieldError> {
        from_value(value)
    }

    fn default_settings() -> Option<Nothing> {
        Some(Nothing {})
    }

    fn refresh(_: &Nothing) -> Option<Duration> {
        None
    }

    fn start(_: &Nothing, _: Vec<Job<&Pushed>>, _: &Context) -> Result<Started, FieldError> {
        Ok(Started::default())
    }
}
