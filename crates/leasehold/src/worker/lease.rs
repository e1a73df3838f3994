//! The leases a worker holds, and its local trust window on each.
//!
//! A lease is trusted until `t0 + L - M`, where `t0` is the worker's monotonic time just before it
//! sent the claim or the latest renewal that succeeded (for a task handed over by its enqueue, the
//! announcement whose offer the hand-off took). The store granted at least `L` from the moment it
//! received that request, which came after `t0`, so the holder stops before the store can hand the
//! task to anyone else. The entry's cancellation token fires when trust ends, when a renewal finds the
//! lease gone, or when the worker shuts down; the job reads it through its context, and a token the job
//! asks for (`JobContext::cancellation_token`) is a child of it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use leasehold_core::TaskLease;

/// Why a held task's work was cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CancelReason {
    /// The worker is stopping and the deadline for running jobs passed.
    Shutdown,
    /// A renewal found the lease gone: taken over, cancelled or finished by someone else.
    LeaseGone,
    /// No renewal succeeded in time: the worker no longer trusts its lease.
    TrustExpired,
}

pub(crate) struct LeaseEntry {
    pub(crate) lease: TaskLease,
    pub(crate) ttl: Duration,
    margin: Duration,
    /// How long the job may take to return once cancelled (`G`, scaled to this lease).
    pub(crate) grace: Duration,
    trusted_until: Mutex<Instant>,
    pub(crate) cancel: CancellationToken,
    reason: OnceLock<CancelReason>,
    /// Set once the handler returned and its outcome is being written.
    pub(crate) finishing: AtomicBool,
}

impl LeaseEntry {
    pub(crate) fn new(lease: TaskLease, ttl: Duration, margin: Duration, grace: Duration, t0: Instant) -> Self {
        Self {
            lease,
            ttl,
            margin,
            grace,
            trusted_until: Mutex::new(t0 + ttl.saturating_sub(margin)),
            cancel: CancellationToken::new(),
            reason: OnceLock::new(),
            finishing: AtomicBool::new(false),
        }
    }

    pub(crate) fn trusted_until(&self) -> Instant {
        *self.trusted_until.lock().unwrap()
    }

    /// A renewal sent at `t0` succeeded.
    pub(crate) fn renewed(&self, t0: Instant) {
        let mut until = self.trusted_until.lock().unwrap();
        *until = (*until).max(t0 + self.ttl.saturating_sub(self.margin));
    }

    /// Cancels the work; the first reason given sticks.
    pub(crate) fn lose(&self, reason: CancelReason) {
        let _ = self.reason.set(reason);
        self.cancel.cancel();
    }

    pub(crate) fn reason(&self) -> Option<CancelReason> {
        self.reason.get().copied()
    }

    pub(crate) fn is_finishing(&self) -> bool {
        self.finishing.load(Ordering::Acquire)
    }

    /// Resolves when trust in the lease ends, after cancelling the work.
    pub(crate) async fn trust_expired(&self) {
        loop {
            let until = self.trusted_until();
            tokio::time::sleep_until(until).await;
            if Instant::now() >= self.trusted_until() {
                self.lose(CancelReason::TrustExpired);
                return;
            }
        }
    }
}

/// The leases a worker holds right now, keyed by lease (task and token): a task this worker claims
/// again while its older attempt is still settling is a separate entry.
#[derive(Default)]
pub(crate) struct ActiveSet {
    map: Mutex<HashMap<TaskLease, Arc<LeaseEntry>>>,
    /// Notified when a lease shorter than the worker's own is added, or one handed over (its trust
    /// counted from the offer), so the heartbeat can renew sooner for it. (A lease of the worker's
    /// length, claimed, needs no new round: the next one is due within one heartbeat interval anyway.)
    pub(crate) renew_sooner: tokio::sync::Notify,
}

impl ActiveSet {
    /// Adds a lease; `sooner` wakes the heartbeat to bring its next round forward if this lease needs it
    /// (a lease shorter than the worker's, or one handed over with part of its trust spent).
    pub(crate) fn insert(&self, entry: Arc<LeaseEntry>, sooner: bool) {
        self.map.lock().unwrap().insert(entry.lease, entry);
        if sooner {
            self.renew_sooner.notify_one();
        }
    }

    pub(crate) fn remove(&self, lease: TaskLease) {
        self.map.lock().unwrap().remove(&lease);
    }

    pub(crate) fn snapshot(&self) -> Vec<Arc<LeaseEntry>> {
        self.map.lock().unwrap().values().cloned().collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.map.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasehold_core::{FencingToken, TaskId};

    fn entry() -> LeaseEntry {
        let lease = TaskLease { task_id: TaskId::new(), fence: FencingToken(7) };
        LeaseEntry::new(lease, Duration::from_secs(30), Duration::from_secs(5), Duration::from_secs(2), Instant::now())
    }

    #[tokio::test(start_paused = true)]
    async fn trust_ends_at_ttl_minus_margin_after_the_claim() {
        let e = entry();
        let start = Instant::now();
        e.trust_expired().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(25));
        assert_eq!(e.reason(), Some(CancelReason::TrustExpired));
        assert!(e.cancel.is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_extends_trust_from_the_time_it_was_sent() {
        let e = entry();
        let start = Instant::now();
        tokio::time::advance(Duration::from_secs(10)).await;
        let t0 = Instant::now();
        tokio::time::advance(Duration::from_secs(3)).await; // the renewal's round trip
        e.renewed(t0);
        e.trust_expired().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(35));
    }

    #[tokio::test(start_paused = true)]
    async fn an_older_renewal_never_shortens_trust() {
        let e = entry();
        let t_old = Instant::now();
        tokio::time::advance(Duration::from_secs(10)).await;
        e.renewed(Instant::now());
        let extended = e.trusted_until();
        e.renewed(t_old);
        assert_eq!(e.trusted_until(), extended);
    }

    #[test]
    fn the_first_reason_sticks() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            let e = entry();
            e.lose(CancelReason::LeaseGone);
            e.lose(CancelReason::Shutdown);
            assert_eq!(e.reason(), Some(CancelReason::LeaseGone));
        });
    }
}
