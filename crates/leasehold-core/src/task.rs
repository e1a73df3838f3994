//! Tasks, their states and the fencing tokens that guard every write of a lease holder.
//!
//! ```text
//!                enqueue
//!                   |
//!                   v          claim (new token)
//!   +-------->  available  ---------------------->  running
//!   |               |   ^                            | | | |
//!   |     cancel    |   | retry / snooze / release   | | | | complete  --> completed
//!   |               v   +----------------------------+ | | | fail / max attempts --> discarded
//!   |           cancelled  <---------------------------+ | | cancel
//!   |                                                    |
//!   +------------ lease expired: the next claim takes the task with a new token
//! ```

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The identifier of a task: a UUID v7, so ids sort by creation time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(pub Uuid);

impl TaskId {
    /// A new time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for TaskId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A fencing token: issued by the store on every claim, strictly increasing across all claims of all
/// tasks, never reused. Only writes that carry a task's current token change the task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FencingToken(pub i64);

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a holder needs to write to its task: the id and the token of its claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TaskLease {
    /// The task held.
    pub task_id: TaskId,
    /// The token of the claim that granted the lease.
    pub fence: FencingToken,
}

/// The states of a task. See the module documentation for the transitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for its `run_at` and a worker.
    Available,
    /// Held by a worker under a lease.
    Running,
    /// Finished successfully (final).
    Completed,
    /// Cancelled by the handler or an operator (final).
    Cancelled,
    /// Failed for good: out of attempts, undecodable or failed explicitly (final).
    Discarded,
}

impl TaskState {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
            Self::Discarded => "discarded",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "available" => Self::Available,
            "running" => Self::Running,
            "completed" => Self::Completed,
            "cancelled" => Self::Cancelled,
            "discarded" => Self::Discarded,
            _ => return None,
        })
    }

    /// Whether no transition leaves this state.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Cancelled | Self::Discarded)
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One failed attempt, as recorded on the task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptError {
    /// The attempt that failed (1 for the first run).
    pub attempt: i32,
    /// When the failure was recorded, on the store's clock.
    pub at: DateTime<Utc>,
    /// What went wrong.
    pub message: String,
}

/// A task as the store holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskRecord {
    /// Its id.
    pub id: TaskId,
    /// The job kind that runs it.
    pub kind: String,
    /// Its queue.
    pub queue: String,
    /// The job's arguments; null when they do not parse (see `payload_error`).
    pub payload: serde_json::Value,
    /// Why the payload does not parse, when it does not: JSON that serde_json cannot read (a number
    /// beyond any f64, such as `1e400`, or nesting deeper than 128 levels), written by other code. No
    /// handler can run such a task: the claim that takes it discards it, and records why in `errors`.
    pub payload_error: Option<String>,
    /// Where it stands.
    pub state: TaskState,
    /// Lower runs first.
    pub priority: i16,
    /// Not claimed before this time.
    pub run_at: DateTime<Utc>,
    /// Claims so far (the running attempt included).
    pub attempt: i32,
    /// Attempts allowed before the task is discarded.
    pub max_attempts: i32,
    /// The token of the latest claim, if any.
    pub fence: Option<FencingToken>,
    /// When the current lease ends, on the store's clock, while running.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// The idempotency key it holds, if any.
    pub idempotency_key: Option<String>,
    /// The worker that holds or last held it.
    pub claimed_by: Option<String>,
    /// How often a holder lost its lease (taken over after expiry, or self-fenced).
    pub lease_losses: i32,
    /// Every failed attempt, oldest first.
    pub errors: Vec<AttemptError>,
    /// The value the job returned, once completed.
    pub result: Option<serde_json::Value>,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When it reached a final state.
    pub finalized_at: Option<DateTime<Utc>>,
}

/// A task handed to a worker by a claim.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimedTask {
    /// The task and the token of this claim.
    pub lease: TaskLease,
    /// The job kind.
    pub kind: String,
    /// The queue it was claimed from.
    pub queue: String,
    /// The job's arguments.
    pub payload: serde_json::Value,
    /// This attempt's number (1 for the first run).
    pub attempt: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// The lease duration the store granted, measured on its clock.
    pub lease_ttl: Duration,
    /// When the task was due.
    pub run_at: DateTime<Utc>,
    /// Whether this claim took the task over from a holder whose lease expired.
    pub taken_over: bool,
}
