//! [`SqliteStore`]: the task store on a SQLite file.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;
use sqlx::{Row, SqliteExecutor, SqlitePool};

use leasehold_core::params::duration_ms;
use leasehold_core::*;

use crate::db;
use crate::local::{FileLocal, for_file};
use crate::open::{SqliteOptions, open_checked, url_path};
use crate::rows::{ClaimRow, TaskRow, parse_id, parse_state};
use crate::wakeup::SqliteWakeup;

/// The SQLite task store. Cheap to clone: it shares one pool and one wake-up channel.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    local: Arc<FileLocal>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and applies the migrations.
    ///
    /// Refuses, with a typed error and without writing anything: a path that cannot be written
    /// ([`Error::Connect`]), a file that is not a SQLite database or that carries another
    /// application's `application_id`, and a database migrated by a newer leasehold ([`Error::Schema`]).
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, &SqliteOptions::default()).await
    }

    /// [`SqliteStore::open`] with options.
    pub async fn open_with(path: impl AsRef<Path>, opts: &SqliteOptions) -> Result<Self> {
        let path = path.as_ref();
        let pool = open_checked(path, opts).await?;
        let store = Self { local: for_file(path), pool };
        store.migrate().await?;
        Ok(store)
    }

    /// Opens the file a `sqlite:` URL names (`sqlite://path/to/file.db`).
    pub async fn connect(url: &str) -> Result<Self> {
        let path: PathBuf = url_path(url)?;
        Self::open(path).await
    }

    /// Wraps an existing pool (the application's own, in WAL mode with a busy timeout). Run
    /// [`SqliteStore::migrate`] once before use.
    pub fn from_pool(pool: SqlitePool) -> Self {
        let local = for_file(pool.connect_options().get_filename());
        Self { pool, local }
    }

    /// Applies leasehold's migrations.
    pub async fn migrate(&self) -> Result<()> {
        crate::migrate::run(&self.pool).await
    }

    /// The pool, for the application's own queries.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Begins a transaction that takes the write lock at once (`BEGIN IMMEDIATE`), as transactions that
    /// write should on SQLite: a deferred one that reads first may fail to upgrade to a writer.
    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)
    }

    /// A connection for one of the store's own writes, once this process's other writes to the file
    /// are done (see `local.rs`). Every write of the store runs on one, so none meets another at
    /// SQLite's lock; the lock is taken before the connection, so no waiting writer holds one of the
    /// pool's connections.
    pub(crate) async fn writer(&self) -> Result<Writer<'_>> {
        let turn = self.local.writer.lock().await;
        let conn = self.pool.acquire().await.map_err(db)?;
        Ok(Writer { conn, _turn: turn })
    }

    pub(crate) fn hint(&self, queues: impl IntoIterator<Item = String>) {
        let unique: HashSet<String> = queues.into_iter().collect();
        for q in unique {
            let _ = self.local.hints.send(q);
        }
    }
}

fn ms(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) async fn insert_tasks<'e>(exec: impl SqliteExecutor<'e>, tasks: &[NewTask]) -> Result<Vec<TaskId>> {
    for t in tasks {
        t.validate()?;
        if t.idempotency.is_some() {
            return Err(Error::InvalidInput(
                "tasks with idempotency keys are enqueued one at a time, not in a batch".into(),
            ));
        }
    }
    let rows: Vec<serde_json::Value> = tasks
        .iter()
        .map(|t| {
            json!({
                "id": t.id.0.to_string(),
                "kind": t.kind,
                "queue": t.queue,
                "payload": t.payload,
                "priority": t.priority,
                "run_at": t.run_at.map(ms),
                "delay_ms": t.delay_ms(),
                "max_attempts": t.max_attempts,
                "lease_ttl_ms": t.lease_ttl_ms(),
            })
        })
        .collect();
    sqlx::query(include_str!("sql/task_insert.sql"))
        .bind(serde_json::to_string(&rows)?)
        .execute(exec)
        .await
        .map_err(db)?;
    Ok(tasks.iter().map(|t| t.id).collect())
}

/// Queues whose new tasks are due now, for wake-ups.
fn due_queues(tasks: &[NewTask]) -> Vec<String> {
    let now = chrono::Utc::now();
    tasks
        .iter()
        .filter(|t| t.delay.is_none_or(|d| d.is_zero()) && t.run_at.is_none_or(|at| at <= now))
        .map(|t| t.queue.clone())
        .collect()
}

pub(crate) async fn complete_tasks(
    conn: &mut sqlx::SqliteConnection,
    tasks: &[(TaskLease, Option<serde_json::Value>)],
) -> Result<Vec<CompletionStatus>> {
    let mut done: HashSet<(String, i64)> = HashSet::with_capacity(tasks.len());
    let (plain, with_result): (Vec<_>, Vec<_>) = tasks.iter().partition(|(_, r)| r.is_none());
    if !plain.is_empty() {
        let spec = json_strings(plain.iter().map(|(l, _)| format!("{}:{}", l.task_id.0, l.fence.0)));
        let rows: Vec<(String, i64)> = sqlx::query_as(include_str!("sql/task_complete_plain.sql"))
            .bind(spec)
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
        done.extend(rows);
    }
    if !with_result.is_empty() {
        let spec: Vec<serde_json::Value> =
            with_result.iter().map(|(l, r)| json!([l.task_id.0.to_string(), l.fence.0, true, r])).collect();
        let rows: Vec<(String, i64)> = sqlx::query_as(include_str!("sql/task_complete.sql"))
            .bind(serde_json::to_string(&spec)?)
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
        done.extend(rows);
    }
    let key = |l: &TaskLease| (l.task_id.0.to_string(), l.fence.0);
    let rest: Vec<serde_json::Value> = tasks
        .iter()
        .filter(|(l, _)| !done.contains(&key(l)))
        .map(|(l, _)| json!([l.task_id.0.to_string(), l.fence.0]))
        .collect();
    let already: HashSet<(String, i64)> = if rest.is_empty() {
        HashSet::new()
    } else {
        sqlx::query_as(include_str!("sql/task_completed_check.sql"))
            .bind(serde_json::to_string(&rest)?)
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?
            .into_iter()
            .collect()
    };
    Ok(tasks
        .iter()
        .map(|(l, _)| {
            let id = key(l);
            if done.contains(&id) {
                CompletionStatus::Completed
            } else if already.contains(&id) {
                CompletionStatus::AlreadyCompleted
            } else {
                CompletionStatus::LeaseLost
            }
        })
        .collect())
}

/// A connection that holds this process's turn to write the file, until it is dropped (the connection
/// goes back to the pool first, then the turn passes).
pub(crate) struct Writer<'a> {
    conn: sqlx::pool::PoolConnection<sqlx::Sqlite>,
    _turn: tokio::sync::MutexGuard<'a, ()>,
}

impl Writer<'_> {
    /// Begins a write transaction on this connection, taking SQLite's write lock at once (`BEGIN
    /// IMMEDIATE`), as [`SqliteStore::begin`] does on a pooled connection.
    pub(crate) async fn begin(&mut self) -> Result<sqlx::Transaction<'_, sqlx::Sqlite>> {
        sqlx::Connection::begin_with(&mut *self.conn, "BEGIN IMMEDIATE").await.map_err(db)
    }
}

impl std::ops::Deref for Writer<'_> {
    type Target = sqlx::SqliteConnection;
    fn deref(&self) -> &Self::Target {
        &self.conn
    }
}

impl std::ops::DerefMut for Writer<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.conn
    }
}

/// A JSON array of strings that need no escaping (task ids, `id:fence` pairs), written directly.
fn json_strings<T: std::fmt::Display>(items: impl Iterator<Item = T>) -> String {
    use std::fmt::Write;
    let mut out = String::from("[");
    for (i, item) in items.enumerate() {
        let _ = write!(out, "{}\"{item}\"", if i == 0 { "" } else { "," });
    }
    out.push(']');
    out
}

fn lost(lease: TaskLease) -> Error {
    Error::LeaseLost { task_id: lease.task_id, fence: lease.fence }
}

fn leases_of(rows: &[sqlx::sqlite::SqliteRow]) -> Result<Vec<TaskLease>> {
    rows.iter()
        .map(|r| Ok(TaskLease { task_id: parse_id(r.get::<&str, _>("id"))?, fence: FencingToken(r.get("fence")) }))
        .collect()
}

/// A claim that waited longer than this for the write lock counts as contended.
const CONTENDED_WAIT: std::time::Duration = std::time::Duration::from_millis(2);

impl TaskStore for SqliteStore {
    fn backend_name(&self) -> &'static str {
        "sqlite"
    }

    async fn task_insert(&self, task: NewTask) -> Result<TaskId> {
        if task.idempotency.is_some() {
            return Ok(self.task_insert_idempotent(task).await?.id);
        }
        self.task_insert_many(vec![task]).await.map(|ids| ids[0])
    }

    async fn task_insert_idempotent(&self, task: NewTask) -> Result<Enqueued> {
        let enqueued = crate::keyed::insert_keyed(&mut *self.writer().await?, &task).await?;
        if !enqueued.existing {
            self.hint(due_queues(std::slice::from_ref(&task)));
        }
        Ok(enqueued)
    }

    async fn task_insert_many(&self, tasks: Vec<NewTask>) -> Result<Vec<TaskId>> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let ids = insert_tasks(&mut *self.writer().await?, &tasks).await?;
        self.hint(due_queues(&tasks));
        Ok(ids)
    }

    async fn task_claim(&self, p: TaskClaimParams) -> Result<ClaimBatch> {
        if p.limit == 0 || p.queues.is_empty() {
            return Ok(ClaimBatch::default());
        }
        let queues = serde_json::to_string(&p.queues)?;
        // a cheap read first, so idle polling never takes the write lock
        let any: bool = sqlx::query_scalar(include_str!("sql/task_claim_peek.sql"))
            .bind(&queues)
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        if !any {
            return Ok(ClaimBatch::default());
        }
        let asked = std::time::Instant::now();
        let mut writer = self.writer().await?;
        let mut tx = writer.begin().await?;
        // the write lock was free within a few hundred microseconds, or another writer held it
        let contended = asked.elapsed() > CONTENDED_WAIT;
        // each queue on its own, then the expired leases; merged in claim order, the first `limit` taken
        let mut candidates: Vec<(i16, i64, String, bool, bool)> = Vec::new();
        for queue in &p.queues {
            let rows: Vec<(String, i16, i64)> = sqlx::query_as(include_str!("sql/task_claim_available.sql"))
                .bind(queue)
                .bind(i64::from(p.limit))
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?;
            candidates.extend(rows.into_iter().map(|(id, prio, run_at)| (prio, run_at, id, false, false)));
        }
        let expired: Vec<(String, i16, i64, bool)> = sqlx::query_as(include_str!("sql/task_claim_expired.sql"))
            .bind(&queues)
            .bind(i64::from(p.limit))
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        candidates.extend(expired.into_iter().map(|(id, prio, run_at, exhausted)| (prio, run_at, id, true, exhausted)));
        candidates.sort();
        candidates.truncate(p.limit as usize);
        let selected: Vec<(String, bool, bool)> =
            candidates.into_iter().map(|(_, _, id, taken_over, exhausted)| (id, taken_over, exhausted)).collect();
        let (exhausted, picked): (Vec<_>, Vec<_>) = selected.into_iter().partition(|(_, _, exhausted)| *exhausted);
        if !exhausted.is_empty() {
            let ids: Vec<&str> = exhausted.iter().map(|(id, _, _)| id.as_str()).collect();
            sqlx::query(include_str!("sql/task_discard_exhausted.sql"))
                .bind(serde_json::to_string(&ids)?)
                .bind(LEASE_LOST_ON_LAST_ATTEMPT)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        let picked: Vec<(String, bool)> = picked.into_iter().map(|(id, t, _)| (id, t)).collect();
        if picked.is_empty() {
            tx.commit().await.map_err(db)?;
            drop(writer);
            return Ok(ClaimBatch { tasks: Vec::new(), contended });
        }
        let n = i64::try_from(picked.len()).unwrap_or(i64::MAX);
        let last: i64 =
            sqlx::query_scalar(include_str!("sql/fence_next.sql")).bind(n).fetch_one(&mut *tx).await.map_err(db)?;
        let ids = json_strings(picked.iter().map(|(id, _)| id));
        let taken_over = json_strings(picked.iter().filter(|(_, t)| *t).map(|(id, _)| id));
        let mut rows: Vec<ClaimRow> = sqlx::query_as(include_str!("sql/task_claim_update.sql"))
            .bind(ids)
            .bind(duration_ms(p.default_lease_ttl))
            .bind(&p.worker_id)
            .bind(last - n + 1)
            .bind(taken_over)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        drop(writer);
        rows.sort_by_key(ClaimRow::fence);
        let taken_over: HashMap<String, bool> = picked.into_iter().collect();
        let tasks = rows
            .into_iter()
            .map(|r| {
                let t = taken_over.get(&r.id).copied().unwrap_or(false);
                r.into_claimed(t)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ClaimBatch { tasks, contended })
    }

    async fn lease_renew(&self, p: LeaseRenewParams) -> Result<LeaseRenewal> {
        if p.leases.is_empty() {
            return Ok(LeaseRenewal::default());
        }
        let spec: Vec<serde_json::Value> =
            p.leases.iter().map(|(l, ttl)| json!([l.task_id.0.to_string(), l.fence.0, duration_ms(*ttl)])).collect();
        let mut writer = self.writer().await?;
        let rows = sqlx::query(include_str!("sql/lease_renew.sql"))
            .bind(serde_json::to_string(&spec)?)
            .fetch_all(&mut *writer)
            .await
            .map_err(db)?;
        // SQLite's one write lock serializes renewals with every other writer: nothing is ever busy
        Ok(LeaseRenewal { renewed: leases_of(&rows)?, busy: Vec::new() })
    }

    async fn task_complete_many(&self, p: TaskCompleteParams) -> Result<Vec<CompletionStatus>> {
        if p.tasks.is_empty() {
            return Ok(Vec::new());
        }
        complete_tasks(&mut *self.writer().await?, &p.tasks).await
    }

    async fn task_retry(&self, p: TaskRetryParams) -> Result<TaskState> {
        let mut writer = self.writer().await?;
        let state: Option<String> = sqlx::query_scalar(include_str!("sql/task_retry.sql"))
            .bind(p.lease.task_id.0.to_string())
            .bind(p.lease.fence.0)
            .bind(truncate_error(&p.error))
            .bind(p.retry_in.map(duration_ms))
            .fetch_optional(&mut *writer)
            .await
            .map_err(db)?;
        parse_state(&state.ok_or_else(|| lost(p.lease))?)
    }

    async fn task_snooze(&self, p: TaskSnoozeParams) -> Result<()> {
        let mut writer = self.writer().await?;
        let done = sqlx::query(include_str!("sql/task_snooze.sql"))
            .bind(p.lease.task_id.0.to_string())
            .bind(p.lease.fence.0)
            .bind(duration_ms(p.delay))
            .execute(&mut *writer)
            .await
            .map_err(db)?;
        if done.rows_affected() == 0 { Err(lost(p.lease)) } else { Ok(()) }
    }

    async fn task_finish(&self, p: TaskFinishParams) -> Result<()> {
        if !matches!(p.state, TaskState::Cancelled | TaskState::Discarded) {
            return Err(Error::InvalidInput(format!("a holder cannot finish a task as {}", p.state)));
        }
        let mut writer = self.writer().await?;
        let done = sqlx::query(include_str!("sql/task_finish.sql"))
            .bind(p.lease.task_id.0.to_string())
            .bind(p.lease.fence.0)
            .bind(p.state.as_str())
            .bind(truncate_error(&p.reason))
            .execute(&mut *writer)
            .await
            .map_err(db)?;
        if done.rows_affected() == 0 { Err(lost(p.lease)) } else { Ok(()) }
    }

    async fn task_release(&self, p: TaskReleaseParams) -> Result<Vec<TaskLease>> {
        if p.leases.is_empty() {
            return Ok(Vec::new());
        }
        let spec: Vec<serde_json::Value> =
            p.leases.iter().map(|l| json!([l.task_id.0.to_string(), l.fence.0])).collect();
        let mut writer = self.writer().await?;
        let rows = sqlx::query(include_str!("sql/task_release.sql"))
            .bind(serde_json::to_string(&spec)?)
            .bind(i64::from(p.lease_lost))
            .fetch_all(&mut *writer)
            .await
            .map_err(db)?;
        self.hint(rows.iter().map(|r| r.get::<String, _>("queue")));
        leases_of(&rows)
    }

    async fn task_cancel(&self, p: TaskCancelParams) -> Result<TaskState> {
        let mut writer = self.writer().await?;
        let state: Option<String> = sqlx::query_scalar(include_str!("sql/task_cancel.sql"))
            .bind(p.id.0.to_string())
            .fetch_optional(&mut *writer)
            .await
            .map_err(db)?;
        drop(writer);
        match state {
            Some(s) => parse_state(&s),
            None => Ok(self.task_get(p.id).await?.state),
        }
    }

    async fn task_get(&self, id: TaskId) -> Result<TaskRecord> {
        let row: Option<TaskRow> = sqlx::query_as(include_str!("sql/task_get.sql"))
            .bind(id.0.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.ok_or(Error::NotFound(id))?.try_into()
    }

    async fn task_due_exists(&self, queues: Vec<String>) -> Result<bool> {
        sqlx::query_scalar(include_str!("sql/task_claim_peek.sql"))
            .bind(serde_json::to_string(&queues)?)
            .fetch_one(&self.pool)
            .await
            .map_err(db)
    }

    async fn task_prune(&self, p: TaskPruneParams) -> Result<u64> {
        let mut writer = self.writer().await?;
        let done = sqlx::query(include_str!("sql/task_prune.sql"))
            .bind(duration_ms(p.older_than))
            .bind(i64::from(p.limit))
            .execute(&mut *writer)
            .await
            .map_err(db)?;
        Ok(done.rows_affected())
    }

    async fn task_depth(&self) -> Result<Vec<QueueDepth>> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as(include_str!("sql/task_depth.sql")).fetch_all(&self.pool).await.map_err(db)?;
        rows.into_iter()
            .map(|(queue, state, n)| {
                let state =
                    TaskState::parse(&state).ok_or_else(|| Error::Schema(format!("unknown task state {state:?}")))?;
                Ok(QueueDepth { queue, state, count: u64::try_from(n).unwrap_or(0) })
            })
            .collect()
    }

    async fn wakeup_subscribe(&self) -> Result<Box<dyn Wakeup>> {
        Ok(Box::new(SqliteWakeup { rx: self.local.hints.subscribe() }))
    }
}
