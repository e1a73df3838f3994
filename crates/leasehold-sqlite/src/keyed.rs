//! Idempotent enqueue and the record of effects, on one connection (the pool's or the caller's
//! transaction).

use sqlx::SqliteConnection;

use leasehold_core::*;

use crate::db;
use crate::rows::{parse_id, parse_state};
use crate::store::TaskColumns;

pub(crate) async fn insert_keyed(conn: &mut SqliteConnection, task: &NewTask) -> Result<Enqueued> {
    task.validate()?;
    let key = task.idempotency.as_ref().ok_or_else(|| Error::InvalidInput("the task has no idempotency key".into()))?;
    let id = task.id.0.to_string();
    let payload = serde_json::to_string(&task.payload)?;
    let reuse = serde_json::to_string(&key.reuse_after_names())?;
    for _ in 0..KEYED_INSERT_ROUNDS {
        let q = sqlx::query(include_str!("sql/task_insert_keyed.sql")).bind(&id).bind(&payload);
        let inserted = TaskColumns::of(task)
            .bind(q)
            .bind(&key.key)
            .bind(&reuse)
            .bind(key.retain_ms())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
        if inserted.is_some() {
            return Ok(Enqueued { id: task.id, existing: false, state: TaskState::Available, result: None });
        }
        let freed: Option<String> = sqlx::query_scalar(include_str!("sql/task_key_free.sql"))
            .bind(&key.key)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
        if freed.is_some() {
            continue;
        }
        let holder: Option<(String, String, String, String, Option<String>)> =
            sqlx::query_as(include_str!("sql/task_by_key.sql"))
                .bind(&key.key)
                .bind(&id)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db)?;
        let Some((hid, kind, hpayload, state, result)) = holder else { continue };
        let same_payload = serde_json::from_str::<serde_json::Value>(&hpayload)? == task.payload;
        let holder = KeyHolder {
            id: parse_id(&hid)?,
            same_job: kind == task.kind && same_payload,
            state: parse_state(&state)?,
            result: result.map(|r| serde_json::from_str(&r)).transpose()?,
        };
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
    conn: &mut SqliteConnection,
    key: &str,
    lease: Option<TaskLease>,
) -> Result<Option<serde_json::Value>> {
    check_name("effect key", key)?;
    check_no_nul("effect key", key)?;
    let claimed: Option<String> = sqlx::query_scalar(include_str!("sql/effect_begin.sql"))
        .bind(key)
        .bind(lease.map(|l| l.task_id.0.to_string()))
        .bind(lease.map(|l| l.fence.0))
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
    if claimed.is_some() {
        return Ok(None);
    }
    if let Some(lease) = lease {
        let holds: bool = sqlx::query_scalar(include_str!("sql/effect_holder.sql"))
            .bind(lease.task_id.0.to_string())
            .bind(lease.fence.0)
            .fetch_one(&mut *conn)
            .await
            .map_err(db)?;
        if !holds {
            return Err(Error::lease_lost(lease));
        }
    }
    let outcome: Option<String> =
        sqlx::query_scalar(include_str!("sql/effect_outcome.sql")).bind(key).fetch_one(&mut *conn).await.map_err(db)?;
    match outcome {
        Some(o) => Ok(Some(serde_json::from_str(&o)?)),
        None => Err(Error::EffectUnrecorded(key.to_owned())),
    }
}

/// Stores the outcome of an effect this transaction claimed.
pub(crate) async fn effect_record(conn: &mut SqliteConnection, key: &str, outcome: &serde_json::Value) -> Result<()> {
    check_name("effect key", key)?;
    check_no_nul("effect key", key)?;
    let done = sqlx::query(include_str!("sql/effect_record.sql"))
        .bind(key)
        .bind(serde_json::to_string(outcome)?)
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
