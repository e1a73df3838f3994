//! Batched completion: successful tasks are completed many per statement, each still fenced by its
//! own token. A job counts as done only once the store said so: the request carries the rest of its
//! task's settlement ([`Settle`]), which the completer runs with the store's answer. The task's own
//! future ends when its request is queued, so a completion costs no reply channel and no second
//! wake-up of the task.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::telemetry::record::WorkerMetrics;
use leasehold_core::{CompletionStatus, Error, Result, TaskCompleteParams, TaskLease, TaskStore};

/// The most completions flushed in one statement.
pub(crate) const MAX_BATCH: usize = 1_000;
/// The pauses between tries of a batch the store could not be reached for; the last repeats.
pub(crate) const RETRY_DELAYS: [Duration; 4] =
    [Duration::from_millis(50), Duration::from_millis(250), Duration::from_millis(500), Duration::from_secs(1)];

/// What is left of a task once the store answered its completion.
pub(crate) trait Settle: Send + 'static {
    fn settle(self, status: Result<CompletionStatus>);
    /// Until when the worker trusts the task's lease: its completion is tried again until then.
    fn trusted_until(&self) -> Instant;
}

pub(crate) struct CompleteRequest<T> {
    pub(crate) lease: TaskLease,
    pub(crate) result: Option<serde_json::Value>,
    pub(crate) then: T,
}

/// Flushes whatever is queued, as one batch, until stopped with an empty queue.
pub(crate) async fn run<S: TaskStore, T: Settle>(
    store: S,
    mut rx: mpsc::Receiver<CompleteRequest<T>>,
    delete_completed: bool,
    metrics: Arc<WorkerMetrics>,
    stop: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            biased;
            r = rx.recv() => match r { Some(r) => r, None => return },
            _ = stop.cancelled() => return,
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        metrics.completion_batch(batch.len());
        flush(&store, batch, delete_completed).await;
    }
}

/// Writes a batch's completions and settles each with the store's answer.
///
/// A store that cannot be reached (or lost the connection) is tried again with the same batch, for as
/// long as the worker trusts the tasks' leases (they are renewed meanwhile): a completion the store never
/// answered is as likely to have been written as not, and sending it again is safe, since it is applied
/// once or refused by its token. A task whose trust ends first is settled as a failed write and runs
/// again once its lease expires, as its holder would then have stopped its work. Any other error is the
/// store refusing something in the batch (a result it cannot keep): the batch is split in halves, and
/// each half written on its own, so that one task's refusal does not fail the others.
async fn flush<S: TaskStore, T: Settle>(store: &S, batch: Vec<CompleteRequest<T>>, delete_completed: bool) {
    let mut pieces = vec![batch];
    while let Some(mut piece) = pieces.pop() {
        let mut delays = RETRY_DELAYS.iter();
        loop {
            let tasks = piece.iter().map(|r| (r.lease, r.result.clone())).collect();
            let error = match store.task_complete_many(TaskCompleteParams { tasks, delete_completed }).await {
                Ok(statuses) => {
                    let mut statuses = statuses.into_iter();
                    for r in piece {
                        // a store answers one status per task; a missing one is a failed write, not a success
                        let status = statuses
                            .next()
                            .ok_or_else(|| Error::database("the store answered fewer statuses than tasks".to_owned()));
                        r.then.settle(status);
                    }
                    break;
                }
                Err(e) => e,
            };
            if !error.is_unavailable() {
                if piece.len() > 1 {
                    tracing::warn!(error = %error, tasks = piece.len(), "the store refused a completion batch; writing it in halves");
                    let back = piece.split_off(piece.len() / 2);
                    pieces.push(back);
                    pieces.push(piece);
                } else {
                    settle_all(piece, &error);
                }
                break;
            }
            let delay = *delays.next().unwrap_or(&RETRY_DELAYS[RETRY_DELAYS.len() - 1]);
            let retry_at = Instant::now() + delay;
            // the tasks whose trust ends before the next try are settled now; the rest wait for it
            let (kept, lapsed): (Vec<_>, Vec<_>) = piece.into_iter().partition(|r| r.then.trusted_until() > retry_at);
            settle_all(lapsed, &error);
            if kept.is_empty() {
                break;
            }
            tracing::warn!(error = %error, tasks = kept.len(), "completing a batch failed; trying again");
            piece = kept;
            tokio::time::sleep_until(retry_at).await;
        }
    }
}

fn settle_all<T: Settle>(requests: Vec<CompleteRequest<T>>, error: &Error) {
    for r in requests {
        r.then.settle(Err(Error::database(format!("completion failed: {error}"))));
    }
}
