//! A load trace for `scalegate simulate`: per workload, the load over time
//! (requests per second) and optionally the values of its metrics, as CSV
//! or JSON rows. Values hold from their row until the workload's next row
//! (a step function), which is how sampled monitoring data reads.
//!
//! CSV: a header `time,workload,load[,<metric>…]`, one row per workload and
//! time; `time` in seconds from the start (`90`, `90.5`) or a duration
//! (`1m 30s`); an empty cell means "no value in this row" (the previous
//! one holds). JSON: an array of objects with the same fields
//! (`{"time": "1m", "workload": "default/web", "load": 120, "backlog": 4}`).

use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// One workload's series, rows sorted by time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    /// (time ms from start, load rps), step-wise.
    pub load: Vec<(u64, f64)>,
    /// Metric name → (time ms, value), step-wise.
    pub metrics: BTreeMap<String, Vec<(u64, f64)>>,
    /// Requests per second one pod serves at full utilization, when the trace says.
    pub pod_rps: Option<f64>,
}

/// A trace column `pod.<metric>` feeds `<metric>` per ready pod: the
/// workload's total, shared by them.
pub const POD_PREFIX: &str = "pod.";
/// A trace column `forecast.<metric>` feeds `<metric>` as a forecast: each
/// step, the column's own values from then on, over [`FORECAST_HORIZON`].
pub const FORECAST_PREFIX: &str = "forecast.";
/// Trace columns `directive.target_replicas`, `directive.delta` and
/// `directive.urgency` are events: a row with any of them is one
/// `scale-signal` at its time (delivered at the next step).
pub const DIRECTIVE_PREFIX: &str = "directive.";
/// Trace columns `signal.<kind>` and `signal.<kind>.<attribute>` are events
/// too: a row with values in them is one signal of that kind, each value an
/// attribute (`value` for `signal.<kind>`), as `POST /v1/signals` would
/// deliver it, at the next step.
pub const SIGNAL_PREFIX: &str = "signal.";

/// How far ahead a fed forecast reaches.
pub const FORECAST_HORIZON: Duration = Duration::from_secs(2 * 3600);

/// What a trace column holds, read from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column<'a> {
    /// A metric's values: `<metric>`, `pod.<metric>` or `forecast.<metric>`.
    Metric(&'a str),
    /// A field of the row's scale directive (`directive.<field>`).
    Directive(DirectiveField),
    /// An attribute of the row's signal of `kind` (`signal.<kind>`:
    /// `value`; `signal.<kind>.<attribute>`).
    Signal { kind: &'a str, attribute: &'a str },
}

/// The fields a trace's scale directive has, as a Kafka `ScaleSignal` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectiveField {
    TargetReplicas,
    Delta,
    Urgency,
}

impl<'a> Column<'a> {
    /// The column `name` is, or why it cannot be used: an event column must
    /// name what it is.
    pub fn parse(name: &'a str) -> Result<Column<'a>, String> {
        if let Some(field) = name.strip_prefix(DIRECTIVE_PREFIX) {
            return match field {
                "target_replicas" => Ok(Column::Directive(DirectiveField::TargetReplicas)),
                "delta" => Ok(Column::Directive(DirectiveField::Delta)),
                "urgency" => Ok(Column::Directive(DirectiveField::Urgency)),
                _ => Err(format!(
                    "`{name}`: a directive column is `directive.target_replicas`, `directive.delta` or `directive.urgency`"
                )),
            };
        }
        if let Some(rest) = name.strip_prefix(SIGNAL_PREFIX) {
            let (kind, attribute) = rest.split_once('.').unwrap_or((rest, "value"));
            if kind.is_empty() || attribute.is_empty() {
                return Err(format!("`{name}`: a signal column is `signal.<kind>` or `signal.<kind>.<attribute>`"));
            }
            return Ok(Column::Signal { kind, attribute });
        }
        if name.is_empty() {
            return Err("a column has no name".into());
        }
        Ok(Column::Metric(name))
    }
}

/// The metric a trace column feeds (`None` for an event column, or one
/// that cannot be used).
pub fn fed_metric(column: &str) -> Option<&str> {
    match Column::parse(column) {
        Ok(Column::Metric(name)) => {
            Some(name.strip_prefix(POD_PREFIX).or_else(|| name.strip_prefix(FORECAST_PREFIX)).unwrap_or(name))
        }
        _ => None,
    }
}

/// A parsed trace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trace {
    /// Workload name (as in the config: `namespace/name` or its `name`) → series.
    pub workloads: BTreeMap<String, Series>,
    /// The last row's time.
    pub end_ms: u64,
}

/// Why a trace cannot be used; names the row and field.
#[derive(Debug, thiserror::Error)]
#[error("{at}: {message}")]
pub struct TraceError {
    pub at: String,
    pub message: String,
}

fn error(at: impl Into<String>, message: impl Into<String>) -> TraceError {
    TraceError { at: at.into(), message: message.into() }
}

/// The value in effect at `t_ms` of a step series (`None` before its first row).
pub fn at(series: &[(u64, f64)], t_ms: u64) -> Option<f64> {
    let index = series.partition_point(|(t, _)| *t <= t_ms);
    index.checked_sub(1).map(|i| series[i].1)
}

fn time_ms(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return if seconds.is_finite() && seconds >= 0.0 {
            Ok((seconds * 1000.0).round() as u64)
        } else {
            Err(format!("time must be seconds ≥ 0 or a duration, got {text:?}"))
        };
    }
    humantime::parse_duration(text)
        .map(|d| d.as_millis() as u64)
        .map_err(|e| format!("time must be seconds ≥ 0 or a duration (`1m 30s`), got {text:?}: {e}"))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum JsonTime {
    Seconds(f64),
    Text(String),
}

#[derive(Deserialize)]
struct JsonRow {
    time: JsonTime,
    workload: String,
    #[serde(default)]
    load: Option<f64>,
    #[serde(flatten)]
    metrics: BTreeMap<String, f64>,
}

impl Trace {
    /// Parses CSV or JSON (told apart by the first non-blank character).
    pub fn parse(text: &str) -> Result<Trace, TraceError> {
        if text.trim_start().starts_with('[') { Trace::parse_json(text) } else { Trace::parse_csv(text) }
    }

    fn parse_json(text: &str) -> Result<Trace, TraceError> {
        let rows: Vec<JsonRow> = serde_json::from_str(text).map_err(|e| error("trace", e.to_string()))?;
        let mut trace = Trace::default();
        for (i, row) in rows.into_iter().enumerate() {
            let at = format!("row {}", i + 1);
            let t = match row.time {
                JsonTime::Seconds(s) => time_ms(&s.to_string()),
                JsonTime::Text(text) => time_ms(&text),
            }
            .map_err(|m| error(format!("{at}.time"), m))?;
            trace.add(&at, t, &row.workload, row.load, row.metrics.into_iter())?;
        }
        trace.finish()
    }

    fn parse_csv(text: &str) -> Result<Trace, TraceError> {
        let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
        let headers = reader.headers().map_err(|e| error("header", e.to_string()))?.clone();
        let column = |name: &str| headers.iter().position(|h| h == name);
        let (Some(time), Some(workload)) = (column("time"), column("workload")) else {
            return Err(error(
                "header",
                format!("needs `time` and `workload` columns, got {:?}", headers.iter().collect::<Vec<_>>()),
            ));
        };
        let load = column("load");
        let mut trace = Trace::default();
        for (i, record) in reader.records().enumerate() {
            let at = format!("line {}", i + 2);
            let record = record.map_err(|e| error(&at, e.to_string()))?;
            let t = time_ms(&record[time]).map_err(|m| error(format!("{at}.time"), m))?;
            let number = |index: usize| -> Result<Option<f64>, TraceError> {
                let cell = record.get(index).unwrap_or("");
                if cell.is_empty() {
                    return Ok(None);
                }
                cell.parse::<f64>()
                    .map(Some)
                    .map_err(|_| error(format!("{at}.{}", &headers[index]), format!("not a number: {cell:?}")))
            };
            let load_value = match load {
                Some(index) => number(index)?,
                None => None,
            };
            let mut metrics = Vec::new();
            for (index, name) in headers.iter().enumerate() {
                if index == time || index == workload || Some(index) == load {
                    continue;
                }
                if let Some(value) = number(index)? {
                    metrics.push((name.to_string(), value));
                }
            }
            trace.add(&at, t, &record[workload], load_value, metrics.into_iter())?;
        }
        trace.finish()
    }

    fn add(
        &mut self,
        at: &str,
        t_ms: u64,
        workload: &str,
        load: Option<f64>,
        metrics: impl Iterator<Item = (String, f64)>,
    ) -> Result<(), TraceError> {
        if workload.is_empty() {
            return Err(error(format!("{at}.workload"), "must not be empty"));
        }
        let series = self.workloads.entry(workload.to_string()).or_default();
        if let Some(load) = load {
            if !load.is_finite() || load < 0.0 {
                return Err(error(format!("{at}.load"), format!("must be a finite number ≥ 0, got {load}")));
            }
            series.load.push((t_ms, load));
        }
        for (name, value) in metrics {
            Column::parse(&name).map_err(|m| error(format!("{at}.{name}"), m))?;
            if !value.is_finite() {
                return Err(error(format!("{at}.{name}"), "must be finite"));
            }
            if name == "pod_rps" {
                if value <= 0.0 {
                    return Err(error(format!("{at}.pod_rps"), format!("must be > 0, got {value}")));
                }
                series.pod_rps.get_or_insert(value);
                continue;
            }
            series.metrics.entry(name).or_default().push((t_ms, value));
        }
        self.end_ms = self.end_ms.max(t_ms);
        Ok(())
    }

    fn finish(mut self) -> Result<Trace, TraceError> {
        if self.workloads.is_empty() {
            return Err(error("trace", "no rows"));
        }
        for series in self.workloads.values_mut() {
            series.load.sort_by_key(|(t, _)| *t);
            for values in series.metrics.values_mut() {
                values.sort_by_key(|(t, _)| *t);
            }
        }
        Ok(self)
    }

    /// Every metric name the trace gives a value for.
    pub fn metric_names(&self, workload: &str) -> Vec<&str> {
        self.workloads.get(workload).map(|s| s.metrics.keys().map(String::as_str).collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_become_step_series_per_workload() {
        let trace = Trace::parse(
            "time,workload,load,backlog\n0,shop/web,100,\n60,shop/web,250,3\n1m 30s,shop/web,,0\n0,rtc/socket,10,\n",
        )
        .unwrap();
        let web = &trace.workloads["shop/web"];
        assert_eq!(web.load, [(0, 100.0), (60_000, 250.0)]);
        assert_eq!(web.metrics["backlog"], [(60_000, 3.0), (90_000, 0.0)]);
        assert_eq!(trace.end_ms, 90_000);
        assert_eq!(at(&web.load, 59_999), Some(100.0));
        assert_eq!(at(&web.load, 60_000), Some(250.0));
        assert_eq!(at(&web.metrics["backlog"], 10_000), None);
        assert_eq!(trace.workloads["rtc/socket"].load, [(0, 10.0)]);
        let sized = Trace::parse("time,workload,load,pod_rps\n0,a/b,10,25\n60,a/b,20,\n").unwrap();
        assert_eq!(sized.workloads["a/b"].pod_rps, Some(25.0));
        assert!(sized.workloads["a/b"].metrics.is_empty());
    }

    #[test]
    fn json_rows_read_the_same() {
        let csv = Trace::parse("time,workload,load,backlog\n0,shop/web,100,\n60,shop/web,250,3\n").unwrap();
        let json = Trace::parse(
            r#"[{"time": 0, "workload": "shop/web", "load": 100}, {"time": "1m", "workload": "shop/web", "load": 250, "backlog": 3}]"#,
        )
        .unwrap();
        assert_eq!(csv, json);
    }

    #[test]
    fn bad_rows_are_named() {
        for (text, at, needle) in [
            ("when,workload\n", "header", "needs `time` and `workload`"),
            ("time,workload,load\n0,a/b,lots\n", "line 2.load", "not a number"),
            ("time,workload,load\nsoon,a/b,1\n", "line 2.time", "seconds ≥ 0 or a duration"),
            ("time,workload,load\n0,a/b,-1\n", "line 2.load", "≥ 0"),
            ("time,workload,load\n", "trace", "no rows"),
            (r#"[{"time": 0, "workload": "", "load": 1}]"#, "row 1.workload", "empty"),
            ("time,workload,directive.target\n0,a/b,3\n", "line 2.directive.target", "directive.target_replicas"),
            ("time,workload,signal.\n0,a/b,1\n", "line 2.signal.", "signal.<kind>"),
            (r#"[{"time": 0, "workload": "a/b", "signal.deploy.": 1}]"#, "row 1.signal.deploy.", "<attribute>"),
        ] {
            let err = Trace::parse(text).unwrap_err();
            assert_eq!(err.at, at, "{text}: {err}");
            assert!(err.message.contains(needle), "{err}");
        }
    }
}
