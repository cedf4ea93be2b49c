//! Whether this replica may write to the cluster.
//!
//! With leader election (`k8s::LeaderElector`) a replica leads until a
//! deadline that each renewal of its Lease extends; every time it gains the
//! Lease a new *term* begins. A term may write only once the replica has
//! taken over what the previous writer left — the decision state stored in
//! the cluster — which the daemon marks with [`Leadership::ready`]. Without
//! an elector ([`Leadership::sole`]) the replica always leads, in one term.
//!
//! The loop asks [`Leadership::may_write`] before every write; directive
//! consumers and the push endpoint follow [`Leadership::is_leader`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

#[derive(Debug)]
pub struct Leadership {
    /// Who holds the lease, as last seen (for messages to clients).
    holder: parking_lot::Mutex<Option<String>>,
    epoch: Instant,
    /// Nanoseconds after `epoch` until which this replica leads (0: never).
    valid_until_ns: AtomicU64,
    /// Incremented each time this replica gains leadership.
    term: AtomicU64,
    /// The last term whose take-over (state loaded) is complete.
    ready_term: AtomicU64,
}

impl Leadership {
    /// A replica that campaigns: it leads only while its lease is valid,
    /// and writes only once a term it began is ready.
    pub fn elected() -> Leadership {
        Leadership {
            holder: parking_lot::Mutex::new(None),
            epoch: Instant::now(),
            valid_until_ns: AtomicU64::new(0),
            term: AtomicU64::new(1),
            ready_term: AtomicU64::new(0),
        }
    }

    /// The only replica: it always leads, in term 1 (ready once the stored
    /// state is loaded).
    pub fn sole() -> Leadership {
        Leadership {
            holder: parking_lot::Mutex::new(None),
            epoch: Instant::now(),
            valid_until_ns: AtomicU64::new(u64::MAX),
            term: AtomicU64::new(1),
            ready_term: AtomicU64::new(0),
        }
    }

    /// The only replica, with nothing to take over: it may write at once
    /// (tests, benchmarks, the simulator).
    pub fn always() -> Leadership {
        let leadership = Leadership::sole();
        leadership.ready(1);
        leadership
    }

    /// The lease is held (whether or not the take-over is complete).
    pub fn is_leader(&self) -> bool {
        let now = self.epoch.elapsed().as_nanos() as u64;
        now < self.valid_until_ns.load(Ordering::Acquire)
    }

    /// The lease is held and this term's take-over is complete.
    pub fn may_write(&self) -> bool {
        self.is_leader() && self.ready_term.load(Ordering::Acquire) == self.term.load(Ordering::Acquire)
    }

    /// The current term.
    pub fn term(&self) -> u64 {
        self.term.load(Ordering::Acquire)
    }

    /// Starts a new term (the lease was just gained) and returns it.
    pub fn begin_term(&self) -> u64 {
        self.term.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The take-over of `term` is complete: writes may start, unless a
    /// newer term began meanwhile.
    pub fn ready(&self, term: u64) {
        self.ready_term.fetch_max(term, Ordering::AcqRel);
    }

    /// Who holds the lease as last seen (`None`: unknown or nobody).
    pub fn holder(&self) -> Option<String> {
        self.holder.lock().clone()
    }

    pub fn set_holder(&self, holder: Option<String>) {
        *self.holder.lock() = holder;
    }

    /// Leads until `deadline` (a renewal succeeded).
    pub fn lead_until(&self, deadline: Instant) {
        let ns = deadline.saturating_duration_since(self.epoch).as_nanos() as u64;
        self.valid_until_ns.store(ns, Ordering::Release);
    }

    /// Stops leading now.
    pub fn revoke(&self) {
        self.valid_until_ns.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_term_writes_only_after_its_take_over() {
        let leadership = Leadership::elected();
        assert!(!leadership.is_leader() && !leadership.may_write());
        leadership.lead_until(Instant::now() + Duration::from_secs(60));
        let term = leadership.begin_term();
        assert!(leadership.is_leader() && !leadership.may_write(), "state not loaded yet");
        leadership.ready(term);
        assert!(leadership.may_write());
        // lost and regained: the new term waits for its own take-over
        leadership.revoke();
        assert!(!leadership.may_write());
        leadership.lead_until(Instant::now() + Duration::from_secs(60));
        let next = leadership.begin_term();
        assert!(!leadership.may_write());
        leadership.ready(term);
        assert!(!leadership.may_write(), "an older take-over does not open a newer term");
        leadership.ready(next);
        assert!(leadership.may_write());
    }

    #[test]
    fn the_sole_replica_leads_once_ready() {
        let leadership = Leadership::sole();
        assert!(leadership.is_leader() && !leadership.may_write());
        leadership.ready(leadership.term());
        assert!(leadership.may_write());
    }
}
