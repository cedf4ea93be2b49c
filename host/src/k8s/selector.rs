//! Label selectors in their string form, as the `/scale` subresource reports
//! them in `status.selector` (`app=web,tier in (a,b),!canary`), parsed into
//! kube's [`Selector`] so pods can be matched from the watch cache — with
//! the `key=value` pairs every matching pod must carry, which the cache's
//! label index looks up instead of testing every pod of the namespace.

use kube::core::{Expression, Selector, SelectorExt};
use std::collections::{BTreeMap, BTreeSet};

/// A parsed selector and the labels it requires.
#[derive(Debug, Clone)]
pub struct PodSelector {
    pub selector: Selector,
    /// `(key, value)` pairs a matching pod certainly carries (from `k=v` and
    /// `k in (v)`); empty when the selector has none.
    pub required: Vec<(String, String)>,
    /// True when `required` is the whole selector (only `k=v` terms, as a
    /// Deployment's `matchLabels` gives).
    pub only_required: bool,
}

impl PodSelector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.selector.matches(labels)
    }

    /// [`Self::matches`] on labels kept as a slice sorted by key (as the pod
    /// cache keeps them): the `k=v`-only selectors by binary search, the
    /// others through kube's matcher.
    pub fn matches_sorted(&self, labels: &[(String, String)]) -> bool {
        if self.only_required {
            return self.required.iter().all(|(key, value)| {
                labels.binary_search_by(|(k, _)| k.as_str().cmp(key)).is_ok_and(|at| labels[at].1 == *value)
            });
        }
        self.matches(&labels.iter().cloned().collect())
    }
}

impl std::fmt::Display for PodSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.selector.fmt(f)
    }
}

/// Parses the label-selector string syntax of the Kubernetes API:
/// `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`,
/// separated by commas. The empty string selects everything.
pub fn parse(text: &str) -> Result<PodSelector, String> {
    let mut expressions = Vec::new();
    for term in split_terms(text)? {
        let term = term.trim();
        if term.is_empty() {
            if text.trim().is_empty() {
                continue;
            }
            return Err(format!("empty requirement in selector {text:?}"));
        }
        expressions.push(parse_term(term).map_err(|e| format!("{e} in selector {text:?}"))?);
    }
    let required = expressions
        .iter()
        .filter_map(|expression| match expression {
            Expression::Equal(key, value) => Some((key.clone(), value.clone())),
            Expression::In(key, values) if values.len() == 1 => {
                values.first().map(|value| (key.clone(), value.clone()))
            }
            _ => None,
        })
        .collect::<Vec<_>>();
    let only_required = required.len() == expressions.len();
    Ok(PodSelector { selector: expressions.into_iter().collect(), required, only_required })
}

/// Splits on commas outside parentheses.
fn split_terms(text: &str) -> Result<Vec<&str>, String> {
    let (mut terms, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err(format!("unbalanced parentheses in selector {text:?}"));
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced parentheses in selector {text:?}"));
    }
    terms.push(&text[start..]);
    Ok(terms)
}

fn parse_term(term: &str) -> Result<Expression, String> {
    if let Some(name) = term.strip_prefix('!') {
        return Ok(Expression::DoesNotExist(key(name.trim())?));
    }
    for (op, make) in [
        ("!=", Expression::NotEqual as fn(String, String) -> Expression),
        ("==", Expression::Equal),
        ("=", Expression::Equal),
    ] {
        if let Some((k, v)) = term.split_once(op) {
            return Ok(make(key(k.trim())?, value(v.trim())?));
        }
    }
    if let Some(open) = term.find('(') {
        let head = term[..open].trim();
        let values = term[open..]
            .strip_prefix('(')
            .and_then(|rest| rest.strip_suffix(')'))
            .ok_or_else(|| format!("malformed set requirement {term:?}"))?;
        let values = values.split(',').map(|v| value(v.trim())).collect::<Result<BTreeSet<_>, _>>()?;
        let (k, op) = head.rsplit_once(char::is_whitespace).ok_or_else(|| format!("missing operator in {term:?}"))?;
        return match op {
            "in" => Ok(Expression::In(key(k.trim())?, values)),
            "notin" => Ok(Expression::NotIn(key(k.trim())?, values)),
            other => Err(format!("unknown operator {other:?} in {term:?}")),
        };
    }
    Ok(Expression::Exists(key(term)?))
}

fn key(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && text.len() <= 316
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'));
    if valid { Ok(text.to_string()) } else { Err(format!("invalid label key {text:?}")) }
}

fn value(text: &str) -> Result<String, String> {
    let valid = text.len() <= 63 && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if valid { Ok(text.to_string()) } else { Err(format!("invalid label value {text:?}")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn parses_every_operator_and_matches_like_the_api_server() {
        let selector = parse("app=web, tier in (front,edge),env!=dev,app.kubernetes.io/part-of,!canary").unwrap();
        assert!(selector.matches(&labels(&[("app", "web"), ("tier", "edge"), ("app.kubernetes.io/part-of", "x")])));
        assert!(!selector.matches(&labels(&[("app", "web"), ("tier", "back"), ("app.kubernetes.io/part-of", "x")])));
        assert!(!selector.matches(&labels(&[
            ("app", "web"),
            ("tier", "edge"),
            ("app.kubernetes.io/part-of", "x"),
            ("canary", "1")
        ])));
        assert!(!selector.matches(&labels(&[("app", "web"), ("tier", "edge")])));
        let notin = parse("zone notin (a, b)").unwrap();
        assert!(notin.matches(&labels(&[("zone", "c")])));
        assert!(notin.matches(&labels(&[])));
        assert!(!notin.matches(&labels(&[("zone", "a")])));
        assert!(parse("app==web").unwrap().matches(&labels(&[("app", "web")])));
        assert!(parse("").unwrap().matches(&labels(&[("anything", "x")])));
        assert_eq!(selector.required, [("app".to_string(), "web".to_string())]);
        assert_eq!(parse("a in (x), b=y, c in (p,q)").unwrap().required.len(), 2);
    }

    #[test]
    fn sorted_labels_match_as_the_map_does() {
        let pods = [
            labels(&[("app", "web"), ("tier", "edge")]),
            labels(&[("app", "web")]),
            labels(&[("app", "api"), ("tier", "edge")]),
            labels(&[("zone", "a")]),
            labels(&[]),
        ];
        for text in
            ["app=web", "app=web,tier=edge", "app in (web)", "tier!=edge", "app in (web,api)", "!tier", "zone", ""]
        {
            let selector = parse(text).unwrap();
            for pod in &pods {
                let sorted: Vec<(String, String)> = pod.clone().into_iter().collect();
                assert_eq!(selector.matches_sorted(&sorted), selector.matches(pod), "{text:?} on {pod:?}");
            }
        }
        assert!(parse("app=web,tier=edge").unwrap().only_required);
        assert!(!parse("app=web,!canary").unwrap().only_required);
    }

    #[test]
    fn round_trips_kube_display_form() {
        for text in ["app=web", "a in (x,y)", "a notin (x)", "a!=b", "k", "!k"] {
            assert_eq!(parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn rejects_malformed_selectors_with_the_reason() {
        for (text, needle) in [
            ("app=web,", "empty requirement"),
            ("a in (x", "unbalanced"),
            ("a in x)", "unbalanced"),
            ("a within (x)", "unknown operator"),
            ("=web", "invalid label key"),
            ("a=b c", "invalid label value"),
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.contains(needle), "{text}: {error}");
        }
    }
}
