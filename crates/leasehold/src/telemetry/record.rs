//! Where leasehold's code records metrics. Hot paths (claims, renewals, task outcomes) keep handles
//! registered once per worker and per (queue, kind); rare events go through the macros directly.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

use super::catalog::*;

/// Claim outcomes, in the order of [`WorkerMetrics::claims`].
#[derive(Clone, Copy)]
pub(crate) enum ClaimOutcome {
    Claimed,
    Empty,
    Contended,
    Error,
    /// A task claimed for this idle worker by its enqueue (no claim statement of the worker's).
    Handoff,
}

const CLAIM_OUTCOMES: [&str; 5] = ["claimed", "empty", "contended", "error", "handoff"];

/// Renewal outcomes, in the order of [`WorkerMetrics::renewals`].
#[derive(Clone, Copy)]
pub(crate) enum RenewOutcome {
    Renewed,
    Busy,
    Lost,
    Error,
}

const RENEW_OUTCOMES: [&str; 4] = ["renewed", "busy", "lost", "error"];

/// The outcomes an attempt can end with (the executor's names).
pub(crate) const TASK_OUTCOME_NAMES: [&str; 9] = [
    "completed",
    "retried",
    "discarded",
    "cancelled",
    "snoozed",
    "released",
    "lease_lost",
    "self_fenced",
    "write_failed",
];

/// The writes a fencing token can refuse.
pub(crate) const STALE_WRITE_KINDS: [&str; 7] =
    ["complete", "retry", "snooze", "finish", "release", "effect", "application"];

/// Why a lease was lost.
const LOST_REASONS: [&str; 3] = ["gone", "trust_expired", "fenced"];

/// A worker's metric handles.
pub(crate) struct WorkerMetrics {
    backend: &'static str,
    claims: [Counter; 5],
    claim_duration: Histogram,
    claim_batch: Histogram,
    renewals: [Counter; 4],
    renewal_lag: Histogram,
    in_flight: Gauge,
    completion_batch: Histogram,
    /// By kind, then queue: looked up without allocating.
    kinds: RwLock<HashMap<String, HashMap<String, Arc<KindMetrics>>>>,
}

/// The handles of one (queue, kind).
pub(crate) struct KindMetrics {
    outcomes: [Counter; 9],
    duration: Histogram,
    queue_wait: Histogram,
    backend: &'static str,
    queue: String,
    kind: String,
}

impl WorkerMetrics {
    pub(crate) fn new(backend: &'static str) -> Self {
        super::describe();
        // registered at zero, so dashboards show 0 rather than no data before the first event
        for write in STALE_WRITE_KINDS {
            counter!(STALE_WRITES, "write" => write).increment(0);
        }
        counter!(VERSION_CONFLICTS).increment(0);
        Self {
            backend,
            claims: CLAIM_OUTCOMES.map(|o| counter!(CLAIMS, "backend" => backend, "outcome" => o)),
            claim_duration: histogram!(CLAIM_DURATION, "backend" => backend),
            claim_batch: histogram!(CLAIM_BATCH, "backend" => backend),
            renewals: RENEW_OUTCOMES.map(|o| counter!(RENEWALS, "backend" => backend, "outcome" => o)),
            renewal_lag: histogram!(RENEWAL_LAG, "backend" => backend),
            in_flight: gauge!(IN_FLIGHT, "backend" => backend),
            completion_batch: histogram!(COMPLETION_BATCH, "backend" => backend),
            kinds: RwLock::new(HashMap::new()),
        }
    }

    pub(crate) fn claim(&self, outcome: ClaimOutcome, took: Duration, tasks: usize) {
        self.claims[outcome as usize].increment(1);
        if matches!(outcome, ClaimOutcome::Handoff) {
            return;
        }
        self.claim_duration.record(took);
        if tasks > 0 {
            self.claim_batch.record(tasks as f64);
        }
    }

    pub(crate) fn renewals(&self, outcome: RenewOutcome, n: usize) {
        if n > 0 {
            self.renewals[outcome as usize].increment(n as u64);
        }
    }

    pub(crate) fn renewal_lag(&self, lag: Duration) {
        self.renewal_lag.record(lag);
    }

    pub(crate) fn in_flight(&self, delta: f64) {
        self.in_flight.increment(delta);
    }

    pub(crate) fn completion_batch(&self, n: usize) {
        self.completion_batch.record(n as f64);
    }

    /// The handles of `queue` and `kind`, registered on first use. Every outcome is registered at
    /// once, so a dashboard sees zeros rather than no series.
    pub(crate) fn kind(&self, queue: &str, kind: &str) -> Arc<KindMetrics> {
        if let Some(k) = self.kinds.read().unwrap().get(kind).and_then(|q| q.get(queue)) {
            return k.clone();
        }
        let mut kinds = self.kinds.write().unwrap();
        if let Some(k) = kinds.get(kind).and_then(|q| q.get(queue)) {
            return k.clone();
        }
        let (b, q, k) = (self.backend, queue.to_owned(), kind.to_owned());
        let m = Arc::new(KindMetrics {
            outcomes: TASK_OUTCOME_NAMES.map(
                |o| counter!(TASK_OUTCOMES, "backend" => b, "queue" => q.clone(), "kind" => k.clone(), "outcome" => o),
            ),
            duration: histogram!(TASK_DURATION, "backend" => b, "queue" => q.clone(), "kind" => k.clone()),
            queue_wait: histogram!(QUEUE_WAIT, "backend" => b, "queue" => q.clone(), "kind" => k.clone()),
            backend: b,
            queue: q.clone(),
            kind: k.clone(),
        });
        for reason in LOST_REASONS {
            counter!(LEASES_LOST, "backend" => b, "queue" => q.clone(), "kind" => k.clone(), "reason" => reason)
                .increment(0);
        }
        kinds.entry(k).or_default().insert(q, m.clone());
        m
    }
}

impl KindMetrics {
    /// Whether these are the handles of `queue` and `kind`.
    pub(crate) fn labels(&self, queue: &str, kind: &str) -> bool {
        self.queue == queue && self.kind == kind
    }

    pub(crate) fn started(&self, waited: Duration) {
        self.queue_wait.record(waited);
    }

    pub(crate) fn settled(&self, outcome: &str, ran: Duration) {
        self.settled_unrun(outcome);
        self.duration.record(ran);
    }

    /// An outcome of a task no job ran for (a claim discarded it): counted, with no duration.
    pub(crate) fn settled_unrun(&self, outcome: &str) {
        if let Some(i) = TASK_OUTCOME_NAMES.iter().position(|o| *o == outcome) {
            self.outcomes[i].increment(1);
        }
    }

    /// A lease lost: `reason` is gone, trust_expired or fenced.
    pub(crate) fn lease_lost(&self, reason: &'static str) {
        counter!(LEASES_LOST, "backend" => self.backend, "queue" => self.queue.clone(), "kind" => self.kind.clone(),
            "reason" => reason)
        .increment(1);
    }
}

/// A write refused because its token was stale.
pub(crate) fn stale_write(write: &'static str) {
    counter!(STALE_WRITES, "write" => write).increment(1);
}

/// `written`, counted as a stale write of kind `write` when it is [`leasehold_core::Error::LeaseLost`].
pub(crate) fn counting_stale<T>(write: &'static str, written: leasehold_core::Result<T>) -> leasehold_core::Result<T> {
    if written.as_ref().is_err_and(leasehold_core::Error::is_lease_lost) {
        stale_write(write);
    }
    written
}

pub(crate) fn version_conflict() {
    counter!(VERSION_CONFLICTS).increment(1);
}

/// A keyed insert: scope is task or effect; outcome is new, hit or conflict.
pub(crate) fn idempotency(backend: &'static str, scope: &'static str, outcome: &'static str) {
    counter!(IDEMPOTENCY, "backend" => backend, "scope" => scope, "outcome" => outcome).increment(1);
}

pub(crate) fn enqueued(backend: &'static str, queue: &str, kind: &str, n: u64) {
    counter!(ENQUEUED, "backend" => backend, "queue" => queue.to_owned(), "kind" => kind.to_owned()).increment(n);
}

/// Finished tasks deleted by retention.
pub(crate) fn pruned(backend: &'static str, n: u64) {
    counter!(PRUNED, "backend" => backend).increment(n);
}

pub(crate) fn queue_depth(backend: &'static str, queue: &str, state: &'static str, n: u64) {
    gauge!(QUEUE_DEPTH, "backend" => backend, "queue" => queue.to_owned(), "state" => state).set(n as f64);
}

/// An attempt on a leased lock: outcome is acquired, renewed, busy or error.
pub(crate) fn lock_attempt(backend: &'static str, lock: &str, outcome: &'static str) {
    counter!(LOCK_ACQUISITIONS, "backend" => backend, "lock" => lock.to_owned(), "outcome" => outcome).increment(1);
}

/// A lock acquired after `waited`: a new term.
pub(crate) fn lock_acquired(backend: &'static str, lock: &str, waited: Duration) {
    histogram!(LOCK_WAIT, "backend" => backend, "lock" => lock.to_owned()).record(waited);
    counter!(LEADER_CHANGES, "backend" => backend, "lock" => lock.to_owned()).increment(1);
}

/// Registers every lock outcome at zero, so dashboards see zeros rather than no series.
pub(crate) fn lock_registered(backend: &'static str, lock: &str) {
    for outcome in ["acquired", "renewed", "busy", "error"] {
        counter!(LOCK_ACQUISITIONS, "backend" => backend, "lock" => lock.to_owned(), "outcome" => outcome).increment(0);
    }
    counter!(LEADER_CHANGES, "backend" => backend, "lock" => lock.to_owned()).increment(0);
}

/// Registers every tick outcome of a schedule at zero.
pub(crate) fn cron_registered(backend: &'static str, schedule: &str) {
    for outcome in ["enqueued", "caught_up", "missed", "skipped", "buffered", "triggered"] {
        counter!(CRON_TICKS, "backend" => backend, "schedule" => schedule.to_owned(), "outcome" => outcome)
            .increment(0);
    }
}

pub(crate) fn cron_tick(backend: &'static str, schedule: &str, outcome: &'static str) {
    counter!(CRON_TICKS, "backend" => backend, "schedule" => schedule.to_owned(), "outcome" => outcome).increment(1);
}
