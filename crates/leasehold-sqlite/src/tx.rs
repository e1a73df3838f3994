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

use leasehold_core::{CompletionStatus, NewTask, Result, TaskId, TaskLease};

use crate::store::{complete_tasks, insert_tasks};

/// Inserts a task in the caller's transaction: it exists only if the caller commits.
pub async fn task_insert_in(conn: &mut SqliteConnection, task: NewTask) -> Result<TaskId> {
    Ok(insert_tasks(conn, std::slice::from_ref(&task)).await?[0])
}

/// Completes the task in the caller's transaction, fenced by the lease's token.
pub async fn task_complete_in(
    conn: &mut SqliteConnection,
    lease: TaskLease,
    result: Option<serde_json::Value>,
) -> Result<()> {
    let status = complete_tasks(conn, &[(lease, result)]).await?;
    status.first().copied().unwrap_or(CompletionStatus::LeaseLost).into_result(lease)
}
