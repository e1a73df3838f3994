//! [`ScheduleStore`] on PostgreSQL: the leader lease, the schedules and the per-tick ledger.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{FromRow, Postgres, Row, Transaction};
use uuid::Uuid;

use leasehold_core::params::duration_ms;
use leasehold_core::schedule::*;
use leasehold_core::*;

use crate::db;
use crate::store::{PgStore, insert_tasks};

/// How long the server lets a tick's transaction sit idle before it ends the session: the term check
/// at its end holds the leader row until the commit, and a takeover waits that long at most for a
/// leader that stalled there.
const TERM_HOLD_SQL: &str = "SET LOCAL idle_in_transaction_session_timeout = '5s'";

#[derive(FromRow)]
struct ScheduleRow {
    name: String,
    definition: Json<ScheduleDef>,
    paused: bool,
    last_tick: Option<DateTime<Utc>>,
    last_task: Option<Uuid>,
    buffered_tick: Option<DateTime<Utc>>,
    trigger_at: Option<DateTime<Utc>>,
    removed: bool,
}

impl From<ScheduleRow> for ScheduleRecord {
    fn from(r: ScheduleRow) -> Self {
        let mut def = r.definition.0;
        def.name = r.name;
        ScheduleRecord {
            def,
            paused: r.paused,
            last_tick: r.last_tick,
            last_task: r.last_task.map(TaskId),
            buffered_tick: r.buffered_tick,
            trigger_at: r.trigger_at,
            removed: r.removed,
        }
    }
}

impl PgStore {
    async fn schedules(&self, name: Option<&str>) -> Result<Vec<ScheduleRecord>> {
        let rows: Vec<ScheduleRow> =
            sqlx::query_as(include_str!("sql/schedule_get.sql")).bind(name).fetch_all(self.pool()).await.map_err(db)?;
        Ok(rows.into_iter().map(ScheduleRecord::from).collect())
    }

    async fn schedule_one(&self, name: &str) -> Result<ScheduleRecord> {
        self.schedules(Some(name)).await?.pop().ok_or_else(|| Error::ScheduleNotFound(name.to_owned()))
    }

    /// A transaction for a leader's writes, ended by [`commit_in_term`]. A leader that stalls inside it
    /// (paused, cut off) is ended by the server after [`TERM_HOLD_SQL`]'s timeout, which frees the leader row
    /// for a takeover and the schedules' rows for the next leader.
    async fn begin_in_term(&self) -> Result<Transaction<'static, Postgres>> {
        let mut tx = self.pool().begin().await.map_err(db)?;
        sqlx::query(TERM_HOLD_SQL).execute(&mut *tx).await.map_err(db)?;
        Ok(tx)
    }
}

/// Commits a leader's writes if its term is still current, and rolls them back with
/// [`Error::LeadershipLost`] otherwise. The term is checked last, under a share lock on the leader row: a
/// takeover that committed first is seen here (the lock reads the row's newest version), and one that
/// comes later waits for this commit and then reads what was written. Read without the lock, a takeover
/// committing between the read and the commit let a leader whose term was over write its tick, its run
/// and the schedule's state after the new leader had read them (tests/leader_fencing.rs). A released
/// term's row stays with an expiry of -infinity (`leader_release`), and is over as well.
async fn commit_in_term(mut tx: Transaction<'static, Postgres>, leader: &LeaderToken) -> Result<()> {
    let current: Option<i64> = sqlx::query_scalar(include_str!("sql/leader_term_check.sql"))
        .bind(&leader.name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
    // refused, the transaction is dropped, which rolls every write in it back
    leader.check_current(current)?;
    tx.commit().await.map_err(db)
}

impl ScheduleStore for PgStore {
    async fn leader_acquire(&self, p: LeaderAcquireParams) -> Result<Option<FencingToken>> {
        check_name("leader lease name", &p.name)?;
        check_no_nul("leader lease name", &p.name)?;
        // never queued for a pooled connection: a leader's renewal waiting behind handlers that hold
        // every one of them would outlast its trust window
        let mut c = self.leader_conn().await?;
        let token: Option<i64> = sqlx::query_scalar(include_str!("sql/leader_acquire.sql"))
            .bind(&p.name)
            .bind(&p.holder)
            .bind(duration_ms(p.ttl))
            .fetch_optional(&mut *c)
            .await
            .map_err(db)?;
        c.clean();
        Ok(token.map(FencingToken))
    }

    async fn leader_release(&self, leader: LeaderToken) -> Result<()> {
        // the row stays, expired, so the next term draws its token under the row's lock
        let mut c = self.conn().await?;
        sqlx::query("UPDATE leasehold.leaders SET expires_at = '-infinity' WHERE name = $1 AND token = $2")
            .bind(&leader.name)
            .bind(leader.token.0)
            .execute(&mut *c)
            .await
            .map_err(db)?;
        c.clean();
        Ok(())
    }

    async fn leader_get(&self, name: &str) -> Result<Option<LeaderRecord>> {
        let row = sqlx::query(
            "SELECT holder, token, expires_at FROM leasehold.leaders WHERE name = $1 AND expires_at > '-infinity'",
        )
        .bind(name)
        .fetch_optional(self.pool())
        .await
        .map_err(db)?;
        Ok(row.map(|r| LeaderRecord {
            holder: r.get("holder"),
            token: FencingToken(r.get("token")),
            expires_at: r.get("expires_at"),
        }))
    }

    async fn schedule_upsert(&self, leader: LeaderToken, def: ScheduleDef) -> Result<ScheduleRecord> {
        def.compile()?;
        let mut tx = self.begin_in_term().await?;
        sqlx::query(include_str!("sql/schedule_upsert.sql"))
            .bind(&def.name)
            .bind(Json(&def))
            .bind(def.fingerprint())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        commit_in_term(tx, &leader).await?;
        self.schedule_one(&def.name).await
    }

    async fn schedule_retire(&self, leader: LeaderToken, keep: Vec<String>) -> Result<()> {
        let mut tx = self.begin_in_term().await?;
        sqlx::query(
            "UPDATE leasehold.schedules SET removed = NOT (name = ANY($1)), updated_at = now()
              WHERE removed = (name = ANY($1))",
        )
        .bind(&keep)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        commit_in_term(tx, &leader).await
    }

    async fn schedule_list(&self) -> Result<Vec<ScheduleRecord>> {
        self.schedules(None).await
    }

    async fn schedule_control(&self, name: &str, action: ScheduleAction) -> Result<ScheduleRecord> {
        check_name("schedule name", name)?;
        let sql = match action {
            ScheduleAction::Pause => "UPDATE leasehold.schedules SET paused = true WHERE name = $1",
            // ticks that passed while paused are not run later
            ScheduleAction::Resume => {
                "UPDATE leasehold.schedules SET paused = false, last_tick = greatest(last_tick, now()) WHERE name = $1"
            }
            ScheduleAction::Trigger => "UPDATE leasehold.schedules SET trigger_at = now() WHERE name = $1",
        };
        let done = sqlx::query(sql).bind(name).execute(self.pool()).await.map_err(db)?;
        if done.rows_affected() == 0 {
            return Err(Error::ScheduleNotFound(name.to_owned()));
        }
        self.schedule_one(name).await
    }

    async fn schedule_tick_record(&self, p: ScheduleTickParams) -> Result<bool> {
        check_name("schedule name", &p.schedule)?;
        let mut tx = self.begin_in_term().await?;
        let task = p.task.filter(|_| p.outcome.runs());
        let wrote: Option<bool> = sqlx::query_scalar(include_str!("sql/schedule_tick_insert.sql"))
            .bind(&p.schedule)
            .bind(p.tick)
            .bind(p.manual)
            .bind(p.outcome.as_str())
            .bind(task.as_ref().map(|t| t.id.0))
            .bind(p.leader.token.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        let wrote = wrote.is_some();
        let mut new_task = None;
        if let (true, Some(task)) = (wrote, task) {
            insert_tasks(&mut *tx, std::slice::from_ref(&task)).await?;
            new_task = Some(task.id.0);
        }
        if let (true, Some(prev)) = (wrote, p.cancel) {
            sqlx::query(include_str!("sql/task_cancel.sql")).bind(prev.0).execute(&mut *tx).await.map_err(db)?;
        }
        // a tick recorded already (by an overlapping leader) changes nothing held
        let buffer_change = if wrote { p.buffer } else { BufferChange::Keep };
        let (buffer, buffered) = buffer_change.parts();
        sqlx::query(include_str!("sql/schedule_advance.sql"))
            .bind(&p.schedule)
            .bind(p.advance_to)
            .bind(new_task)
            .bind(buffer)
            .bind(buffered)
            .bind(p.clear_trigger.then_some(p.tick))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        commit_in_term(tx, &p.leader).await?;
        Ok(wrote)
    }
}
