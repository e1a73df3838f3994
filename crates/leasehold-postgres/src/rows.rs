//! Rows of `leasehold.tasks` decoded into the core records.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Postgres;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{FromRow, Row};
use uuid::Uuid;

use leasehold_core::{
    AttemptError, ClaimDiscard, ClaimedTask, DiscardCause, Error, FencingToken, TaskId, TaskLease, TaskRecord,
    TaskState, UnreadableTask,
};

/// One row of a claim's answer: a claimed task, or (when nothing was claimed) a row of NULLs that only
/// carries `due_seen`, `table_pages`, `picked` and `discarded`. Decoded by position, in the order of task_claim.sql's
/// answer (a claim decodes hundreds of rows, and looking each column up by name hashed its name every
/// time).
pub(crate) struct ClaimRow {
    id: Option<Uuid>,
    fence: Option<i64>,
    kind: Option<String>,
    queue: Option<String>,
    payload: Option<Payload>,
    attempt: Option<i32>,
    max_attempts: Option<i32>,
    lease_ttl_ms: Option<i64>,
    run_at: Option<DateTime<Utc>>,
    taken_over: Option<bool>,
    /// Due available tasks the statement's snapshot saw (up to the limit), when it picked fewer than the
    /// limit; 0 otherwise.
    pub(crate) due_seen: i64,
    /// The size of the tasks table on disk, in pages, when the statement ran.
    pub(crate) table_pages: i64,
    /// The tasks the statement picked: claimed, discarded, or left for the next claim (see
    /// task_claim.sql).
    pub(crate) picked: i64,
    /// The exhausted tasks the statement discarded, each (id, queue, kind); `None` for none.
    discarded: Option<Json<Vec<(Uuid, String, String)>>>,
}

impl<'r> FromRow<'r, PgRow> for ClaimRow {
    fn from_row(row: &'r PgRow) -> sqlx::Result<Self> {
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
            taken_over: column(row, 9)?,
            due_seen: column(row, 10)?,
            table_pages: column(row, 11)?,
            picked: column(row, 12)?,
            discarded: column(row, 13)?,
        })
    }
}

/// A task's payload, or why it does not parse: one task's payload that does not parse fails that task
/// alone, not a claim's whole answer, and a task's record still reads. Decoded as `jsonb` is, in one
/// pass.
struct Payload(Result<serde_json::Value, String>);

impl sqlx::Type<Postgres> for Payload {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <Json<serde_json::Value> as sqlx::Type<Postgres>>::type_info()
    }

    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <Json<serde_json::Value> as sqlx::Type<Postgres>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, Postgres> for Payload {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        Ok(Self(
            <Json<serde_json::Value> as sqlx::Decode<'r, Postgres>>::decode(value)
                .map(|j| j.0)
                .map_err(|e| e.to_string()),
        ))
    }
}

/// Column `i` of a claim's row. The statement's columns are fixed, so the type check `try_get` makes on
/// every value (about a third of decoding a claim, in instructions) runs in debug builds only, where
/// every test decodes through it.
fn column<'r, T>(row: &'r PgRow, i: usize) -> sqlx::Result<T>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    if cfg!(debug_assertions) { row.try_get(i) } else { row.try_get_unchecked(i) }
}

impl ClaimRow {
    /// Whether this row is a task claimed from the available ones (not a takeover).
    pub(crate) fn fresh_claim(&self) -> bool {
        self.id.is_some() && self.taken_over == Some(false)
    }

    /// The exhausted tasks the statement discarded (the same in every row of its answer).
    pub(crate) fn discarded(&mut self) -> Vec<ClaimDiscard> {
        let discarded = self.discarded.take().map(|d| d.0).unwrap_or_default();
        let cause = DiscardCause::LeaseLostOnLastAttempt;
        discarded
            .into_iter()
            .map(|(id, queue, kind)| ClaimDiscard { task_id: TaskId(id), queue, kind, cause })
            .collect()
    }

    /// The claimed task, if the row holds one: `Err` with its lease and why when its payload does not
    /// parse (jsonb keeps numbers serde_json cannot read, such as `1e400`, or a number within rounding of
    /// the largest f64, which jsonb writes out as an integer of 309 digits).
    pub(crate) fn into_task(self) -> Option<Result<ClaimedTask, UnreadableTask>> {
        let lease = TaskLease { task_id: TaskId(self.id?), fence: FencingToken(self.fence?) };
        let payload = match self.payload?.0 {
            Ok(payload) => payload,
            Err(e) => {
                let reason = unreadable_payload(&e);
                return Some(Err(UnreadableTask { lease, queue: self.queue?, kind: self.kind?, reason }));
            }
        };
        Some(Ok(ClaimedTask {
            lease,
            kind: self.kind?,
            queue: self.queue?,
            payload,
            attempt: self.attempt?,
            max_attempts: self.max_attempts?,
            lease_ttl: Duration::from_millis(u64::try_from(self.lease_ttl_ms?).unwrap_or(0)),
            run_at: self.run_at?,
            taken_over: self.taken_over?,
        }))
    }
}

#[derive(FromRow)]
pub(crate) struct TaskRow {
    id: Uuid,
    kind: String,
    queue: String,
    payload: Payload,
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
        let (payload, payload_error) = match r.payload.0 {
            Ok(payload) => (payload, None),
            Err(e) => (serde_json::Value::Null, Some(unreadable_payload(&e))),
        };
        Ok(TaskRecord {
            id: TaskId(r.id),
            state: parse_state(&r.state)?,
            kind: r.kind,
            queue: r.queue,
            payload,
            payload_error,
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

/// Why a payload does not parse, as a claim's discard and a task's record say it.
fn unreadable_payload(e: &str) -> String {
    format!("the payload does not parse as JSON: {e}")
}

pub(crate) fn parse_state(s: &str) -> Result<TaskState, Error> {
    TaskState::parse(s).ok_or_else(|| Error::Schema(format!("unknown task state {s:?} in the database")))
}
