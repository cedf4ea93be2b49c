//! How a binding names a policy: `name` (the active version), `name@1.2.3`
//! or `name@sha256:<digest>`.

/// How a binding names a policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyRef {
    /// The newest valid version of `name`.
    Latest(String),
    /// Exactly `name@version`.
    Version(String, semver::Version),
    /// Exactly the component with this sha256 (lowercase hex).
    Digest(String, String),
}

impl PolicyRef {
    pub fn name(&self) -> &str {
        match self {
            PolicyRef::Latest(name) | PolicyRef::Version(name, _) | PolicyRef::Digest(name, _) => name,
        }
    }
}

impl std::fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyRef::Latest(name) => write!(f, "{name}"),
            PolicyRef::Version(name, version) => write!(f, "{name}@{version}"),
            PolicyRef::Digest(name, digest) => write!(f, "{name}@sha256:{digest}"),
        }
    }
}

impl std::str::FromStr for PolicyRef {
    type Err = String;

    /// `name`, `name@1.2.3` or `name@sha256:<64 hex>`.
    fn from_str(text: &str) -> Result<PolicyRef, String> {
        let (name, selector) = match text.split_once('@') {
            Some((name, selector)) => (name, Some(selector)),
            None => (text, None),
        };
        let valid_name = !name.is_empty()
            && name.len() <= 63
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid_name {
            return Err(format!("invalid policy name {name:?} (expected lowercase letters, digits and '-')"));
        }
        match selector {
            None => Ok(PolicyRef::Latest(name.into())),
            Some(selector) => match selector.strip_prefix("sha256:") {
                Some(digest) if digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    Ok(PolicyRef::Digest(name.into(), digest.to_ascii_lowercase()))
                }
                Some(_) => Err(format!("invalid digest in {text:?}: expected sha256: and 64 hex digits")),
                None => semver::Version::parse(selector)
                    .map(|version| PolicyRef::Version(name.into(), version))
                    .map_err(|e| format!("invalid version in {text:?}: {e}")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_refs_round_trip() {
        for text in [
            "hpa",
            "hpa@1.2.3",
            "target-tracking@0.1.0-rc.1",
            "x@sha256:45ff69307701a79a725d1dd006e7884d449edded90f684ea87efd4d85045a83a",
        ] {
            let parsed: PolicyRef = text.parse().unwrap();
            assert_eq!(parsed.to_string(), text);
        }
    }
}
