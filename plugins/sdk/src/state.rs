//! Typed state: what a policy remembers between evaluations travels as JSON
//! in `decision.state` and comes back in the next `snapshot.state`.
//!
//! The host keeps at most [`MAX_STATE_BYTES`] (its `max_state_bytes`
//! default); [`save`] refuses more with an error that says how much, instead
//! of the host rejecting the whole decision as invalid output.

use crate::types::{PolicyError, Snapshot};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The host's default limit on `decision.state`.
pub const MAX_STATE_BYTES: usize = 64 * 1024;

/// The state returned last time as `S`; `None` at the first evaluation.
/// A state that does not read as `S` (written by another version of the
/// policy, say) is logged and treated as absent: the policy starts afresh
/// rather than failing every evaluation.
pub fn load<S: DeserializeOwned>(snapshot: &Snapshot) -> Option<S> {
    if snapshot.state.is_empty() {
        return None;
    }
    match serde_json::from_slice(&snapshot.state) {
        Ok(state) => Some(state),
        Err(e) => {
            crate::log::warn(&format!("state of {} bytes ignored: {e}", snapshot.state.len()));
            None
        }
    }
}

/// `state` as the bytes of `decision.state` (JSON).
pub fn save<S: Serialize>(state: &S) -> Result<Vec<u8>, PolicyError> {
    let bytes =
        serde_json::to_vec(state).map_err(|e| PolicyError::Internal(format!("state does not serialize: {e}")))?;
    if bytes.len() > MAX_STATE_BYTES {
        return Err(PolicyError::Internal(format!(
            "state is {} bytes, the host keeps at most {MAX_STATE_BYTES}",
            bytes.len()
        )));
    }
    Ok(bytes)
}
