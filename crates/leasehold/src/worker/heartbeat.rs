//! Renews every lease the worker holds in one statement, every `H`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use leasehold_core::{LeaseRenewParams, TaskLease, TaskStore};

use super::Shared;
use super::lease::CancelReason;
use crate::telemetry::record::RenewOutcome;

/// The shortest pause between two renewals.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

pub(crate) async fn run<S: TaskStore, St: Send + Sync + 'static>(shared: Arc<Shared<S, St>>, stop: CancellationToken) {
    // a fixed deadline: new leases may bring it forward, never push it back
    let mut due = Instant::now() + interval(&shared);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(due) => {
                let started = Instant::now();
                // a stop does not wait for a store that does not answer
                let round = tokio::select! {
                    round = renew_once(&shared) => round,
                    _ = stop.cancelled() => return,
                };
                if round != Round::Idle {
                    // how late the round finished after it was due: scheduling delay plus the answer
                    shared.metrics.renewal_lag(started.saturating_duration_since(due) + started.elapsed());
                }
                // a failed round is tried again after a quarter of the interval, not a whole one: with
                // the defaults, two failed rounds a whole interval apart left the next one past the
                // trust window, and every job was cancelled though the store had been back for seconds
                let next = if round == Round::Failed { interval(&shared) / 4 } else { interval(&shared) };
                due = Instant::now() + next.max(MIN_INTERVAL);
            }
            // a new lease may be shorter than any held so far, or come with part of its trust spent
            _ = shared.active.renew_sooner.notified() => {
                due = due.min(Instant::now() + interval(&shared)).min(trust_deadline(&shared));
            }
        }
    }
}

/// `H`, or less while a task with a shorter lease than the worker's is held.
fn interval<S, St>(shared: &Shared<S, St>) -> Duration {
    let shortest = shared.active.snapshot().iter().map(|e| e.ttl).min();
    let h = match shortest {
        Some(ttl) => shared.config.scaled(ttl).heartbeat,
        None => shared.config.heartbeat_interval,
    };
    h.max(MIN_INTERVAL)
}

/// When a round must start for every lease held to be renewed with its heartbeat interval of trust still
/// left: a task handed over by its enqueue comes with its trust counted from the worker's offer, so its
/// first renewal may be due before a round of the usual spacing (never sooner than [`MIN_INTERVAL`]).
fn trust_deadline<S, St>(shared: &Shared<S, St>) -> Instant {
    let now = Instant::now();
    let earliest =
        shared.active.snapshot().iter().map(|e| e.trusted_until() - shared.config.scaled(e.ttl).heartbeat).min();
    earliest.unwrap_or(now + shared.config.heartbeat_interval).max(now + MIN_INTERVAL)
}

/// How a renewal round went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Round {
    /// No lease to renew.
    Idle,
    /// The store answered.
    Answered,
    /// The store did not answer.
    Failed,
}

/// One renewal round: extends trust for the leases renewed, cancels the work of those found gone.
pub(crate) async fn renew_once<S: TaskStore, St>(shared: &Shared<S, St>) -> Round {
    let entries = shared.active.snapshot();
    if entries.is_empty() {
        return Round::Idle;
    }
    let t0 = Instant::now();
    let leases = entries.iter().map(|e| (e.lease, e.ttl)).collect();
    match shared.store.lease_renew(LeaseRenewParams { leases }).await {
        Ok(answer) => {
            shared.health.store_ok();
            let renewed: HashSet<TaskLease> = answer.renewed.into_iter().collect();
            let busy: HashSet<TaskLease> = answer.busy.into_iter().collect();
            let mut lost = 0;
            for e in &entries {
                if renewed.contains(&e.lease) {
                    e.renewed(t0);
                } else if busy.contains(&e.lease) {
                    // another transaction holds the row: the next round decides
                } else if !e.is_finishing() {
                    lost += 1;
                    tracing::warn!(task_id = %e.lease.task_id, fence = %e.lease.fence, "lease lost: cancelling the job");
                    e.lose(CancelReason::LeaseGone);
                }
            }
            shared.metrics.renewals(RenewOutcome::Renewed, renewed.len());
            shared.metrics.renewals(RenewOutcome::Busy, busy.len());
            shared.metrics.renewals(RenewOutcome::Lost, lost);
            Round::Answered
        }
        Err(err) => {
            shared.stats.renew_failures.inc();
            shared.metrics.renewals(RenewOutcome::Error, entries.len());
            tracing::warn!(error = %err, leases = entries.len(), "renewing leases failed");
            Round::Failed
        }
    }
}
