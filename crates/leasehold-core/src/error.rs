//! The one error type of the store layer.

use crate::task::{FencingToken, TaskId, TaskLease};

/// A boxed error from a backend or a handler.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Results of store operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a store operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A write carried a fencing token that is no longer the task's current one (the lease expired and
    /// the task was claimed again, or the task was cancelled or finished): nothing was changed.
    #[error("lease lost: task {task_id} is no longer held with fencing token {fence}")]
    LeaseLost {
        /// The task written to.
        task_id: TaskId,
        /// The stale token the write carried.
        fence: FencingToken,
    },
    /// An enqueue reused an idempotency key with a different job kind or payload than the task that
    /// holds the key: nothing was enqueued.
    #[error("idempotency key {key:?} is held by task {existing} with a different kind or payload")]
    IdempotencyConflict {
        /// The key.
        key: String,
        /// The task that holds it.
        existing: TaskId,
    },
    /// An effect key was claimed in a committed transaction that recorded no outcome (or is claimed
    /// already in this one): the effect may or may not have happened, so it is neither run nor skipped.
    #[error("effect {0:?} was claimed but its outcome was never recorded")]
    EffectUnrecorded(String),
    /// An optimistic update found another version than the one it read: someone else changed the row.
    #[error("version conflict on {entity}: expected version {expected}")]
    VersionConflict {
        /// What was updated (a table and key, as the caller names it).
        entity: String,
        /// The version the update expected.
        expected: i64,
    },
    /// A leader's write carried a term that is no longer current: another instance leads now.
    #[error("leadership of {name:?} lost: term {token} is over")]
    LeadershipLost {
        /// The leader lease.
        name: String,
        /// The stale term's token.
        token: FencingToken,
    },
    /// No schedule has this name.
    #[error("schedule {0:?} not found")]
    ScheduleNotFound(String),
    /// No task has this id.
    #[error("task {0} not found")]
    NotFound(TaskId),
    /// A task or an argument was rejected before anything was written.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A configuration was rejected when it was built.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A payload or result could not be (de)serialized.
    #[error("serialization: {0}")]
    Serialization(#[from] serde_json::Error),
    /// The database schema is missing, foreign or newer than this build understands.
    #[error("schema: {0}")]
    Schema(String),
    /// The store could not be opened or reached: an unwritable path, a refused connection.
    #[error("cannot reach the store: {0}")]
    Connect(String),
    /// The store could not be reached for a request, or the connection broke while it ran (a server
    /// restarting or shutting down, a lost network, a pool with no connection to lend, a database locked
    /// by another writer for too long): the request may or may not have been applied. A fenced write is
    /// safe to send again: it is applied once, or refused by its token.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// The backend failed otherwise (an unexpected SQL error, a value the database refused).
    #[error("database: {0}")]
    Database(#[source] BoxError),
}

impl Error {
    /// [`Error::LeaseLost`] for a write that carried `lease`'s token.
    pub fn lease_lost(lease: TaskLease) -> Self {
        Self::LeaseLost { task_id: lease.task_id, fence: lease.fence }
    }

    /// Wraps a backend error.
    pub fn database(e: impl Into<BoxError>) -> Self {
        Self::Database(e.into())
    }

    /// The database has migration `version` applied, which this build (knowing up to `latest`) lacks.
    pub fn schema_from_newer_version(version: i64, latest: i64) -> Self {
        Self::Schema(format!(
            "the database has leasehold migration {version} applied, which this build does not know: \
             it was migrated by a newer leasehold (this build knows up to {latest})"
        ))
    }

    /// Migration `version` was applied with other contents than this build's.
    pub fn schema_mismatch(version: i64) -> Self {
        Self::Schema(format!("leasehold migration {version} was applied with different contents than this build's"))
    }

    /// Whether this is [`Error::Unavailable`]: the same request may succeed when sent again.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// Whether this is [`Error::LeaseLost`].
    pub fn is_lease_lost(&self) -> bool {
        matches!(self, Self::LeaseLost { .. })
    }
}
