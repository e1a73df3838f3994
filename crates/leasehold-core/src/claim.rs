//! What a claim discards instead of handing out, and the discard of a task whose payload does not parse,
//! which both stores make the same way once their claim has answered.

use crate::{TaskFinishParams, TaskId, TaskLease, TaskState, TaskStore};

/// Why a claim discarded a task it picked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiscardCause {
    /// Its lease expired on its last attempt: its holders kept crashing or stalling. The task records
    /// [`crate::LEASE_LOST_ON_LAST_ATTEMPT`].
    LeaseLostOnLastAttempt,
    /// Its payload does not parse as JSON the worker can read (written by other code: a number beyond
    /// any f64, such as `1e400`, or nesting deeper than serde_json reads), so no handler could run it. The
    /// task records why.
    UnreadablePayload,
}

impl DiscardCause {
    /// A short name, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LeaseLostOnLastAttempt => "lease_lost_on_last_attempt",
            Self::UnreadablePayload => "unreadable_payload",
        }
    }
}

/// A task a claim picked and discarded instead of handing it out; the store has written it as discarded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimDiscard {
    /// The task.
    pub task_id: TaskId,
    /// Its queue.
    pub queue: String,
    /// Its job kind.
    pub kind: String,
    /// Why.
    pub cause: DiscardCause,
}

/// A claimed task whose payload does not parse: the claim's lease on it, and why.
#[derive(Clone, Debug)]
pub struct UnreadableTask {
    /// The lease the claim took.
    pub lease: TaskLease,
    /// Its queue.
    pub queue: String,
    /// Its job kind.
    pub kind: String,
    /// Why the payload does not parse.
    pub reason: String,
}

/// Discards the claimed tasks whose payload does not parse, each with why, fenced by the claim's token:
/// no handler could run them, and answering the claim with an error instead would leave every task of
/// it running unstarted until its lease ran out, claim after claim, each taking an attempt from its
/// batch's tasks. Answers the discards written. A discard that fails leaves its task to its lease, and
/// the next claim tries again.
pub async fn discard_unreadable<S: TaskStore>(store: &S, unreadable: Vec<UnreadableTask>) -> Vec<ClaimDiscard> {
    let mut discarded = Vec::with_capacity(unreadable.len());
    for UnreadableTask { lease, queue, kind, reason } in unreadable {
        let task_id = lease.task_id;
        tracing::warn!(%task_id, %reason, "a claimed task's payload does not parse: discarded");
        let finish = TaskFinishParams { lease, state: TaskState::Discarded, reason };
        match store.task_finish(finish).await {
            Ok(()) => discarded.push(ClaimDiscard { task_id, queue, kind, cause: DiscardCause::UnreadablePayload }),
            Err(e) => tracing::warn!(%task_id, error = %e, "discarding a task whose payload does not parse failed"),
        }
    }
    discarded
}
