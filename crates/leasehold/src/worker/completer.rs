//! Batched completion: successful tasks are completed many per statement, each still fenced by its
//! own token. A job counts as done only once the store said so: the request carries the rest of its
//! task's settlement ([`Settle`]), which the completer runs with the store's answer. The task's own
//! future ends when its request is queued, so a completion costs no reply channel and no second
//! wake-up of the task.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::telemetry::record::WorkerMetrics;
use leasehold_core::{CompletionStatus, Error, Result, TaskCompleteParams, TaskLease, TaskStore};

/// The most completions flushed in one statement.
pub(crate) const MAX_BATCH: usize = 1_000;
const RETRY_DELAYS: [Duration; 3] = [Duration::from_millis(50), Duration::from_millis(250), Duration::from_secs(1)];

/// What is left of a task once the store answered its completion.
pub(crate) trait Settle: Send + 'static {
    fn settle(self, status: Result<CompletionStatus>);
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

async fn flush<S: TaskStore, T: Settle>(store: &S, batch: Vec<CompleteRequest<T>>, delete_completed: bool) {
    let (thens, tasks): (Vec<_>, Vec<_>) = batch.into_iter().map(|r| (r.then, (r.lease, r.result))).unzip();
    let params = TaskCompleteParams { tasks, delete_completed };
    let mut delays = RETRY_DELAYS.iter();
    let outcome = loop {
        match store.task_complete_many(params.clone()).await {
            Ok(statuses) => break Ok(statuses),
            Err(e) => match delays.next() {
                Some(d) => {
                    tracing::warn!(error = %e, "completing a batch failed; retrying");
                    tokio::time::sleep(*d).await;
                }
                None => break Err(e.to_string()),
            },
        }
    };
    match outcome {
        Ok(statuses) => {
            let mut statuses = statuses.into_iter();
            for then in thens {
                // a store answers one status per task; a missing one is a failed write, not a success
                let status = statuses
                    .next()
                    .ok_or_else(|| Error::database("the store answered fewer statuses than tasks".to_owned()));
                then.settle(status);
            }
        }
        Err(msg) => {
            for then in thens {
                then.settle(Err(Error::database(format!("completion failed: {msg}"))));
            }
        }
    }
}
