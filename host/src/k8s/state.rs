//! Decision state in the cluster: one `ScalegateState` object
//! (`scalegate.dev/v1alpha1`, `deploy/base/crd.yaml`) per workload binding,
//! in the target's namespace, and one for the policy pins. `spec.key` names
//! what it is for; `status` holds what the loop serialised. Objects carry
//! the label `app.kubernetes.io/managed-by: scalegate` and are listed by it
//! (one list per namespace when a replica takes over).
//!
//! Writes are replacements with the `resourceVersion` last seen; an object
//! that does not exist yet is created; on a conflict (another writer, e.g.
//! a deposed leader's last write) the object is read again and replaced —
//! the current leader's state wins.

use super::requests::{CallError, Requests};
use crate::cluster::{ClusterError, StoredState};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

pub const GROUP: &str = "scalegate.dev";
pub const VERSION: &str = "v1alpha1";
pub const KIND: &str = "ScalegateState";
pub const PLURAL: &str = "scalegatestates";
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "scalegate");

fn resource() -> ApiResource {
    ApiResource {
        group: GROUP.into(),
        version: VERSION.into(),
        api_version: format!("{GROUP}/{VERSION}"),
        kind: KIND.into(),
        plural: PLURAL.into(),
    }
}

/// The object name for a key: its readable part, then a hash of the whole
/// key (keys may hold `/` and other characters names may not).
pub fn object_name(key: &str) -> String {
    let readable: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect::<String>()
        .split('-')
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    let readable: String = readable.chars().take(50).collect();
    let hash = hex::encode(&Sha256::digest(key.as_bytes())[..4]);
    if readable.is_empty() { format!("state-{hash}") } else { format!("{}-{hash}", readable.trim_end_matches('-')) }
}

pub struct StateObjects {
    client: kube::Client,
    requests: Requests,
    /// `resourceVersion` last seen, by (namespace, object name).
    versions: Mutex<HashMap<(String, String), String>>,
}

impl StateObjects {
    pub fn new(client: kube::Client, requests: Requests) -> StateObjects {
        StateObjects { client, requests, versions: Mutex::new(HashMap::new()) }
    }

    fn api(&self, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), namespace, &resource())
    }

    fn not_served(error: CallError, what: &str) -> ClusterError {
        match error {
            CallError::Status(404, _) => ClusterError::NotFound(format!(
                "{what}: the {KIND} resource ({PLURAL}.{GROUP}) is not served; install its CustomResourceDefinition \
                 (deploy/base/crd.yaml) or run with --decision-state=memory"
            )),
            other => other.describe("list", what),
        }
    }

    pub async fn load(&self, namespaces: &[String]) -> Result<Vec<StoredState>, ClusterError> {
        let mut out = Vec::new();
        for namespace in namespaces {
            let api = self.api(namespace);
            let params = ListParams::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1));
            let what = format!("{PLURAL} in namespace {namespace}");
            let listed = self.requests.retrying(|| api.list(&params)).await.map_err(|e| Self::not_served(e, &what))?;
            for object in listed.items {
                let name = object.metadata.name.clone().unwrap_or_default();
                let Some(key) = object.data["spec"]["key"].as_str() else {
                    tracing::warn!(%namespace, %name, "a ScalegateState without spec.key is ignored");
                    continue;
                };
                if let Some(version) = &object.metadata.resource_version {
                    self.versions.lock().insert((namespace.clone(), name.clone()), version.clone());
                }
                out.push(StoredState {
                    namespace: namespace.clone(),
                    key: key.to_string(),
                    data: object.data["status"].clone(),
                });
            }
        }
        Ok(out)
    }

    pub async fn save(&self, state: &StoredState) -> Result<(), ClusterError> {
        let name = object_name(&state.key);
        let api = self.api(&state.namespace);
        let params =
            PostParams { field_manager: Some(self.requests.settings.identity.clone()), ..PostParams::default() };
        let what = format!("{KIND} {}/{name}", state.namespace);
        let slot = (state.namespace.clone(), name.clone());
        for _ in 0..=self.requests.settings.conflict_retries {
            let known = self.versions.lock().get(&slot).cloned();
            let mut object = self.object(state, &name);
            let written = match known {
                None => match self.requests.retrying(|| api.create(&params, &object)).await {
                    // someone created it meanwhile (or before we listed): replace it
                    Err(CallError::Status(409, _)) => self.refresh(&api, &slot, &what).await.map(|_| None)?,
                    other => Some(other.map_err(|e| Self::not_served(e, &what))?),
                },
                Some(version) => {
                    object.metadata.resource_version = Some(version);
                    match self.requests.retrying(|| api.replace(&name, &params, &object)).await {
                        Err(CallError::Status(409, _)) => self.refresh(&api, &slot, &what).await.map(|_| None)?,
                        Err(CallError::Status(404, _)) => {
                            // deleted meanwhile: create it again
                            self.versions.lock().remove(&slot);
                            None
                        }
                        other => Some(other.map_err(|e| e.describe("update", &what))?),
                    }
                }
            };
            if let Some(written) = written {
                if let Some(version) = written.metadata.resource_version {
                    self.versions.lock().insert(slot, version);
                }
                return Ok(());
            }
        }
        Err(ClusterError::Conflict(format!("{what}: changed by another writer at every attempt")))
    }

    /// Reads the object again to learn its current version.
    async fn refresh(&self, api: &Api<DynamicObject>, slot: &(String, String), what: &str) -> Result<(), ClusterError> {
        let current = self.requests.retrying(|| api.get_opt(&slot.1)).await.map_err(|e| e.describe("get", what))?;
        let mut versions = self.versions.lock();
        match current.and_then(|object| object.metadata.resource_version) {
            Some(version) => versions.insert(slot.clone(), version),
            None => versions.remove(slot),
        };
        Ok(())
    }

    fn object(&self, state: &StoredState, name: &str) -> DynamicObject {
        let mut object = DynamicObject::new(name, &resource()).within(&state.namespace);
        object.metadata.labels = Some([(MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string())].into());
        object.data = serde_json::json!({"spec": {"key": state.key}, "status": state.data});
        object
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_are_valid_and_distinct() {
        let names: Vec<String> = ["shop/web", "shop/web-", "Shop/Web", "policy-pins", "///", &"x".repeat(300)]
            .iter()
            .map(|key| object_name(key))
            .collect();
        for name in &names {
            assert!(name.len() <= 63, "{name}");
            assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'), "{name}");
            assert!(!name.starts_with('-') && !name.ends_with('-'), "{name}");
        }
        assert!(names[0].starts_with("shop-web-"));
        let unique: std::collections::HashSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
    }
}
