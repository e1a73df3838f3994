//! Renews every lease the worker holds in one statement, every `H`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use leasehold_core::{LeaseRenewParams, TaskLease, TaskStore};

use super::Shared;
use super::lease::CancelReason;

/// The shortest pause between two renewals.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

pub(crate) async fn run<S: TaskStore, St: Send + Sync + 'static>(shared: Arc<Shared<S, St>>, stop: CancellationToken) {
    loop {
        let pause = interval(&shared);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(pause) => renew_once(&shared).await,
            // a new lease may be shorter than any held so far: recompute the pause
            _ = shared.active.added.notified() => {}
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

/// One renewal round: extends trust for the leases renewed, cancels the work of those found gone.
pub(crate) async fn renew_once<S: TaskStore, St>(shared: &Shared<S, St>) {
    let entries = shared.active.snapshot();
    if entries.is_empty() {
        return;
    }
    let t0 = Instant::now();
    let leases = entries.iter().map(|e| (e.lease, e.ttl)).collect();
    match shared.store.lease_renew(LeaseRenewParams { leases }).await {
        Ok(answer) => {
            let renewed: HashSet<TaskLease> = answer.renewed.into_iter().collect();
            let busy: HashSet<TaskLease> = answer.busy.into_iter().collect();
            for e in entries {
                if renewed.contains(&e.lease) {
                    e.renewed(t0);
                } else if busy.contains(&e.lease) {
                    // another transaction holds the row: the next round decides
                } else if !e.is_finishing() {
                    tracing::warn!(task_id = %e.lease.task_id, fence = %e.lease.fence, "lease lost: cancelling the job");
                    e.lose(CancelReason::LeaseGone);
                }
            }
        }
        Err(err) => {
            shared.stats.renew_failures.inc();
            tracing::warn!(error = %err, leases = entries.len(), "renewing leases failed");
        }
    }
}
