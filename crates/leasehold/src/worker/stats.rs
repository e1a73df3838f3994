//! Counters a worker keeps about its own work.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) claimed: Counter,
    pub(crate) handed_over: Counter,
    pub(crate) completed: Counter,
    pub(crate) retried: Counter,
    pub(crate) discarded: Counter,
    pub(crate) cancelled: Counter,
    pub(crate) snoozed: Counter,
    pub(crate) released: Counter,
    pub(crate) lease_lost: Counter,
    pub(crate) panics: Counter,
    pub(crate) claim_errors: Counter,
    pub(crate) renew_failures: Counter,
    pub(crate) write_errors: Counter,
}

/// What a worker did since it was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerStats {
    /// Tasks claimed, including those handed over.
    pub claimed: u64,
    /// Of those, tasks claimed for this worker by their enqueue while it waited (PostgreSQL; see
    /// [`leasehold_core::HandoffOffer`]).
    pub handed_over: u64,
    /// Tasks completed.
    pub completed: u64,
    /// Failed attempts scheduled for a retry.
    pub retried: u64,
    /// Tasks this worker discarded (out of attempts, undecodable as their job, failed on purpose), and
    /// those its claims discarded instead of running them (an expired task on its last attempt, a
    /// payload that does not parse as JSON).
    pub discarded: u64,
    /// Tasks cancelled by their job.
    pub cancelled: u64,
    /// Tasks snoozed.
    pub snoozed: u64,
    /// Tasks handed back at shutdown.
    pub released: u64,
    /// Leases lost: found gone at renewal, not trusted any more, or a write rejected by fencing.
    /// Counted apart from errors.
    pub lease_lost: u64,
    /// Jobs that panicked (also counted as retried or discarded).
    pub panics: u64,
    /// Claims that failed.
    pub claim_errors: u64,
    /// Renewal rounds that failed.
    pub renew_failures: u64,
    /// Outcome writes that failed for another reason than fencing.
    pub write_errors: u64,
}

impl Stats {
    pub(crate) fn snapshot(&self) -> WorkerStats {
        WorkerStats {
            claimed: self.claimed.get(),
            handed_over: self.handed_over.get(),
            completed: self.completed.get(),
            retried: self.retried.get(),
            discarded: self.discarded.get(),
            cancelled: self.cancelled.get(),
            snoozed: self.snoozed.get(),
            released: self.released.get(),
            lease_lost: self.lease_lost.get(),
            panics: self.panics.get(),
            claim_errors: self.claim_errors.get(),
            renew_failures: self.renew_failures.get(),
            write_errors: self.write_errors.get(),
        }
    }
}
