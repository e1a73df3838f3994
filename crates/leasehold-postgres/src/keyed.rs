//! Idempotent enqueue and the record of effects, on one connection (the pool's or the caller's
//! transaction).

use sqlx::PgConnection;
use sqlx::types::Json;
use uuid::Uuid;

use leasehold_core::*;

use crate::db;
use crate::rows::parse_state;
use crate::store::TaskColumns;

/// Inserts a keyed task: insert unless a task holds the key; else free the key from a holder that no
/// longer counts and insert again; else answer the holder. Each step is one atomic statement that
/// keeps no lock on the holder's row.
pub(crate) async fn insert_keyed(conn: &mut PgConnection, task: &NewTask) -> Result<Enqueued> {
    task.validate()?;
    let key = task.idempotency.as_ref().ok_or_else(|| Error::InvalidInput("the task has no idempotency key".into()))?;
    for _ in 0..KEYED_INSERT_ROUNDS {
        let q = sqlx::query(include_str!("sql/task_insert_keyed.sql")).bind(task.id.0).bind(Json(&task.payload));
        let inserted = TaskColumns::of(task)
            .bind(q)
            .bind(&key.key)
            .bind(key.reuse_after_names())
            .bind(key.retain_ms())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
        if inserted.is_some() {
            return Ok(Enqueued { id: task.id, existing: false, state: TaskState::Available, result: None });
        }
        let freed: Option<Uuid> = sqlx::query_scalar(include_str!("sql/task_key_free.sql"))
            .bind(&key.key)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
        if freed.is_some() {
            continue;
        }
        type Holder = (Uuid, bool, String, Option<Json<serde_json::Value>>);
        let holder: Option<Holder> = sqlx::query_as(include_str!("sql/task_by_key.sql"))
            .bind(&key.key)
            .bind(&task.kind)
            .bind(Json(&task.payload))
            .bind(task.id.0)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
        let Some((id, same_job, state, result)) = holder else { continue };
        let holder = KeyHolder { id: TaskId(id), same_job, state: parse_state(&state)?, result: result.map(|r| r.0) };
        return holder.answer(task);
    }
    Err(Error::database(format!(
        "the idempotency key {:?} changed hands {KEYED_INSERT_ROUNDS} times during one enqueue",
        key.key
    )))
}

/// Claims `key` for an effect in the caller's transaction; answers the recorded outcome when the effect
/// already happened. With a lease, only its holder claims: a lease that is no longer the task's current
/// one is [`Error::LeaseLost`], and the key is left as it was.
pub(crate) async fn effect_begin(
    conn: &mut PgConnection,
    key: &str,
    lease: Option<TaskLease>,
) -> Result<Option<serde_json::Value>> {
    check_name("effect key", key)?;
    check_no_nul("effect key", key)?;
    let (holds, claimed): (bool, bool) = sqlx::query_as(include_str!("sql/effect_begin.sql"))
        .bind(key)
        .bind(lease.map(|l| l.task_id.0))
        .bind(lease.map(|l| l.fence.0))
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?;
    match (lease, holds, claimed) {
        (Some(lease), false, _) => return Err(Error::lease_lost(lease)),
        (_, _, true) => return Ok(None),
        _ => {}
    }
    let outcome: Option<Json<serde_json::Value>> =
        sqlx::query_scalar(include_str!("sql/effect_outcome.sql")).bind(key).fetch_one(&mut *conn).await.map_err(db)?;
    outcome.map(|o| Some(o.0)).ok_or_else(|| Error::EffectUnrecorded(key.to_owned()))
}

/// Stores the outcome of an effect this transaction claimed.
pub(crate) async fn effect_record(conn: &mut PgConnection, key: &str, outcome: &serde_json::Value) -> Result<()> {
    check_name("effect key", key)?;
    check_no_nul("effect key", key)?;
    let done = sqlx::query(include_str!("sql/effect_record.sql"))
        .bind(key)
        .bind(Json(outcome))
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    if done.rows_affected() == 0 {
        return Err(Error::InvalidInput(format!(
            "effect key {key:?} was not claimed in this transaction, or its outcome is recorded already"
        )));
    }
    Ok(())
}
