//! How a signal is acknowledged. A signal may carry a [`Receipt`]: the
//! loop settles it once the decision the signal triggered has been written
//! (and the workload's state stored), and only then — a Kafka directive's
//! offset is committed, a pushed signal's HTTP request is answered. A
//! receipt dropped unsettled means "not handled": the Kafka offset is not
//! committed (the next leader reads the directive again), the push is
//! answered 503 so the client retries.
//!
//! A signal from a replayable stream also names its [`Origin`]; the
//! workload's decision state remembers the last handled offset of each
//! stream, so a directive read again after a failover is recognised and
//! skipped instead of applied twice (or after a newer one).

/// Where a signal came from in a replayable stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `source:topic/partition`, e.g. `kafka:rtc.control.scale/3`.
    pub stream: String,
    pub offset: i64,
}

/// What became of a signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// The decision it triggered (at `at_ms`) is written, or needed no write.
    Decided { replicas: u32, applied: bool, at_ms: u64 },
    /// A newer signal for the same workload took its place, or it had
    /// already been handled (read again from its stream).
    Superseded,
}

/// Settles one signal; see the module doc.
pub struct Receipt {
    pub origin: Option<Origin>,
    settle: Box<dyn FnOnce(&Handled) + Send>,
}

impl Receipt {
    pub fn new(origin: Option<Origin>, settle: impl FnOnce(&Handled) + Send + 'static) -> Receipt {
        Receipt { origin, settle: Box::new(settle) }
    }

    pub fn settle(self, handled: &Handled) {
        (self.settle)(handled)
    }
}

impl std::fmt::Debug for Receipt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receipt").field("origin", &self.origin).finish()
    }
}

/// A queued signal and its receipt, as the loop receives it.
#[derive(Debug)]
pub struct Delivery {
    pub signal: crate::snapshot::Signal,
    pub receipt: Option<Receipt>,
    /// When it reached the hub.
    pub received: std::time::Instant,
}
