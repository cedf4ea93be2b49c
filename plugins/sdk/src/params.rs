//! Typed params: one serde type gives both the parser and the JSON Schema
//! the policy publishes, so they cannot drift.
//!
//! [`parse`] checks the params against the schema generated from the type
//! first (types, required fields, unknown fields, bounds such as
//! `#[schemars(range(min = 1))]` or `extend("exclusiveMinimum" = 0)`, enums,
//! array lengths), then deserializes; either failure is an `invalid-params`
//! error naming the field (`params.levels.high: …`). The checker covers the
//! keywords schemars generates; others (`format`, `pattern`, …) are ignored.

use crate::types::PolicyError;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Params of a policy that takes none: `{}` (or absent).
#[derive(Debug, Clone, Copy, Default, serde::Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct None {}

/// The JSON Schema (draft 2020-12) of `P`, as compact text.
pub fn schema<P: JsonSchema>() -> String {
    schema_value::<P>().to_string()
}

fn schema_value<P: JsonSchema>() -> Value {
    let schema = schemars::generate::SchemaSettings::draft2020_12().into_generator().into_root_schema_for::<P>();
    let mut value = schema.as_value().clone();
    bound_integers(&mut value);
    value
}

/// schemars marks sized integers with a `format` (`uint32`, …) that
/// validators need not check; the bounds it implies are added as
/// `minimum`/`maximum`, so the published schema refuses what the parser would.
fn bound_integers(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            let range = match map.get("format").and_then(Value::as_str) {
                Some("int8") => Some((i8::MIN as f64, i8::MAX as f64)),
                Some("uint8") => Some((0.0, u8::MAX as f64)),
                Some("int16") => Some((i16::MIN as f64, i16::MAX as f64)),
                Some("uint16") => Some((0.0, u16::MAX as f64)),
                Some("int32") => Some((i32::MIN as f64, i32::MAX as f64)),
                Some("uint32") => Some((0.0, u32::MAX as f64)),
                Some("int64") => Some((i64::MIN as f64, i64::MAX as f64)),
                Some("uint64") => Some((0.0, u64::MAX as f64)),
                _ => None,
            };
            if let Some((min, max)) = range {
                let number = |x: f64| serde_json::Number::from_f64(x).map(Value::Number);
                let tighter_min = map.get("minimum").and_then(Value::as_f64).is_none_or(|m| m < min);
                if tighter_min && let Some(n) = number(min) {
                    map.insert("minimum".into(), n);
                }
                let tighter_max = map.get("maximum").and_then(Value::as_f64).is_none_or(|m| m > max);
                if tighter_max && let Some(n) = number(max) {
                    map.insert("maximum".into(), n);
                }
            }
            map.values_mut().for_each(bound_integers);
        }
        Value::Array(items) => items.iter_mut().for_each(bound_integers),
        _ => {}
    }
}

/// `params` text (what the snapshot carries) as `P`, checked against `P`'s schema.
pub fn parse<P: DeserializeOwned + JsonSchema>(text: &str) -> Result<P, PolicyError> {
    let invalid = |m: String| PolicyError::InvalidParams(m);
    let value: Value = match text.trim() {
        "" | "null" => Value::Object(Map::new()),
        text => serde_json::from_str(text).map_err(|e| invalid(format!("params are not JSON: {e}")))?,
    };
    let schema = schema_value::<P>();
    check(&schema, &schema, &value, "params").map_err(invalid)?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." { "params".to_string() } else { format!("params.{path}") };
        invalid(format!("{at}: {}", e.inner()))
    })
}

/// Checks `value` at `at` against `schema` (`root` resolves `$ref`s).
pub fn check(root: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let Some(schema) = schema.as_object() else {
        // `true` accepts anything, `false` nothing
        return if schema == &Value::Bool(false) { Err(format!("{at}: not allowed")) } else { Ok(()) };
    };
    if let Some(Value::String(reference)) = schema.get("$ref") {
        let target = reference
            .strip_prefix("#/")
            .map(|path| path.split('/').try_fold(root, |node, key| node.get(key)))
            .unwrap_or(Some(root));
        match target {
            Some(target) => check(root, target, value, at)?,
            None => return Err(format!("{at}: schema reference {reference} does not resolve")),
        }
    }
    if let Some(types) = schema.get("type") {
        let allowed: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !allowed.is_empty() && !allowed.iter().any(|t| is_type(value, t)) {
            return Err(format!("{at}: expected {}, got {}", allowed.join(" or "), describe(value)));
        }
    }
    if let Some(Value::Array(options)) = schema.get("enum")
        && !options.contains(value)
    {
        let options: Vec<String> = options.iter().map(Value::to_string).collect();
        return Err(format!("{at}: {} is not one of {}", short(value), options.join(", ")));
    }
    if let Some(constant) = schema.get("const")
        && constant != value
    {
        return Err(format!("{at}: must be {constant}"));
    }
    if let Some(number) = value.as_f64() {
        bounds(schema, number, at)?;
    }
    if let Value::String(text) = value {
        if let Some(Value::String(pattern)) = schema.get("pattern")
            && !matches(pattern, text)
        {
            return Err(format!("{at}: {} does not match {pattern}", short(value)));
        }
        let length = text.chars().count() as f64;
        if schema.get("minLength").and_then(Value::as_f64).is_some_and(|min| length < min) {
            return Err(format!("{at}: shorter than {} characters", schema["minLength"]));
        }
        if schema.get("maxLength").and_then(Value::as_f64).is_some_and(|max| length > max) {
            return Err(format!("{at}: longer than {} characters", schema["maxLength"]));
        }
    }
    if let Value::Array(items) = value {
        let count = items.len() as f64;
        if schema.get("minItems").and_then(Value::as_f64).is_some_and(|min| count < min) {
            return Err(format!("{at}: needs at least {} items, has {}", schema["minItems"], items.len()));
        }
        if schema.get("maxItems").and_then(Value::as_f64).is_some_and(|max| count > max) {
            return Err(format!("{at}: takes at most {} items, has {}", schema["maxItems"], items.len()));
        }
        if let Some(item) = schema.get("items") {
            for (i, v) in items.iter().enumerate() {
                check(root, item, v, &format!("{at}[{i}]"))?;
            }
        }
    }
    if let Value::Object(fields) = value {
        object(root, schema, fields, at)?;
    }
    if let Some(Value::Array(all)) = schema.get("allOf") {
        for s in all {
            check(root, s, value, at)?;
        }
    }
    for keyword in ["anyOf", "oneOf"] {
        if let Some(Value::Array(branches)) = schema.get(keyword) {
            let results: Vec<Result<(), String>> = branches.iter().map(|s| check(root, s, value, at)).collect();
            let passed = results.iter().filter(|r| r.is_ok()).count();
            if passed == 0 {
                // a branch of the value's type explains best (`null` or an object: the object's error)
                let wrong_type = format!("{at}: expected ");
                let errors: Vec<String> = results.into_iter().filter_map(Result::err).collect();
                let reason = errors.iter().find(|e| !e.starts_with(&wrong_type)).or(errors.first());
                return Err(reason.cloned().unwrap_or_else(|| format!("{at}: matches no allowed form")));
            }
            if keyword == "oneOf" && passed > 1 {
                return Err(format!("{at}: matches more than one allowed form"));
            }
        }
    }
    Ok(())
}

fn object(root: &Value, schema: &Map<String, Value>, fields: &Map<String, Value>, at: &str) -> Result<(), String> {
    if let Some(Value::Array(required)) = schema.get("required") {
        for name in required.iter().filter_map(Value::as_str) {
            if !fields.contains_key(name) {
                return Err(format!("{at}: missing field `{name}`"));
            }
        }
    }
    let count = fields.len() as f64;
    if schema.get("minProperties").and_then(Value::as_f64).is_some_and(|min| count < min) {
        return Err(format!("{at}: needs at least {} entries, has {}", schema["minProperties"], fields.len()));
    }
    if schema.get("maxProperties").and_then(Value::as_f64).is_some_and(|max| count > max) {
        return Err(format!("{at}: takes at most {} entries, has {}", schema["maxProperties"], fields.len()));
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    for (name, v) in fields {
        if let Some(names) = schema.get("propertyNames") {
            check(root, names, &Value::String(name.clone()), &format!("{at} key {name:?}"))?;
        }
        let path = format!("{at}.{name}");
        let by_pattern = schema.get("patternProperties").and_then(Value::as_object).map(|patterns| {
            patterns.iter().filter(|(pattern, _)| matches(pattern, name)).map(|(_, s)| s).collect::<Vec<_>>()
        });
        for s in by_pattern.iter().flatten() {
            check(root, s, v, &path)?;
        }
        match properties.and_then(|p| p.get(name)) {
            Some(s) => check(root, s, v, &path)?,
            None if by_pattern.as_ref().is_some_and(|p| !p.is_empty()) => {}
            None => match schema.get("additionalProperties") {
                Some(Value::Bool(false)) => {
                    let known: Vec<&str> =
                        properties.map(|p| p.keys().map(String::as_str).collect()).unwrap_or_default();
                    return Err(match known.is_empty() {
                        true => format!("{at}: unknown field `{name}`"),
                        false => format!("{at}: unknown field `{name}`, expected one of: {}", known.join(", ")),
                    });
                }
                Some(extra @ Value::Object(_)) => check(root, extra, v, &path)?,
                _ => {}
            },
        }
    }
    Ok(())
}

fn bounds(schema: &Map<String, Value>, number: f64, at: &str) -> Result<(), String> {
    let limit = |k: &str| schema.get(k).and_then(Value::as_f64);
    let fail = |rule: &str, bound: f64| Err(format!("{at}: must be {rule} {bound}, got {number}"));
    if let Some(min) = limit("minimum").filter(|min| number < *min) {
        return fail(">=", min);
    }
    if let Some(max) = limit("maximum").filter(|max| number > *max) {
        return fail("<=", max);
    }
    if let Some(min) = limit("exclusiveMinimum").filter(|min| number <= *min) {
        return fail(">", min);
    }
    if let Some(max) = limit("exclusiveMaximum").filter(|max| number >= *max) {
        return fail("<", max);
    }
    Ok(())
}

/// Whether `text` matches a schema `pattern` (ECMA-262 in the standard; the
/// subset schemars emits and Rust's regex syntax agree on). A pattern that
/// does not compile matches nothing, so the params are refused visibly.
fn matches(pattern: &str, text: &str) -> bool {
    regex_lite::Regex::new(pattern).is_ok_and(|re| re.is_match(text))
}

/// Integers are what serde reads as one (`3`, not `3.0`).
fn is_type(value: &Value, name: &str) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        _ => true,
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Number(_) => format!("the number {value}"),
        Value::String(_) => format!("the string {}", short(value)),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// A value for a message, never quoting more than 40 characters.
fn short(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(40) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Levels {
        #[schemars(range(min = 0))]
        low: f64,
        high: f64,
    }

    #[derive(Debug, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Example {
        metric: String,
        #[schemars(extend("exclusiveMinimum" = 0))]
        target: f64,
        #[serde(default)]
        max_age_seconds: Option<u32>,
        #[serde(default)]
        levels: Option<Levels>,
        #[serde(default)]
        #[schemars(length(min = 1, max = 2))]
        kinds: Vec<String>,
    }

    fn error(text: &str) -> String {
        match parse::<Example>(text) {
            Err(PolicyError::InvalidParams(m)) => m,
            other => panic!("expected invalid-params for {text}, got {other:?}"),
        }
    }

    #[test]
    fn parses_what_the_schema_accepts() {
        let p: Example = parse(r#"{"metric":"rps","target":2.5,"levels":{"low":0,"high":9},"kinds":["a"]}"#).unwrap();
        assert_eq!((p.metric.as_str(), p.target, p.levels.unwrap().high), ("rps", 2.5, 9.0));
    }

    #[test]
    fn errors_name_the_field_and_the_rule() {
        assert_eq!(error(r#"{"target":1}"#), "params: missing field `metric`");
        assert_eq!(error(r#"{"metric":"rps","target":0}"#), "params.target: must be > 0, got 0");
        assert_eq!(error(r#"{"metric":"rps","target":"1"}"#), "params.target: expected number, got the string \"1\"");
        assert_eq!(
            error(r#"{"metric":"rps","target":1,"levels":{"low":-1,"high":1}}"#),
            "params.levels.low: must be >= 0, got -1"
        );
        assert!(error(r#"{"metric":"rps","target":1,"extra":1}"#).starts_with("params: unknown field `extra`"));
        assert_eq!(error(r#"{"metric":"rps","target":1,"kinds":[]}"#), "params.kinds: needs at least 1 items, has 0");
        assert_eq!(
            error(r#"{"metric":"rps","target":1,"max_age_seconds":1.5}"#),
            "params.max_age_seconds: expected integer or null, got the number 1.5"
        );
        assert!(error("{").starts_with("params are not JSON"));
    }

    #[test]
    fn map_keys_follow_the_pattern() {
        #[derive(Debug, Deserialize, JsonSchema)]
        struct Levels {
            #[allow(dead_code)]
            levels: std::collections::BTreeMap<u32, f64>,
        }
        parse::<Levels>(r#"{"levels":{"1":2.0,"12":3}}"#).unwrap();
        let Err(PolicyError::InvalidParams(m)) = parse::<Levels>(r#"{"levels":{"one":2}}"#) else { panic!() };
        assert_eq!(m, "params.levels: unknown field `one`");
    }

    #[test]
    fn empty_params_are_an_empty_object() {
        parse::<None>("").unwrap();
        parse::<None>("null").unwrap();
        assert!(parse::<None>(r#"{"x":1}"#).is_err());
    }

    #[test]
    fn the_published_schema_is_the_checked_one() {
        let schema: Value = serde_json::from_str(&schema::<Example>()).unwrap();
        assert_eq!(schema["properties"]["target"]["exclusiveMinimum"], 0);
        assert_eq!(schema["required"], serde_json::json!(["metric", "target"]));
        assert_eq!(schema["additionalProperties"], false);
        // u32 publishes its bounds
        let any = &schema["properties"]["max_age_seconds"];
        assert_eq!((any["minimum"].as_f64(), any["maximum"].as_f64()), (Some(0.0), Some(4294967295.0)));
    }
}
