//! [`SqliteStore`]: the task store on a SQLite file.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};

use serde_json::json;
use sqlx::{Row, SqliteExecutor, SqlitePool};

use leasehold_core::params::duration_ms;
use leasehold_core::*;

use crate::claim::{Picks, claim_sql};
use crate::db;
use crate::local::{FileLocal, for_file};
use crate::open::{SqliteOptions, open_checked, url_path};
use crate::rows::{Claimed, TaskRow, claimed_tasks, parse_id, parse_state};
use crate::wakeup::SqliteWakeup;
use crate::writer::{Kept, Writer};

/// The SQLite task store. Cheap to clone: it shares one pool and one wake-up channel.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    local: Arc<FileLocal>,
    /// The connection the store's own writes run on (see `writer.rs`).
    kept: Arc<Kept>,
    /// The queue sets (as JSON arrays) whose latest claim found work: their next claim skips the peek.
    busy: Arc<Mutex<HashSet<String>>>,
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
        let store = Self { local: for_file(path), pool, kept: Default::default(), busy: Default::default() };
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
        Self { pool, local, kept: Default::default(), busy: Default::default() }
    }

    /// Applies leasehold's migrations.
    pub async fn migrate(&self) -> Result<()> {
        crate::migrate::run(&self.pool).await
    }

    /// The pool, for the application's own queries. The store's own writes run on one more
    /// connection, which it keeps outside the pool (see [`SqliteStore::close`]).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes the pool, waiting for its connections still in use, then the connection the store keeps
    /// for its writes, once the write running on it (if any) has ended; later writes fail. Closing
    /// only the pool leaves the kept connection open until the store's next write (which fails) or
    /// until the last clone of the store is dropped.
    pub async fn close(&self) {
        self.pool.close().await;
        self.kept.close(&self.local).await;
    }

    /// Begins a transaction that takes the write lock at once (`BEGIN IMMEDIATE`), as transactions that
    /// write should on SQLite: a deferred one that reads first may fail to upgrade to a writer.
    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)
    }

    /// The connection for one of the store's own writes, once this process's other writes to the file
    /// are done (see `local.rs` and `writer.rs`). Every write of the store runs on it, so none meets
    /// another at SQLite's lock, and its page cache stays warm between them.
    pub(crate) async fn writer(&self) -> Result<Writer<'_>> {
        self.kept.writer(&self.pool, &self.local).await
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
    if let Some(first) = tasks.first() {
        let shared = TaskColumns::of(first);
        if tasks[1..].iter().all(|t| TaskColumns::of(t) == shared) {
            let q = sqlx::query(include_str!("sql/task_insert_alike.sql")).bind(ids_and_payloads(tasks)?);
            shared.bind(q).execute(exec).await.map_err(db)?;
            return Ok(tasks.iter().map(|t| t.id).collect());
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

/// A task's columns other than its id and payload, as the insert statements bind them (after the tasks
/// in `task_insert_alike.sql`, which takes a batch whose tasks all have the same ones; after the id and
/// the payload in `task_insert_keyed.sql`).
#[derive(PartialEq)]
pub(crate) struct TaskColumns<'a> {
    kind: &'a str,
    queue: &'a str,
    priority: i16,
    run_at: Option<i64>,
    delay_ms: i64,
    max_attempts: i32,
    lease_ttl_ms: Option<i64>,
}

impl<'a> TaskColumns<'a> {
    pub(crate) fn of(t: &'a NewTask) -> Self {
        Self {
            kind: &t.kind,
            queue: &t.queue,
            priority: t.priority,
            run_at: t.run_at.map(ms),
            delay_ms: t.delay_ms(),
            max_attempts: t.max_attempts,
            lease_ttl_ms: t.lease_ttl_ms(),
        }
    }

    /// Binds them, in this order, after what `q` has bound.
    pub(crate) fn bind(self, q: SqliteQuery<'a>) -> SqliteQuery<'a> {
        q.bind(self.kind)
            .bind(self.queue)
            .bind(self.priority)
            .bind(self.run_at)
            .bind(self.delay_ms)
            .bind(self.max_attempts)
            .bind(self.lease_ttl_ms)
    }
}

/// A statement with its arguments, on SQLite.
pub(crate) type SqliteQuery<'a> = sqlx::query::Query<'a, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>;

/// The tasks as `task_insert_alike.sql` reads them: a JSON array of `[id, payload]` pairs, written
/// directly (an id needs no escaping), each payload serialized once.
fn ids_and_payloads(tasks: &[NewTask]) -> Result<String> {
    use std::io::Write;
    let mut out = Vec::with_capacity(tasks.len() * 48);
    out.push(b'[');
    for (i, t) in tasks.iter().enumerate() {
        let _ = write!(out, "{}[\"{}\",", if i == 0 { "" } else { "," }, t.id.0);
        serde_json::to_writer(&mut out, &t.payload)?;
        out.push(b']');
    }
    out.push(b']');
    Ok(String::from_utf8(out).expect("JSON written from UTF-8 text is UTF-8"))
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

/// Runs one of the completion statements on its JSON array of tasks; answers the (id, fence) of each task
/// it completed.
async fn settled_rows(
    conn: &mut sqlx::SqliteConnection,
    sql: &'static str,
    spec: String,
) -> Result<Vec<(String, i64)>> {
    sqlx::query_as(sql).bind(spec).fetch_all(conn).await.map_err(db)
}

pub(crate) async fn complete_tasks(
    conn: &mut sqlx::SqliteConnection,
    tasks: &[(TaskLease, Option<serde_json::Value>)],
    delete_completed: bool,
) -> Result<Vec<CompletionStatus>> {
    let key = |l: &TaskLease| (l.task_id.0.to_string(), l.fence.0);
    let mut done: HashSet<(String, i64)> = HashSet::with_capacity(tasks.len());
    if delete_completed {
        // the keyed tasks are left to the updates below
        let spec = fenced_spec(tasks.iter().map(|(l, _)| l));
        done.extend(settled_rows(conn, include_str!("sql/task_complete_delete.sql"), spec).await?);
    }
    let (plain, with_result): (Vec<_>, Vec<_>) =
        tasks.iter().filter(|(l, _)| !done.contains(&key(l))).partition(|(_, r)| r.is_none());
    if !plain.is_empty() {
        let spec = fenced_spec(plain.iter().map(|(l, _)| l));
        done.extend(settled_rows(conn, include_str!("sql/task_complete_plain.sql"), spec).await?);
    }
    if !with_result.is_empty() {
        let spec: Vec<serde_json::Value> =
            with_result.iter().map(|(l, r)| json!([l.task_id.0.to_string(), l.fence.0, true, r])).collect();
        let spec = serde_json::to_string(&spec)?;
        done.extend(settled_rows(conn, include_str!("sql/task_complete.sql"), spec).await?);
    }
    let already = completed_already(conn, tasks.iter().map(|(l, _)| l).filter(|l| !done.contains(&key(l)))).await?;
    Ok(tasks
        .iter()
        .map(
            |(l, _)| if done.contains(&key(l)) { CompletionStatus::Completed } else { not_completed_here(&already, l) },
        )
        .collect())
}

/// Of `leases`, the ones whose task is completed under that very token already (by the handler's own
/// transaction, or by an earlier try of the same batch), as (id, fence).
async fn completed_already<'a>(
    conn: &mut sqlx::SqliteConnection,
    leases: impl Iterator<Item = &'a TaskLease>,
) -> Result<HashSet<(String, i64)>> {
    let rest: Vec<serde_json::Value> = leases.map(|l| json!([l.task_id.0.to_string(), l.fence.0])).collect();
    if rest.is_empty() {
        return Ok(HashSet::new());
    }
    let rows: Vec<(String, i64)> = sqlx::query_as(include_str!("sql/task_completed_check.sql"))
        .bind(serde_json::to_string(&rest)?)
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
    Ok(rows.into_iter().collect())
}

/// The status of a task the statements just run did not complete: completed already under its token, or
/// its lease lost.
fn not_completed_here(already: &HashSet<(String, i64)>, l: &TaskLease) -> CompletionStatus {
    if already.contains(&(l.task_id.0.to_string(), l.fence.0)) {
        CompletionStatus::AlreadyCompleted
    } else {
        CompletionStatus::LeaseLost
    }
}

/// A batch's completion that answers the count of tasks it completed instead of a row per task:
/// task_complete_plain.sql, or task_complete_delete.sql when completed tasks are deleted, without its
/// closing `RETURNING id, fence`. When every task was completed, that count says so for all of them, and
/// no row per task is read back (sqlx copies every value of every row, on the connection's thread, under
/// SQLite's memory lock); when it falls short, the caller rolls the statement back and writes the batch
/// with the statements that answer per task. Derived from them, so the two forms cannot drift apart.
fn counted(delete_completed: bool) -> &'static str {
    static KEEP: LazyLock<String> = LazyLock::new(|| without_rows(include_str!("sql/task_complete_plain.sql")));
    static DELETE: LazyLock<String> = LazyLock::new(|| without_rows(include_str!("sql/task_complete_delete.sql")));
    if delete_completed { &DELETE } else { &KEEP }
}

/// `sql` without its closing `RETURNING id, fence`.
fn without_rows(sql: &str) -> String {
    let rows = sql.trim_end().strip_suffix("RETURNING id, fence");
    rows.expect("a completion that answers its tasks' ids and tokens last").trim_end().to_owned()
}

/// The leases as the completion statements read them: a JSON array of strings "id:fence".
fn fenced_spec<'a>(leases: impl Iterator<Item = &'a TaskLease>) -> String {
    json_strings(leases.map(|l| format!("{}:{}", l.task_id.0, l.fence.0)))
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

fn leases_of(rows: &[sqlx::sqlite::SqliteRow]) -> Result<Vec<TaskLease>> {
    rows.iter()
        .map(|r| Ok(TaskLease { task_id: parse_id(r.get::<&str, _>("id"))?, fence: FencingToken(r.get("fence")) }))
        .collect()
}

/// The queue sets whose latest claim found work are remembered up to this many (a process has a few).
const MAX_BUSY_QUEUE_SETS: usize = 64;

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
        let distinct = p.distinct_queues();
        let queues = serde_json::to_string(&*distinct)?;
        // a cheap read first, so idle polling never takes the write lock; skipped while the previous
        // claim of these queues found work, since a busy worker's next claim almost always does too
        let busy = self.busy.lock().unwrap().contains(&queues);
        if !busy {
            let any: bool = sqlx::query_scalar(include_str!("sql/task_claim_peek.sql"))
                .bind(&queues)
                .fetch_one(&self.pool)
                .await
                .map_err(db)?;
            if !any {
                return Ok(ClaimBatch::default());
            }
        }
        let asked = std::time::Instant::now();
        let mut writer = self.writer().await?;
        let mut tx = writer.begin().await?;
        // the write lock was free within a few hundred microseconds, or another writer held it
        let contended = asked.elapsed() > CONTENDED_WAIT;
        // the picks as rowids alone; read again with each one's marks when a lease is taken over
        let read = |picks| sqlx::query_as(sqlx::AssertSqlSafe(claim_sql(&distinct, p.limit, picks)));
        let (mut picked, mut picks, taken): (i64, String, i64) =
            read(Picks::Plain).fetch_one(&mut *tx).await.map_err(db)?;
        let marked = taken > 0;
        if marked {
            (picked, picks, _) = read(Picks::Marked).fetch_one(&mut *tx).await.map_err(db)?;
        }
        let answer = if picked == 0 {
            None
        } else {
            let ttl = duration_ms(p.default_lease_ttl);
            let (update, answer) = if marked {
                let update = sqlx::query(include_str!("sql/task_claim_update.sql"));
                (
                    update.bind(&picks).bind(ttl).bind(&p.worker_id).bind(LEASE_LOST_ON_LAST_ATTEMPT),
                    include_str!("sql/task_claim_answer.sql"),
                )
            } else {
                let update = sqlx::query(include_str!("sql/task_claim_update_plain.sql"));
                (update.bind(&picks).bind(ttl).bind(&p.worker_id), include_str!("sql/task_claim_answer_plain.sql"))
            };
            update.execute(&mut *tx).await.map_err(db)?;
            sqlx::query(include_str!("sql/fence_advance.sql")).bind(picked).execute(&mut *tx).await.map_err(db)?;
            let claimed: String =
                sqlx::query_scalar(answer).bind(&picks).bind(ttl).fetch_one(&mut *tx).await.map_err(db)?;
            Some(claimed)
        };
        tx.commit().await.map_err(db)?;
        drop(writer);
        {
            let mut busy = self.busy.lock().unwrap();
            if picked == 0 {
                busy.remove(&queues);
            } else if busy.len() < MAX_BUSY_QUEUE_SETS {
                busy.insert(queues);
            }
        }
        // the exhausted tasks were discarded, not claimed; they count towards the limit
        let reached_limit = picked >= i64::from(p.limit);
        let Claimed { tasks, unreadable, mut discarded } = match answer {
            Some(claimed) => claimed_tasks(&claimed)?,
            None => Claimed::default(),
        };
        discarded.extend(leasehold_core::claim::discard_unreadable(self, unreadable).await);
        Ok(ClaimBatch { tasks, contended, reached_limit, discarded })
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
        let mut writer = self.writer().await?;
        let plain = p.tasks.iter().all(|(_, result)| result.is_none());
        if p.tasks.len() > 1 && (p.delete_completed || plain) {
            // the common batch: one count answers for every task when all were completed (a batch of
            // one is answered by its own row, in one statement rather than three); a deleting one
            // drops any results, and counts the keyed tasks it leaves to the updates as short
            let mut tx = writer.begin().await?;
            let spec = fenced_spec(p.tasks.iter().map(|(l, _)| l));
            let changed = sqlx::query(counted(p.delete_completed))
                .bind(spec)
                .execute(&mut *tx)
                .await
                .map_err(db)?
                .rows_affected();
            if changed == p.tasks.len() as u64 {
                tx.commit().await.map_err(db)?;
                return Ok(vec![CompletionStatus::Completed; p.tasks.len()]);
            }
            // some task was not completed here (its lease lost, completed already by its handler's own
            // transaction, or, deleting, keyed): undone, and written again by the statements that
            // answer per task; when a keeping batch completed none, there is nothing to write again,
            // only each task's status to read
            tx.rollback().await.map_err(db)?;
            if changed == 0 && !p.delete_completed {
                let already = completed_already(&mut writer, p.tasks.iter().map(|(l, _)| l)).await?;
                return Ok(p.tasks.iter().map(|(l, _)| not_completed_here(&already, l)).collect());
            }
        }
        if !p.delete_completed {
            // a retry after a failed statement finds the tasks completed already: AlreadyCompleted
            return complete_tasks(&mut writer, &p.tasks, false).await;
        }
        // one transaction: a deleting completion runs up to three statements (the delete, the updates of
        // keyed tasks, the check of the rest), and a retry after a failed one must not find its tasks
        // deleted already
        let mut tx = writer.begin().await?;
        let statuses = complete_tasks(&mut tx, &p.tasks, true).await?;
        tx.commit().await.map_err(db)?;
        Ok(statuses)
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
        parse_state(&state.ok_or_else(|| Error::lease_lost(p.lease))?)
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
        if done.rows_affected() == 0 { Err(Error::lease_lost(p.lease)) } else { Ok(()) }
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
        if done.rows_affected() == 0 { Err(Error::lease_lost(p.lease)) } else { Ok(()) }
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

#[cfg(test)]
mod tests {
    use super::counted;

    /// Each counted completion is the statement that answers per task without its rows: a batch is
    /// written by one or the other depending on its size and its count.
    #[test]
    fn the_counted_completions_are_the_answering_ones_without_their_rows() {
        let pairs = [
            (false, include_str!("sql/task_complete_plain.sql")),
            (true, include_str!("sql/task_complete_delete.sql")),
        ];
        for (delete_completed, answering) in pairs {
            let counted = counted(delete_completed);
            assert!(!counted.contains("RETURNING"), "{counted}");
            assert_eq!(format!("{counted}\nRETURNING id, fence"), answering.trim_end());
        }
    }
}
