//! PostgreSQL: the store, and the operations that join the application's own transaction.

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::PgConnection;

pub use leasehold_postgres::{PgStore, migrate, tx};

use leasehold_core::{Result, TaskId, TaskLease};

use crate::client::{Client, EnqueueOptions, new_task};
use crate::job::Job;
use crate::once::{self, EffectKey, Once};

impl Client<PgStore> {
    /// Enqueues a job inside the caller's transaction: the task exists only if the caller commits.
    pub async fn enqueue_in<J: Job>(&self, conn: &mut PgConnection, job: J, opts: EnqueueOptions) -> Result<TaskId> {
        let task = new_task(&job, &opts)?;
        let queue = task.queue.clone();
        let id = tx::task_insert_in(conn, task).await?;
        // counted when written: a caller that rolls back leaves a count without a task
        crate::telemetry::record::enqueued("postgres", &queue, J::KIND, 1);
        Ok(id)
    }
}

/// Completes the running task inside the caller's transaction, fenced by its token. A lost lease
/// answers [`leasehold_core::Error::LeaseLost`]; dropping the transaction then rolls back every
/// write it made. The worker sees the completion and does not complete the task again.
pub async fn complete_in(conn: &mut PgConnection, lease: TaskLease, result: Option<serde_json::Value>) -> Result<()> {
    crate::telemetry::record::counting_stale("complete", tx::task_complete_in(conn, lease, result).await)
}

/// Claims the effect `key` in the caller's transaction: [`Once::Fresh`] when it has not happened (do
/// it in this transaction, then [`effect_record`]), [`Once::Done`] with the recorded outcome when an
/// earlier attempt committed it. Given a lease, only its holder claims: a lease that is no longer the
/// task's current one is [`leasehold_core::Error::LeaseLost`], and the key is left as it was. See
/// [`crate::once`].
pub async fn effect_begin<T: DeserializeOwned>(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    key: &str,
    lease: Option<TaskLease>,
) -> Result<Once<T>> {
    let claimed = crate::telemetry::record::counting_stale("effect", tx::effect_begin_in(tx, key, lease).await)?;
    once::decode("postgres", key, claimed)
}

/// Records the outcome of an effect claimed by [`effect_begin`] in this transaction.
pub async fn effect_record<T: Serialize>(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    key: &EffectKey,
    outcome: &T,
) -> Result<()> {
    tx::effect_record_in(tx, key.as_str(), &serde_json::to_value(outcome)?).await
}
