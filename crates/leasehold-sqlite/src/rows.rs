//! Rows of `leasehold_tasks` decoded into the core records.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::sqlite::SqliteRow;
use sqlx::{FromRow, Row, Sqlite};
use uuid::Uuid;

use leasehold_core::{AttemptError, ClaimedTask, Error, FencingToken, TaskId, TaskLease, TaskRecord, TaskState};

pub(crate) fn ms_to_time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

pub(crate) fn parse_id(s: &str) -> Result<TaskId, Error> {
    Uuid::parse_str(s).map(TaskId).map_err(|e| Error::Schema(format!("task id {s:?} in the database: {e}")))
}

fn parse_json(s: &str, what: &str) -> Result<serde_json::Value, Error> {
    serde_json::from_str(s).map_err(|e| Error::Schema(format!("{what} in the database is not JSON: {e}")))
}

pub(crate) fn parse_state(s: &str) -> Result<TaskState, Error> {
    TaskState::parse(s).ok_or_else(|| Error::Schema(format!("unknown task state {s:?} in the database")))
}

/// One row of a claim's answer, decoded by position in the order of task_claim.sql's
/// `RETURNING` (a claim decodes hundreds of rows, and looking each column up by name hashed its name).
pub(crate) struct ClaimRow {
    pub(crate) id: String,
    fence: i64,
    kind: String,
    queue: String,
    payload: String,
    attempt: i32,
    max_attempts: i32,
    lease_ttl_ms: i64,
    run_at: i64,
    running: bool,
    taken_over: bool,
}

impl<'r> FromRow<'r, SqliteRow> for ClaimRow {
    fn from_row(row: &'r SqliteRow) -> sqlx::Result<Self> {
        Ok(Self {
            id: column(row, 0)?,
            fence: column(row, 1)?,
            kind: column(row, 2)?,
            queue: column(row, 3)?,
            payload: column(row, 4)?,
            attempt: column(row, 5)?,
            max_attempts: column(row, 6)?,
            lease_ttl_ms: column(row, 7)?,
            run_at: column(row, 8)?,
            running: column(row, 9)?,
            taken_over: column(row, 10)?,
        })
    }
}

/// Column `i` of a claim's row. The statement's columns are fixed, so the type check `try_get` makes on
/// every value runs in debug builds only, where every test decodes through it.
fn column<'r, T>(row: &'r SqliteRow, i: usize) -> sqlx::Result<T>
where
    T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
{
    if cfg!(debug_assertions) { row.try_get(i) } else { row.try_get_unchecked(i) }
}

impl ClaimRow {
    pub(crate) fn into_claimed(self) -> Result<ClaimedTask, Error> {
        Ok(ClaimedTask {
            lease: TaskLease { task_id: parse_id(&self.id)?, fence: FencingToken(self.fence) },
            payload: parse_json(&self.payload, "a payload")?,
            kind: self.kind,
            queue: self.queue,
            attempt: self.attempt,
            max_attempts: self.max_attempts,
            lease_ttl: Duration::from_millis(u64::try_from(self.lease_ttl_ms).unwrap_or(0)),
            run_at: ms_to_time(self.run_at),
            taken_over: self.taken_over,
        })
    }

    pub(crate) fn fence(&self) -> i64 {
        self.fence
    }

    /// False for an expired task the claim discarded (it had no attempt left).
    pub(crate) fn running(&self) -> bool {
        self.running
    }
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
        Ok(TaskRecord {
            id: parse_id(&r.id)?,
            state: parse_state(&r.state)?,
            payload: parse_json(&r.payload, "a payload")?,
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
