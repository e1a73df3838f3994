//! [`ScheduleStore`] on SQLite: the leader lease, the schedules and the per-tick ledger.

use sqlx::{FromRow, Row};

use leasehold_core::params::duration_ms;
use leasehold_core::schedule::*;
use leasehold_core::*;

use crate::db;
use crate::rows::{ms_to_time, parse_id};
use crate::store::{SqliteStore, insert_tasks};

#[derive(FromRow)]
struct ScheduleRow {
    name: String,
    definition: String,
    paused: bool,
    last_tick: Option<i64>,
    last_task: Option<String>,
    buffered_tick: Option<i64>,
    trigger_at: Option<i64>,
    removed: bool,
}

impl TryFrom<ScheduleRow> for ScheduleRecord {
    type Error = Error;

    fn try_from(r: ScheduleRow) -> Result<Self> {
        let mut def: ScheduleDef = serde_json::from_str(&r.definition)
            .map_err(|e| Error::Schema(format!("the definition of schedule {:?} is not readable: {e}", r.name)))?;
        def.name = r.name;
        Ok(ScheduleRecord {
            def,
            paused: r.paused,
            last_tick: r.last_tick.map(ms_to_time),
            last_task: r.last_task.as_deref().map(parse_id).transpose()?,
            buffered_tick: r.buffered_tick.map(ms_to_time),
            trigger_at: r.trigger_at.map(ms_to_time),
            removed: r.removed,
        })
    }
}

impl SqliteStore {
    async fn schedules(&self, name: Option<&str>) -> Result<Vec<ScheduleRecord>> {
        let rows: Vec<ScheduleRow> =
            sqlx::query_as(include_str!("sql/schedule_get.sql")).bind(name).fetch_all(self.pool()).await.map_err(db)?;
        rows.into_iter().map(ScheduleRecord::try_from).collect()
    }

    async fn schedule_one(&self, name: &str) -> Result<ScheduleRecord> {
        self.schedules(Some(name)).await?.pop().ok_or_else(|| Error::ScheduleNotFound(name.to_owned()))
    }
}

impl ScheduleStore for SqliteStore {
    async fn leader_acquire(&self, p: LeaderAcquireParams) -> Result<Option<FencingToken>> {
        check_name("leader lease name", &p.name)?;
        check_no_nul("leader lease name", &p.name)?;
        let mut writer = self.writer().await?;
        let mut tx = writer.begin().await?;
        // a new term's token comes from the same counter as the claims' tokens
        let next: i64 = sqlx::query_scalar("UPDATE leasehold_fence SET value = value + 1 WHERE id = 1 RETURNING value")
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        let token: Option<i64> = sqlx::query_scalar(include_str!("sql/leader_acquire.sql"))
            .bind(&p.name)
            .bind(&p.holder)
            .bind(duration_ms(p.ttl))
            .bind(next)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(token.map(FencingToken))
    }

    async fn leader_release(&self, leader: LeaderToken) -> Result<()> {
        let mut writer = self.writer().await?;
        sqlx::query("DELETE FROM leasehold_leaders WHERE name = CAST(?1 AS TEXT) AND token = ?2")
            .bind(&leader.name)
            .bind(leader.token.0)
            .execute(&mut *writer)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn leader_get(&self, name: &str) -> Result<Option<LeaderRecord>> {
        let row = sqlx::query("SELECT holder, token, expires_at FROM leasehold_leaders WHERE name = CAST(?1 AS TEXT)")
            .bind(name)
            .fetch_optional(self.pool())
            .await
            .map_err(db)?;
        Ok(row.map(|r| LeaderRecord {
            holder: r.get("holder"),
            token: FencingToken(r.get("token")),
            expires_at: ms_to_time(r.get("expires_at")),
        }))
    }

    async fn schedule_upsert(&self, leader: LeaderToken, def: ScheduleDef) -> Result<ScheduleRecord> {
        def.compile()?;
        let mut writer = self.writer().await?;
        let mut tx = writer.begin().await?;
        check_term(&mut tx, &leader).await?;
        sqlx::query(include_str!("sql/schedule_upsert.sql"))
            .bind(&def.name)
            .bind(serde_json::to_string(&def)?)
            .bind(def.fingerprint())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        drop(writer);
        self.schedule_one(&def.name).await
    }

    async fn schedule_retire(&self, leader: LeaderToken, keep: Vec<String>) -> Result<()> {
        let mut writer = self.writer().await?;
        let mut tx = writer.begin().await?;
        check_term(&mut tx, &leader).await?;
        sqlx::query(
            "UPDATE leasehold_schedules SET removed = NOT (name IN (SELECT value FROM json_each(?1)))
              WHERE removed = (name IN (SELECT value FROM json_each(?1)))",
        )
        .bind(serde_json::to_string(&keep)?)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn schedule_list(&self) -> Result<Vec<ScheduleRecord>> {
        self.schedules(None).await
    }

    async fn schedule_control(&self, name: &str, action: ScheduleAction) -> Result<ScheduleRecord> {
        check_name("schedule name", name)?;
        let mut writer = self.writer().await?;
        let sql = match action {
            ScheduleAction::Pause => "UPDATE leasehold_schedules SET paused = 1 WHERE name = CAST(?1 AS TEXT)",
            ScheduleAction::Resume => {
                "UPDATE leasehold_schedules SET paused = 0,
                        last_tick = max(coalesce(last_tick, 0), CAST(unixepoch('subsec') * 1000 AS INTEGER))
                  WHERE name = CAST(?1 AS TEXT)"
            }
            ScheduleAction::Trigger => {
                "UPDATE leasehold_schedules SET trigger_at = CAST(unixepoch('subsec') * 1000 AS INTEGER) WHERE name = CAST(?1 AS TEXT)"
            }
        };
        let done = sqlx::query(sql).bind(name).execute(&mut *writer).await.map_err(db)?;
        drop(writer);
        if done.rows_affected() == 0 {
            return Err(Error::ScheduleNotFound(name.to_owned()));
        }
        self.schedule_one(name).await
    }

    async fn schedule_tick_record(&self, p: ScheduleTickParams) -> Result<bool> {
        check_name("schedule name", &p.schedule)?;
        let mut writer = self.writer().await?;
        let mut tx = writer.begin().await?;
        check_term(&mut tx, &p.leader).await?;
        let task = p.task.filter(|_| p.outcome.runs());
        let wrote: Option<i64> = sqlx::query_scalar(include_str!("sql/schedule_tick_insert.sql"))
            .bind(&p.schedule)
            .bind(p.tick.timestamp_millis())
            .bind(p.manual)
            .bind(p.outcome.as_str())
            .bind(task.as_ref().map(|t| t.id.0.to_string()))
            .bind(p.leader.token.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        let wrote = wrote.is_some();
        let mut new_task = None;
        if let (true, Some(task)) = (wrote, task.as_ref()) {
            insert_tasks(&mut *tx, std::slice::from_ref(task)).await?;
            new_task = Some(task.id.0.to_string());
        }
        if let (true, Some(prev)) = (wrote, p.cancel) {
            sqlx::query(include_str!("sql/task_cancel.sql"))
                .bind(prev.0.to_string())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        // a tick recorded already (by an overlapping leader) changes nothing held
        let buffer_change = if wrote { p.buffer } else { BufferChange::Keep };
        let (buffer, buffered) = buffer_change.parts();
        let buffered = buffered.map(|t| t.timestamp_millis());
        sqlx::query(include_str!("sql/schedule_advance.sql"))
            .bind(&p.schedule)
            .bind(p.advance_to.timestamp_millis())
            .bind(new_task)
            .bind(buffer)
            .bind(buffered)
            .bind(p.clear_trigger.then_some(p.tick.timestamp_millis()))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        if let (true, Some(task)) = (wrote, task) {
            self.hint([task.queue]);
        }
        Ok(wrote)
    }
}

/// [`Error::LeadershipLost`] unless `leader`'s term is current. Inside the write transaction, which holds
/// the file's write lock until it ends, no takeover can commit before the writes that follow the check:
/// the check stands for the whole transaction. A released term's row is deleted (`leader_release`).
async fn check_term(tx: &mut sqlx::SqliteConnection, leader: &LeaderToken) -> Result<()> {
    let current: Option<i64> = sqlx::query_scalar("SELECT token FROM leasehold_leaders WHERE name = CAST(?1 AS TEXT)")
        .bind(&leader.name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
    leader.check_current(current)
}
