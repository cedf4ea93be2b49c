//! Directives: a consumer of topics carrying `ScaleSignal` JSON messages,
//! e.g. `rtc.control.scale`. Each message is routed to a workload — by the
//! message key or by a JSON field, matched against the workload's name, its
//! target's `namespace/name` and its target's bare name — becomes a signal
//! in its snapshot and triggers an evaluation at once. Malformed messages
//! are counted (`scalegate_source_errors_total{source="kafka"}`), logged
//! once per burst and skipped.

use super::client::{ClientWatch, CloseAside, Route, Settings, set_default};
use crate::signals::source::{BurstLog, Context, FieldError, SourceError, SourceTask};
use crate::snapshot::{ScaleAction, Signal};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use std::collections::HashMap;
use std::time::Duration;

/// A `ScaleSignal` message as a signal for one workload: (workload, signal)
/// or (error kind, why).
pub fn parse_directive(
    topic: &str,
    route: &Route,
    resolve: impl Fn(&str) -> Option<String>,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    record_ms: Option<u64>,
    now_ms: u64,
) -> Result<(String, Signal), SourceError> {
    let payload = payload.ok_or_else(|| SourceError::Parse("empty message".to_string()))?;
    let message: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| SourceError::Parse(format!("not JSON: {e}")))?;
    let object = message.as_object().ok_or_else(|| SourceError::Parse("not a JSON object".to_string()))?;
    let routing = match route {
        Route::Key => key.map(|k| String::from_utf8_lossy(k).into_owned()),
        Route::Field(field) => object.get(field).and_then(|v| v.as_str()).map(str::to_string),
    }
    .ok_or_else(|| SourceError::Route(format!("no routing value ({route:?}) in the message")))?;
    let workload = resolve(&routing).ok_or_else(|| SourceError::Route(format!("no workload {routing:?}")))?;

    let field = |names: &[&str]| names.iter().find_map(|n| object.get(*n)).filter(|v| !v.is_null());
    let target_replicas =
        match field(&["targetReplicas", "target_replicas"]) {
            None => None,
            Some(v) => Some(v.as_u64().and_then(|r| u32::try_from(r).ok()).ok_or_else(|| {
                SourceError::Invalid(format!("targetReplicas must be a non-negative integer, got {v}"))
            })?),
        };
    let delta = match field(&["delta", "replicaDelta", "replica_delta"]) {
        None => None,
        Some(v) => Some(v.as_i64().ok_or_else(|| SourceError::Invalid(format!("delta must be an integer, got {v}")))?),
    };
    let action = match field(&["action", "direction"]) {
        None => delta.map(|d| {
            if d > 0 {
                ScaleAction::ScaleOut
            } else if d < 0 {
                ScaleAction::ScaleIn
            } else {
                ScaleAction::Hold
            }
        }),
        Some(v) => {
            let text = v.as_str().ok_or_else(|| SourceError::Invalid(format!("action must be a string, got {v}")))?;
            Some(match text.to_ascii_lowercase().replace('-', "_").as_str() {
                "scale_out" | "out" | "up" | "scale_up" => ScaleAction::ScaleOut,
                "scale_in" | "in" | "down" | "scale_down" => ScaleAction::ScaleIn,
                "hold" | "none" | "no_change" | "noop" => ScaleAction::Hold,
                other => return Err(SourceError::Invalid(format!("unknown action {other:?}"))),
            })
        }
    };
    let urgency = match field(&["urgency", "urgencyLevel", "urgency_level"]) {
        None => None,
        Some(v) => Some(match (v.as_u64(), v.as_str().map(str::to_ascii_lowercase).as_deref()) {
            (Some(level), _) if level <= 3 => level as u8,
            (_, Some("low" | "routine")) => 0,
            (_, Some("normal" | "medium")) => 1,
            (_, Some("high")) => 2,
            (_, Some("critical" | "urgent")) => 3,
            _ => {
                return Err(SourceError::Invalid(format!("urgency must be 0-3 or low/medium/high/critical, got {v}")));
            }
        }),
    };
    let timestamp_ms = match field(&["timestampMs", "timestamp_ms", "ts", "timestamp"]) {
        Some(v) if v.is_u64() => v.as_u64().unwrap_or(now_ms),
        Some(v) => match v.as_str().map(|t| t.parse::<k8s_openapi::jiff::Timestamp>()) {
            Some(Ok(time)) => time.as_millisecond().max(0) as u64,
            _ => return Err(SourceError::Invalid(format!("timestamp must be Unix ms or RFC 3339, got {v}"))),
        },
        None => record_ms.unwrap_or(now_ms),
    };
    let reason = field(&["reason", "message"]).and_then(|v| v.as_str()).unwrap_or_default().to_string();
    let known = [
        "targetReplicas",
        "target_replicas",
        "action",
        "direction",
        "urgency",
        "urgencyLevel",
        "urgency_level",
        "timestampMs",
        "timestamp_ms",
        "ts",
        "timestamp",
        "reason",
        "message",
    ];
    let attributes = object
        .iter()
        .filter(|(k, _)| !known.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string)))
        .collect();
    let signal = Signal {
        kind: "scale-signal".into(),
        source: format!("kafka:{topic}"),
        timestamp_ms,
        action,
        target_replicas,
        urgency,
        reason,
        attributes,
    };
    Ok((workload, signal))
}

/// Consumes the directive topics until the context's shutdown.
pub fn consumer(settings: &Settings, context: &Context) -> Result<SourceTask, FieldError> {
    let mut config = settings.client_config()?;
    config.set("group.id", &settings.group_id).set("enable.auto.commit", "true");
    // a group's first start skips old directives unless options say otherwise
    set_default(&mut config, "auto.offset.reset", "latest");
    set_default(&mut config, "session.timeout.ms", "10000");
    // directives are few and urgent: do not let a fetch idle on the broker
    // for librdkafka's default 500 ms when a message may arrive meanwhile
    set_default(&mut config, "fetch.wait.max.ms", "10");
    // after an outage, try the brokers again at least every second instead
    // of librdkafka's backoff of up to 10 s: directives are waiting
    set_default(&mut config, "reconnect.backoff.max.ms", "1000");
    let metrics = context.metrics.clone();
    let consumer: CloseAside<StreamConsumer<ClientWatch>> = CloseAside::new(
        config
            .create_with_context(ClientWatch::counting(metrics.clone()))
            .map_err(|e| FieldError::new("", format!("cannot create the consumer: {e}")))?,
    );
    let topics: Vec<&str> = settings.directives.iter().map(|d| d.topic.as_str()).collect();
    consumer.subscribe(&topics).map_err(|e| FieldError::new("directives", e.to_string()))?;
    let by_topic: HashMap<String, Route> =
        settings.directives.iter().map(|d| (d.topic.clone(), d.route.clone())).collect();
    let (hub, clock, shutdown) = (context.hub.clone(), context.clock.clone(), context.shutdown.clone());
    Ok(Box::pin(async move {
        let mut bad = BurstLog::new("kafka directive skipped");
        let mut broken = BurstLog::new("kafka consumer error");
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => return,
                message = consumer.recv() => message,
            };
            let message = match message {
                Ok(message) => message,
                Err(error) => {
                    metrics.count_source_error("kafka", "consumer");
                    broken.note(&error.to_string());
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let route = by_topic.get(message.topic()).cloned().unwrap_or_default();
            let record_ms = message.timestamp().to_millis().and_then(|t| u64::try_from(t).ok());
            match parse_directive(
                message.topic(),
                &route,
                |name| hub.resolve(name),
                message.key(),
                message.payload(),
                record_ms,
                clock.now_ms(),
            ) {
                Ok((workload, signal)) => {
                    metrics.mark_source_success("kafka");
                    if let Err(error) = hub.signal(&workload, signal) {
                        bad.note(&error.to_string());
                    }
                }
                Err(error) => {
                    metrics.count_source_error("kafka", error.kind());
                    bad.note(&format!("{}[{}]@{}: {error}", message.topic(), message.partition(), message.offset()));
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> HashMap<String, String> {
        [("rtc/socket", "rtc/socket"), ("socket", "rtc/socket")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn parse(payload: &str) -> Result<(String, Signal), SourceError> {
        let routes = routes();
        let resolve = |name: &str| routes.get(name).cloned();
        parse_directive("rtc.control.scale", &Route::default(), resolve, None, Some(payload.as_bytes()), Some(5), 9)
    }

    #[test]
    fn scale_signals_in_either_case_style_become_signals() {
        let (workload, signal) = parse(
            r#"{"target": "socket", "targetReplicas": 12, "urgency": "critical", "reason": "lag spike", "nodeId": "lb-1", "score": 0.9}"#,
        )
        .unwrap();
        assert_eq!(workload, "rtc/socket");
        assert_eq!((signal.target_replicas, signal.urgency), (Some(12), Some(3)));
        assert_eq!((signal.timestamp_ms, signal.reason.as_str()), (5, "lag spike"));
        assert!(signal.attributes.contains(&("nodeId".into(), "lb-1".into())));
        assert!(signal.attributes.contains(&("score".into(), "0.9".into())));
        let (_, signal) =
            parse(r#"{"target": "rtc/socket", "action": "SCALE-OUT", "urgency_level": 2, "ts": 77}"#).unwrap();
        assert_eq!((signal.action, signal.urgency, signal.timestamp_ms), (Some(ScaleAction::ScaleOut), Some(2), 77));
        let (_, signal) = parse(r#"{"target": "socket", "delta": -1}"#).unwrap();
        assert_eq!(signal.action, Some(ScaleAction::ScaleIn));
        assert!(signal.attributes.contains(&("delta".into(), "-1".into())));
    }

    #[test]
    fn malformed_messages_name_the_problem() {
        for (payload, kind, needle) in [
            ("not json", "parse", "not JSON"),
            ("[1, 2]", "parse", "not a JSON object"),
            (r#"{"targetReplicas": 3}"#, "route", "no routing value"),
            (r#"{"target": "checkout", "targetReplicas": 3}"#, "route", "no workload \"checkout\""),
            (r#"{"target": "socket", "targetReplicas": -3}"#, "invalid", "targetReplicas"),
            (r#"{"target": "socket", "action": "sideways"}"#, "invalid", "sideways"),
            (r#"{"target": "socket", "urgency": 7}"#, "invalid", "urgency"),
            (r#"{"target": "socket", "ts": "yesterday"}"#, "invalid", "timestamp"),
        ] {
            let error = parse(payload).unwrap_err();
            assert_eq!(error.kind(), kind, "{payload}: {error}");
            assert!(error.to_string().contains(needle), "{payload}: {error}");
        }
        let routes = routes();
        let resolve = |name: &str| routes.get(name).cloned();
        let by_key = parse_directive("t", &Route::Key, resolve, Some(b"socket"), Some(b"{}"), None, 1).unwrap();
        assert_eq!(by_key.0, "rtc/socket");
    }
}
