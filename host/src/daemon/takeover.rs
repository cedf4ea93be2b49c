//! Taking over: before a replica writes in a new term (it gained the Lease,
//! or it just started alone), it continues from what the previous writer
//! left in the cluster — each workload's decision state and the policy
//! pins. Until that is done the term may not write; failures are retried
//! with backoff until the term ends.

use crate::cluster::{Cluster, ClusterError, PINS_KEY, StoredState};
use crate::decide::Decider;
use crate::leadership::Leadership;
use crate::policy_store::PolicyStore;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub struct TakeOver<C: Cluster> {
    pub decider: Arc<Decider<C>>,
    pub store: PolicyStore,
    pub cluster: Arc<C>,
    pub leadership: Arc<Leadership>,
    /// Where the policy pins are kept; `None`: decision state is not kept
    /// in the cluster (memory only), there is nothing to take over.
    pub pins_namespace: Option<String>,
}

impl<C: Cluster> Clone for TakeOver<C> {
    fn clone(&self) -> Self {
        TakeOver {
            decider: self.decider.clone(),
            store: self.store.clone(),
            cluster: self.cluster.clone(),
            leadership: self.leadership.clone(),
            pins_namespace: self.pins_namespace.clone(),
        }
    }
}

/// The stored form of the policy pins: `{"pins": {name: digest}}`.
pub fn pins_state(namespace: &str, pins: &BTreeMap<String, String>) -> StoredState {
    StoredState { namespace: namespace.to_string(), key: PINS_KEY.into(), data: serde_json::json!({ "pins": pins }) }
}

impl<C: Cluster> TakeOver<C> {
    /// Loads the workloads' states and the pins once.
    pub async fn once(&self) -> Result<(), ClusterError> {
        let Some(namespace) = &self.pins_namespace else { return Ok(()) };
        let taken = self.decider.load_states().await?;
        let stored = self.cluster.load_states(std::slice::from_ref(namespace)).await?;
        let pins: BTreeMap<String, String> = stored
            .iter()
            .find(|s| s.key == PINS_KEY)
            .and_then(|s| serde_json::from_value(s.data["pins"].clone()).ok())
            .unwrap_or_default();
        let missing = self.store.restore_pins(&pins);
        if !missing.is_empty() {
            tracing::warn!(
                ?missing,
                "pinned policy versions not in this replica's store; their names follow the newest version"
            );
        }
        tracing::info!(workloads = taken, pins = pins.len() - missing.len(), "took over the stored decision state");
        Ok(())
    }

    /// Takes over for `term`, retrying until done, until a newer term
    /// begins, or until `shutdown`; then lets the term write and asks every
    /// workload to evaluate at once.
    pub async fn run(self, term: u64, shutdown: CancellationToken) {
        let mut delay = Duration::from_millis(500);
        loop {
            if self.leadership.term() != term {
                return;
            }
            match self.once().await {
                Ok(()) => {
                    self.leadership.ready(term);
                    self.decider.trigger_all();
                    return;
                }
                Err(error) => {
                    tracing::error!(%error, retry_in = ?delay, "cannot take over the stored decision state; not writing until it is loaded");
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }
}
