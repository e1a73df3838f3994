//! Batched completion: successful tasks are completed many per statement, each still fenced by its
//! own token. A request waits for its answer, so a job counts as done only once the store said so.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::telemetry::record::WorkerMetrics;
use leasehold_core::{CompletionStatus, Error, Result, TaskCompleteParams, TaskLease, TaskStore};

/// The most completions flushed in one statement.
pub(crate) const MAX_BATCH: usize = 1_000;
const RETRY_DELAYS: [Duration; 3] = [Duration::from_millis(50), Duration::from_millis(250), Duration::from_secs(1)];

pub(crate) struct CompleteRequest {
    pub(crate) lease: TaskLease,
    pub(crate) result: Option<serde_json::Value>,
    pub(crate) reply: oneshot::Sender<Result<CompletionStatus>>,
}

/// Flushes whatever is queued, as one batch, until stopped with an empty queue.
pub(crate) async fn run<S: TaskStore>(
    store: S,
    mut rx: mpsc::Receiver<CompleteRequest>,
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
        flush(&store, batch).await;
    }
}

async fn flush<S: TaskStore>(store: &S, batch: Vec<CompleteRequest>) {
    let (replies, tasks): (Vec<_>, Vec<_>) = batch.into_iter().map(|r| (r.reply, (r.lease, r.result))).unzip();
    let params = TaskCompleteParams { tasks };
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
            for (reply, status) in replies.into_iter().zip(statuses) {
                let _ = reply.send(Ok(status));
            }
        }
        Err(msg) => {
            for reply in replies {
                let _ = reply.send(Err(Error::database(format!("completion failed: {msg}"))));
            }
        }
    }
}
