//! Rows of `leasehold_tasks` decoded into the core records.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::FromRow;
use uuid::Uuid;

use leasehold_core::{
    AttemptError, ClaimDiscard, ClaimedTask, DiscardCause, Error, FencingToken, TaskId, TaskLease, TaskRecord,
    TaskState, UnreadableTask,
};

pub(crate) fn ms_to_time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

pub(crate) fn parse_id(s: &str) -> Result<TaskId, Error> {
    Uuid::parse_str(s).map(TaskId).map_err(|e| Error::Schema(format!("task id {s:?} in the database: {e}")))
}

fn parse_json(s: &str, what: &str) -> Result<serde_json::Value, Error> {
    serde_json::from_str(s).map_err(|e| Error::Schema(format!("{what} in the database is not JSON: {e}")))
}

/// Why a payload does not parse, as a claim's discard and a task's record say it.
fn unreadable_payload(e: serde_json::Error) -> String {
    format!("the payload does not parse as JSON: {e}")
}

pub(crate) fn parse_state(s: &str) -> Result<TaskState, Error> {
    TaskState::parse(s).ok_or_else(|| Error::Schema(format!("unknown task state {s:?} in the database")))
}

/// One task of a claim's answer (task_claim_answer_plain.sql or task_claim_answer.sql): a JSON array
/// decoded by position, in the order both statements write it. The payload is kept as its text here and parsed on its own, so that
/// it may nest as deep as a payload read by itself (serde_json stops at 128 levels, and the answer puts
/// each payload two levels down).
#[derive(Deserialize)]
struct ClaimedJson<'a>(
    String,
    i64,
    String,
    String,
    #[serde(borrow)] &'a serde_json::value::RawValue,
    i32,
    i32,
    i64,
    i64,
    i64,
    i64,
);

/// What a claim's answer holds.
#[derive(Default)]
pub(crate) struct Claimed {
    /// The tasks claimed.
    pub(crate) tasks: Vec<ClaimedTask>,
    /// The tasks claimed whose payload does not parse, each with why.
    pub(crate) unreadable: Vec<UnreadableTask>,
    /// The exhausted tasks the claim discarded.
    pub(crate) discarded: Vec<ClaimDiscard>,
}

/// The tasks of a claim's answer, one JSON array of them in claim order (task_claim_answer_plain.sql or
/// task_claim_answer.sql). A task
/// whose payload does not parse (a file written by other code may hold numbers serde_json cannot read,
/// such as `1e400`) is answered apart, with its lease and why.
pub(crate) fn claimed_tasks(answer: &str) -> Result<Claimed, Error> {
    let rows: Vec<ClaimedJson<'_>> = serde_json::from_str(answer)
        .map_err(|e| Error::Schema(format!("a claim's answer from the database does not decode: {e}")))?;
    let mut out = Claimed { tasks: Vec::with_capacity(rows.len()), ..Claimed::default() };
    for row in rows {
        let ClaimedJson(id, fence, kind, queue, payload, attempt, max_attempts, ttl_ms, run_at, taken_over, exhausted) =
            row;
        let task_id = parse_id(&id)?;
        if exhausted != 0 {
            let cause = DiscardCause::LeaseLostOnLastAttempt;
            out.discarded.push(ClaimDiscard { task_id, queue, kind, cause });
            continue;
        }
        let lease = TaskLease { task_id, fence: FencingToken(fence) };
        let payload = match serde_json::from_str(payload.get()) {
            Ok(payload) => payload,
            Err(e) => {
                let reason = unreadable_payload(e);
                out.unreadable.push(UnreadableTask { lease, queue, kind, reason });
                continue;
            }
        };
        out.tasks.push(ClaimedTask {
            lease,
            payload,
            kind,
            queue,
            attempt,
            max_attempts,
            lease_ttl: Duration::from_millis(u64::try_from(ttl_ms).unwrap_or(0)),
            run_at: ms_to_time(run_at),
            taken_over: taken_over != 0,
        });
    }
    Ok(out)
}

#[derive(Deserialize)]
struct StoredError {
    attempt: i32,
    at: i64,
    message: String,
}

#[derive(FromRow)]
pub(crate) struct TaskRow {
    id: String,
    kind: String,
    queue: String,
    payload: String,
    state: String,
    priority: i16,
    run_at: i64,
    attempt: i32,
    max_attempts: i32,
    fence: Option<i64>,
    lease_expires_at: Option<i64>,
    idempotency_key: Option<String>,
    claimed_by: Option<String>,
    lease_losses: i32,
    errors: String,
    result: Option<String>,
    created_at: i64,
    finalized_at: Option<i64>,
}

impl TryFrom<TaskRow> for TaskRecord {
    type Error = Error;

    fn try_from(r: TaskRow) -> Result<Self, Error> {
        let errors: Vec<StoredError> = serde_json::from_str(&r.errors)
            .map_err(|e| Error::Schema(format!("the errors of task {} are not readable: {e}", r.id)))?;
        let (payload, payload_error) = match serde_json::from_str(&r.payload) {
            Ok(payload) => (payload, None),
            Err(e) => (serde_json::Value::Null, Some(unreadable_payload(e))),
        };
        Ok(TaskRecord {
            id: parse_id(&r.id)?,
            state: parse_state(&r.state)?,
            payload,
            payload_error,
            result: r.result.as_deref().map(|s| parse_json(s, "a result")).transpose()?,
            kind: r.kind,
            queue: r.queue,
            priority: r.priority,
            run_at: ms_to_time(r.run_at),
            attempt: r.attempt,
            max_attempts: r.max_attempts,
            fence: r.fence.map(FencingToken),
            lease_expires_at: r.lease_expires_at.map(ms_to_time),
            idempotency_key: r.idempotency_key,
            claimed_by: r.claimed_by,
            lease_losses: r.lease_losses,
            errors: errors
                .into_iter()
                .map(|e| AttemptError { attempt: e.attempt, at: ms_to_time(e.at), message: e.message })
                .collect(),
            created_at: ms_to_time(r.created_at),
            finalized_at: r.finalized_at.map(ms_to_time),
        })
    }
}
