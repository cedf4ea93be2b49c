//! The bounded pool every policy call goes through. The decision loop's
//! evaluations and on-demand ones (`POST /v1/evaluate`) share its slots —
//! one slot is one instance in use and one blocking thread — and on-demand
//! calls may hold at most half of them and queue only so deep, so a flood
//! of them, even of a policy that runs into its deadline every time, leaves
//! the loop its slots and the pooling allocator its instances.

use super::{Evaluation, Policy};
use crate::snapshot::Snapshot;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Semaphore;

#[derive(Clone)]
pub struct CallPool {
    inner: Arc<Inner>,
}

struct Inner {
    /// Calls run on the caller's thread instead of the blocking pool.
    inline: bool,
    slots: Semaphore,
    /// On-demand calls holding or waiting for a slot, at most half the slots.
    on_demand: Semaphore,
    /// On-demand calls waiting for `on_demand`.
    waiting: AtomicUsize,
    max_waiting: usize,
}

/// An on-demand call refused because too many are queued.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{waiting} on-demand evaluations are already waiting (the limit); try again shortly")]
pub struct Busy {
    pub waiting: usize,
}

impl CallPool {
    /// A pool of `slots` concurrent calls; on-demand calls get half of them
    /// (at least one) and at most 4 × `slots` of them wait.
    pub fn new(slots: usize) -> CallPool {
        let size = slots.max(1);
        CallPool {
            inner: Arc::new(Inner {
                inline: false,
                slots: Semaphore::new(size),
                on_demand: Semaphore::new((size / 2).max(1)),
                waiting: AtomicUsize::new(0),
                max_waiting: size * 4,
            }),
        }
    }

    /// A pool whose calls run on the calling task's own thread, one at a
    /// time, blocking it: for the simulator, whose single-threaded loop on
    /// paused time has nothing else to run meanwhile and would otherwise
    /// spend most of its time handing calls to a blocking thread and back.
    /// Never for a live daemon (a call would stall its loop).
    pub fn inline() -> CallPool {
        let mut pool = CallPool::new(1);
        Arc::get_mut(&mut pool.inner).expect("just made").inline = true;
        pool
    }

    /// Runs `policy.evaluate(snapshot)` on the blocking pool once a slot is
    /// free. `None` if the call's thread panicked.
    pub async fn evaluate(&self, policy: Arc<dyn Policy>, snapshot: Snapshot) -> Option<Evaluation> {
        let slot = self.inner.slots.acquire().await.expect("the pool's semaphore is never closed");
        let evaluation = if self.inner.inline {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| policy.evaluate(&snapshot))).ok()
        } else {
            tokio::task::spawn_blocking(move || policy.evaluate(&snapshot)).await.ok()
        };
        drop(slot);
        evaluation
    }

    /// An evaluation asked for from outside the loop: within the on-demand
    /// share of the slots, refused when too many already wait.
    pub async fn evaluate_on_demand(
        &self,
        policy: Arc<dyn Policy>,
        snapshot: Snapshot,
    ) -> Result<Option<Evaluation>, Busy> {
        let inner = &self.inner;
        let waiting = inner.waiting.fetch_add(1, Ordering::SeqCst);
        let share = if waiting < inner.max_waiting { inner.on_demand.acquire().await.ok() } else { None };
        inner.waiting.fetch_sub(1, Ordering::SeqCst);
        let Some(_share) = share else { return Err(Busy { waiting }) };
        Ok(self.evaluate(policy, snapshot).await)
    }
}
