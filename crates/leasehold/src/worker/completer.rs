//! Batched completion: successful tasks are completed many per statement, each still fenced by its
//! own token. A job counts as done only once the store said so: the request carries the rest of its
//! task's settlement ([`Settle`]), which the completer runs with the store's answer. The task's own
//! future ends when its request is queued, so a completion costs no reply channel and no second
//! wake-up of the task.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::tries::{Tries, attempt};
use crate::telemetry::record::WorkerMetrics;
use leasehold_core::{CompletionStatus, Error, Result, TaskCompleteParams, TaskLease, TaskStore};

/// The most completions flushed in one statement.
pub(crate) const MAX_BATCH: usize = 1_000;

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

/// Completions written together, with each one's limit once a try of theirs failed.
type Piece<T> = (Vec<CompleteRequest<T>>, Option<Vec<Instant>>);

/// Writes a batch's completions and settles each with the store's answer.
///
/// A store that cannot be reached (or lost the connection) is tried again with the same batch, for as
/// long as the worker trusted each task's lease when the first try failed (renewals that succeed
/// meanwhile do not extend that, so a store that renews leases but keeps failing completions cannot
/// hold a batch forever): a completion the store never answered is as likely to have been written as
/// not, and sending it again is safe, since it is applied once or refused by its token. A task whose
/// time is up is settled as a failed write and runs again once its lease expires, as its holder would
/// then have stopped its work. Any other error is the store refusing something in the batch: the batch
/// is split in halves, and each half written on its own, so that one task's refusal does not fail the
/// others.
async fn flush<S: TaskStore, T: Settle>(store: &S, batch: Vec<CompleteRequest<T>>, delete_completed: bool) {
    // each piece with its tasks' limits, once a try of theirs failed
    let mut pieces: Vec<Piece<T>> = vec![(batch, None)];
    while let Some((mut piece, mut limits)) = pieces.pop() {
        let mut tries = Tries::new();
        loop {
            let tasks = piece.iter().map(|r| (r.lease, r.result.clone())).collect();
            // an attempt that outlasts every task's limit is given up (see `tries::attempt`)
            let until = match &limits {
                Some(limits) => limits.iter().max().copied(),
                None => piece.iter().map(|r| r.then.trusted_until()).max(),
            };
            let write = store.task_complete_many(TaskCompleteParams { tasks, delete_completed });
            let answer = attempt(until.unwrap_or_else(Instant::now), write).await;
            let error = match answer {
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
                    let tasks = piece.len();
                    tracing::warn!(error = %error, tasks, "the store refused a completion batch; writing it in halves");
                    let half = piece.len() / 2;
                    let back = piece.split_off(half);
                    let back_limits = limits.as_mut().map(|l| l.split_off(half));
                    pieces.push((back, back_limits));
                    pieces.push((piece, limits));
                } else {
                    settle_all(piece, &error);
                }
                break;
            }
            let known = limits.get_or_insert_with(|| piece.iter().map(|r| r.then.trusted_until()).collect());
            let retry_at = tries.next_at();
            // the tasks whose time is up before the next try are settled now; the rest wait for it
            let mut kept = Vec::with_capacity(piece.len());
            let mut kept_limits = Vec::with_capacity(piece.len());
            for (r, limit) in piece.into_iter().zip(known.iter()) {
                if *limit > retry_at {
                    kept.push(r);
                    kept_limits.push(*limit);
                } else {
                    settle_all([r], &error);
                }
            }
            if kept.is_empty() {
                break;
            }
            tracing::warn!(error = %error, tasks = kept.len(), "completing a batch failed; trying again");
            (piece, limits) = (kept, Some(kept_limits));
            tokio::time::sleep_until(retry_at).await;
        }
    }
}

/// Settles each request as a failed write (the task runs again once its lease expires).
fn settle_all<T: Settle>(requests: impl IntoIterator<Item = CompleteRequest<T>>, error: &Error) {
    for r in requests {
        let message = format!("completion failed: {error}");
        let failed = if error.is_unavailable() { Error::Unavailable(message.into()) } else { Error::database(message) };
        r.then.settle(Err(failed));
    }
}
