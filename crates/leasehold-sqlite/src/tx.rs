//! Enqueue and completion inside the caller's own transaction.
//!
//! ```ignore
//! let mut tx = store.begin().await?; // BEGIN IMMEDIATE
//! sqlx::query("UPDATE stock SET n = n - 1 WHERE sku = ?1").bind(sku).execute(&mut *tx).await?;
//! leasehold_sqlite::tx::task_complete_in(&mut tx, ctx.lease(), None).await?; // fenced
//! tx.commit().await?;
//! ```
//! A lost lease answers [`Error::LeaseLost`]; the caller's `?` drops the transaction, which rolls back
//! every write it made. A task inserted in a transaction wakes no worker by itself (the commit is the
//! caller's): workers find it at their next poll.

use sqlx::SqliteConnection;

use leasehold_core::{CompletionStatus, Enqueued, NewTask, Result, TaskId, TaskLease};

use crate::store::{complete_tasks, insert_tasks};

/// Inserts a task in the caller's transaction: it exists only if the caller commits. A task with an
/// idempotency key answers the task that holds the key.
pub async fn task_insert_in(conn: &mut SqliteConnection, task: NewTask) -> Result<TaskId> {
    if task.idempotency.is_some() {
        return Ok(crate::keyed::insert_keyed(conn, &task).await?.id);
    }
    Ok(insert_tasks(conn, std::slice::from_ref(&task)).await?[0])
}

/// Inserts a task with an idempotency key in the caller's transaction.
pub async fn task_insert_idempotent_in(conn: &mut SqliteConnection, task: NewTask) -> Result<Enqueued> {
    crate::keyed::insert_keyed(conn, &task).await
}

/// Claims the effect `key` in the caller's transaction. `None`: the effect has not happened; do it, in
/// this transaction, then [`effect_record_in`] its outcome. `Some(outcome)`: it happened already; skip it.
/// With `lease`, only the holder of the task's current lease claims; any other is
/// [`leasehold_core::Error::LeaseLost`].
pub async fn effect_begin_in(
    conn: &mut SqliteConnection,
    key: &str,
    lease: Option<TaskLease>,
) -> Result<Option<serde_json::Value>> {
    crate::keyed::effect_begin(conn, key, lease).await
}

/// Records the outcome of an effect claimed by [`effect_begin_in`] in this transaction.
pub async fn effect_record_in(conn: &mut SqliteConnection, key: &str, outcome: &serde_json::Value) -> Result<()> {
    crate::keyed::effect_record(conn, key, outcome).await
}

/// Completes the task in the caller's transaction, fenced by the lease's token.
pub async fn task_complete_in(
    conn: &mut SqliteConnection,
    lease: TaskLease,
    result: Option<serde_json::Value>,
) -> Result<()> {
    let status = complete_tasks(conn, &[(lease, result)], false).await?;
    status.first().copied().unwrap_or(CompletionStatus::LeaseLost).into_result(lease)
}
