//! Rows of `leasehold.tasks` decoded into the core records.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use sqlx::types::Json;
use uuid::Uuid;

use leasehold_core::{AttemptError, ClaimedTask, Error, FencingToken, TaskId, TaskLease, TaskRecord, TaskState};

#[derive(FromRow)]
pub(crate) struct ClaimRow {
    id: Uuid,
    /// `running`, or `discarded` for an expired task that had no attempt left.
    pub(crate) state: String,
    fence: i64,
    kind: String,
    queue: String,
    payload: Json<serde_json::Value>,
    attempt: i32,
    max_attempts: i32,
    lease_ttl_ms: i64,
    run_at: DateTime<Utc>,
    taken_over: bool,
}

impl From<ClaimRow> for ClaimedTask {
    fn from(r: ClaimRow) -> Self {
        ClaimedTask {
            lease: TaskLease { task_id: TaskId(r.id), fence: FencingToken(r.fence) },
            kind: r.kind,
            queue: r.queue,
            payload: r.payload.0,
            attempt: r.attempt,
            max_attempts: r.max_attempts,
            lease_ttl: Duration::from_millis(u64::try_from(r.lease_ttl_ms).unwrap_or(0)),
            run_at: r.run_at,
            taken_over: r.taken_over,
        }
    }
}

#[derive(FromRow)]
pub(crate) struct TaskRow {
    id: Uuid,
    kind: String,
    queue: String,
    payload: Json<serde_json::Value>,
    state: String,
    priority: i16,
    run_at: DateTime<Utc>,
    attempt: i32,
    max_attempts: i32,
    fence: Option<i64>,
    lease_expires_at: Option<DateTime<Utc>>,
    idempotency_key: Option<String>,
    claimed_by: Option<String>,
    lease_losses: i32,
    errors: Json<Vec<AttemptError>>,
    result: Option<Json<serde_json::Value>>,
    created_at: DateTime<Utc>,
    finalized_at: Option<DateTime<Utc>>,
}

impl TryFrom<TaskRow> for TaskRecord {
    type Error = Error;

    fn try_from(r: TaskRow) -> Result<Self, Error> {
        Ok(TaskRecord {
            id: TaskId(r.id),
            state: parse_state(&r.state)?,
            kind: r.kind,
            queue: r.queue,
            payload: r.payload.0,
            priority: r.priority,
            run_at: r.run_at,
            attempt: r.attempt,
            max_attempts: r.max_attempts,
            fence: r.fence.map(FencingToken),
            lease_expires_at: r.lease_expires_at,
            idempotency_key: r.idempotency_key,
            claimed_by: r.claimed_by,
            lease_losses: r.lease_losses,
            errors: r.errors.0,
            result: r.result.map(|j| j.0),
            created_at: r.created_at,
            finalized_at: r.finalized_at,
        })
    }
}

pub(crate) fn parse_state(s: &str) -> Result<TaskState, Error> {
    TaskState::parse(s).ok_or_else(|| Error::Schema(format!("unknown task state {s:?} in the database")))
}
