//! Enqueue and completion inside the caller's own transaction.
//!
//! ```ignore
//! let mut tx = pool.begin().await?;
//! sqlx::query("UPDATE stock SET n = n - 1 WHERE sku = $1").bind(sku).execute(&mut *tx).await?;
//! leasehold_postgres::tx::task_complete_in(&mut tx, ctx.lease(), None).await?; // fenced
//! tx.commit().await?;
//! ```
//! If the lease was lost, `task_complete_in` answers [`Error::LeaseLost`]; the caller's `?` drops the
//! transaction, which rolls back every write it made.

use sqlx::PgConnection;

use leasehold_core::{CompletionStatus, Enqueued, NewTask, Result, TaskId, TaskLease};

use crate::store::{complete_tasks, insert_tasks};

/// Inserts a task in the caller's transaction: it exists, and wakes workers, only if the caller commits.
/// A task with an idempotency key answers the task that holds the key (see
/// [`TaskStore::task_insert_idempotent`](leasehold_core::TaskStore::task_insert_idempotent)).
pub async fn task_insert_in(conn: &mut PgConnection, task: NewTask) -> Result<TaskId> {
    if task.idempotency.is_some() {
        return Ok(crate::keyed::insert_keyed(conn, &task).await?.id);
    }
    Ok(insert_tasks(conn, std::slice::from_ref(&task)).await?[0])
}

/// Inserts a task with an idempotency key in the caller's transaction.
pub async fn task_insert_idempotent_in(conn: &mut PgConnection, task: NewTask) -> Result<Enqueued> {
    crate::keyed::insert_keyed(conn, &task).await
}

/// Claims the effect `key` in the caller's transaction. `None`: the effect has not happened; do it, in
/// this transaction, then [`effect_record_in`] its outcome. `Some(outcome)`: it happened already (an
/// earlier attempt committed it); skip it. A key claimed without an outcome is
/// [`leasehold_core::Error::EffectUnrecorded`]. A concurrent claim of the same key waits for this
/// transaction to end. With `lease`, only the holder of the task's current lease claims; any other is
/// [`leasehold_core::Error::LeaseLost`].
pub async fn effect_begin_in(
    conn: &mut PgConnection,
    key: &str,
    lease: Option<TaskLease>,
) -> Result<Option<serde_json::Value>> {
    crate::keyed::effect_begin(conn, key, lease).await
}

/// Records the outcome of an effect claimed by [`effect_begin_in`] in this transaction.
pub async fn effect_record_in(conn: &mut PgConnection, key: &str, outcome: &serde_json::Value) -> Result<()> {
    crate::keyed::effect_record(conn, key, outcome).await
}

/// Inserts many tasks in the caller's transaction.
pub async fn task_insert_many_in(conn: &mut PgConnection, tasks: &[NewTask]) -> Result<Vec<TaskId>> {
    if tasks.is_empty() {
        return Ok(Vec::new());
    }
    insert_tasks(conn, tasks).await
}

/// Completes the task in the caller's transaction, fenced by the lease's token. The worker that runs
/// the handler sees the completion and does not complete the task again.
pub async fn task_complete_in(
    conn: &mut PgConnection,
    lease: TaskLease,
    result: Option<serde_json::Value>,
) -> Result<()> {
    let status = complete_tasks(conn, &[(lease, result)], false).await?;
    status.first().copied().unwrap_or(CompletionStatus::LeaseLost).into_result(lease)
}
