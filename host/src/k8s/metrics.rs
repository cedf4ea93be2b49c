//! `metrics.k8s.io/v1beta1` `PodMetrics` objects as metrics-server serves
//! them, read into [`PodUsage`].

use crate::cluster::PodUsage;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Parses one `PodMetrics` object (everything but its metadata).
pub fn parse(pod: &str, object: &serde_json::Value) -> Result<PodUsage, String> {
    #[derive(Deserialize)]
    struct Raw {
        timestamp: String,
        window: String,
        #[serde(default)]
        containers: Vec<Container>,
    }
    #[derive(Deserialize)]
    struct Container {
        name: String,
        #[serde(default)]
        usage: BTreeMap<String, String>,
    }
    let raw = Raw::deserialize(object).map_err(|e| format!("PodMetrics {pod}: {e}"))?;
    let timestamp: k8s_openapi::jiff::Timestamp =
        raw.timestamp.parse().map_err(|e| format!("PodMetrics {pod}: timestamp {:?}: {e}", raw.timestamp))?;
    let window = go_duration(&raw.window).ok_or_else(|| format!("PodMetrics {pod}: window {:?}", raw.window))?;
    let mut containers = BTreeMap::new();
    for container in raw.containers {
        let mut usage = BTreeMap::new();
        for (resource, quantity) in container.usage {
            let amount = crate::k8s::quantity::parse(&quantity)
                .filter(|a| a.is_finite())
                .ok_or_else(|| format!("PodMetrics {pod}: container {}: {resource} {quantity:?}", container.name))?;
            usage.insert(resource, amount);
        }
        containers.insert(container.name, usage);
    }
    Ok(PodUsage {
        pod: pod.to_string(),
        timestamp_ms: timestamp.as_millisecond().max(0) as u64,
        window_ms: window.as_millis() as u64,
        containers,
    })
}

/// A Go `time.Duration` string as the API serializes it (`30s`, `15.02s`, `1m0s`).
fn go_duration(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (number, tail) = rest.split_at(digits);
        let number: f64 = number.parse().ok()?;
        let unit = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit);
        let seconds = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += number * seconds;
        rest = tail;
    }
    Some(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_what_metrics_server_serves() {
        let object = json!({
            "timestamp": "2026-11-23T10:00:00Z", "window": "15.028s",
            "containers": [
                {"name": "app", "usage": {"cpu": "250123456n", "memory": "128Mi"}},
                {"name": "proxy", "usage": {"cpu": "5m", "memory": "20480Ki"}}
            ]
        });
        let parsed = parse("web-1", &object).unwrap();
        assert_eq!(parsed.timestamp_ms, 1_795_428_000_000);
        assert_eq!(parsed.window_ms, 15_028);
        assert!((parsed.containers["app"]["cpu"] - 0.250123456).abs() < 1e-12);
        assert_eq!(parsed.containers["proxy"]["memory"], 20.0 * 1024.0 * 1024.0);
        let bad = json!({"timestamp": "yesterday", "window": "30s", "containers": []});
        assert!(parse("web-1", &bad).unwrap_err().contains("timestamp"));
        let bad = json!({"timestamp": "2026-11-23T10:00:00Z", "window": "30s",
                         "containers": [{"name": "app", "usage": {"cpu": "lots"}}]});
        assert!(parse("web-1", &bad).unwrap_err().contains("container app: cpu \"lots\""));
    }

    #[test]
    fn go_durations() {
        for (text, ms) in [("30s", 30_000), ("1m0s", 60_000), ("1m30.5s", 90_500), ("250ms", 250), ("0", 0)] {
            assert_eq!(go_duration(text), Some(Duration::from_millis(ms)), "{text}");
        }
        for bad in ["", "s", "30", "3x"] {
            assert_eq!(go_duration(bad), None, "{bad:?}");
        }
    }
}
