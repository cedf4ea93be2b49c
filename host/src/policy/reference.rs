//! How a binding names a policy: `name` (the active version), `name@1.2.3`,
//! `name@sha256:<digest>`, or an OCI reference (`oci://REGISTRY/REPO:TAG`,
//! `oci://REGISTRY/REPO@sha256:<digest>`: whatever the registry serves there,
//! followed when a tag moves).

/// How a binding names a policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyRef {
    /// The newest valid version of `name`.
    Latest(String),
    /// Exactly `name@version`.
    Version(String, semver::Version),
    /// Exactly the component with this sha256 (lowercase hex).
    Digest(String, String),
    /// The component an OCI reference resolves to (the full `oci://…` text).
    Oci(String),
}

impl PolicyRef {
    /// The policy's name; for an OCI reference the reference itself (the
    /// name is known once the component is pulled).
    pub fn name(&self) -> &str {
        match self {
            PolicyRef::Latest(name) | PolicyRef::Version(name, _) | PolicyRef::Digest(name, _) => name,
            PolicyRef::Oci(reference) => reference,
        }
    }
}

impl std::fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyRef::Latest(name) => write!(f, "{name}"),
            PolicyRef::Version(name, version) => write!(f, "{name}@{version}"),
            PolicyRef::Digest(name, digest) => write!(f, "{name}@sha256:{digest}"),
            PolicyRef::Oci(reference) => f.write_str(reference),
        }
    }
}

impl std::str::FromStr for PolicyRef {
    type Err = String;

    /// `name`, `name@1.2.3` or `name@sha256:<64 hex>`.
    fn from_str(text: &str) -> Result<PolicyRef, String> {
        if text.starts_with("oci://") {
            return OciRef::parse(text).map(|r| PolicyRef::Oci(r.text));
        }
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

/// A parsed `oci://` reference.
#[derive(Debug, Clone)]
pub struct OciRef {
    pub text: String,
    pub reference: oci_client::Reference,
}

impl OciRef {
    pub fn parse(text: &str) -> Result<OciRef, String> {
        let rest = text.strip_prefix("oci://").ok_or_else(|| format!("{text:?} is not an oci:// reference"))?;
        if !rest.contains('/') || rest.starts_with('/') {
            return Err(format!("{text:?}: expected oci://REGISTRY/REPOSITORY:TAG or @sha256:DIGEST"));
        }
        let reference: oci_client::Reference = rest.parse().map_err(|e| format!("{text:?}: {e}"))?;
        if reference.tag().is_none() && reference.digest().is_none() {
            return Err(format!("{text:?}: name a tag (:1.0.0) or a digest (@sha256:…)"));
        }
        Ok(OciRef { text: text.to_string(), reference })
    }

    /// A digest reference never moves; a tag is re-resolved.
    pub fn is_pinned(&self) -> bool {
        self.reference.digest().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_need_a_registry_and_a_tag_or_digest() {
        let tag = OciRef::parse("oci://127.0.0.1:5000/policies/hpa:1.0.0").unwrap();
        assert_eq!((tag.reference.registry(), tag.reference.repository()), ("127.0.0.1:5000", "policies/hpa"));
        assert!(!tag.is_pinned());
        let digest = format!("oci://ghcr.io/acme/p@sha256:{}", "a".repeat(64));
        assert!(OciRef::parse(&digest).unwrap().is_pinned());
        assert!(OciRef::parse("ghcr.io/acme/p:1").unwrap_err().contains("not an oci://"));
        assert!(OciRef::parse("oci://p").is_err());
    }

    #[test]
    fn policy_refs_round_trip() {
        for text in [
            "hpa",
            "hpa@1.2.3",
            "target-tracking@0.1.0-rc.1",
            "x@sha256:45ff69307701a79a725d1dd006e7884d449edded90f684ea87efd4d85045a83a",
            "oci://127.0.0.1:5000/policies/hpa:1.0.0",
        ] {
            let parsed: PolicyRef = text.parse().unwrap();
            assert_eq!(parsed.to_string(), text);
        }
    }
}
