//! [`PgStore`]: the task store on a PostgreSQL pool.

use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Utc};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::types::Json;
use sqlx::{PgExecutor, PgPool, Postgres, Row};
use uuid::Uuid;

use leasehold_core::params::duration_ms;
use leasehold_core::*;

use crate::claim::claim_sql;
use crate::db;
use crate::reserved::Reserved;
use crate::rows::{ClaimRow, TaskRow, parse_state};
use crate::single;
use crate::size::{PerClass, SizeClass};
use crate::waiters::Waiters;
use crate::wakeup::PgWakeup;
use crate::warm::{Conn, Warm};

/// The PostgreSQL task store. Cheap to clone: it shares one connection pool.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    /// Connections kept between the store's statements (see `warm.rs`).
    warm: Arc<Warm>,
    /// The size class of the tasks table its latest claim saw (see `size.rs`).
    size_class: Arc<SizeClass>,
    /// Which queues had a worker waiting at their latest enqueue (see `waiters.rs`).
    waiters: Arc<Waiters>,
    /// The connection lease renewals run on, outside the pool (see `reserved.rs`).
    reserved: Arc<Reserved>,
    /// The connection the leader lease is taken and renewed on when the pool has none to spare.
    leader_reserved: Arc<Reserved>,
}

impl PgStore {
    /// Connections a pool opened by [`PgStore::connect`] keeps at most.
    pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;

    /// Wraps an existing pool (the application's own). Run [`PgStore::migrate`] once before use.
    ///
    /// Lease renewals run on one connection of the store's own, opened with the pool's connect options
    /// on the first renewal and kept: handlers that hold every connection of the pool for their own
    /// transactions cannot hold up the renewal of their leases. The scheduler's leader lease is taken
    /// and renewed on a pooled connection when one is idle, and otherwise on a second connection of the
    /// store's own, opened the same way. So the store opens at most two connections more than the
    /// pool's maximum. The pool's hooks (`after_connect` and the like) do not run on those connections:
    /// a role they set is not set there, so the connect options' own user must be allowed to update
    /// `leasehold.tasks` and `leasehold.leaders`.
    pub fn from_pool(pool: PgPool) -> Self {
        Self {
            warm: Warm::new(pool.clone()),
            pool,
            size_class: Arc::default(),
            waiters: Arc::default(),
            reserved: Arc::default(),
            leader_reserved: Arc::default(),
        }
    }

    /// The options of the pool [`PgStore::connect`] opens, for an application that opens its own for
    /// [`PgStore::from_pool`]: at most [`PgStore::DEFAULT_MAX_CONNECTIONS`], and no liveness check
    /// before each use. sqlx checks by default, with a round trip to the server every time a connection
    /// leaves the pool, which would double the round trips of every enqueue, claim and completion. A
    /// connection that broke while idle (a server restart) fails the one statement that finds it broken
    /// and leaves the pool; the worker retries its own statements, and an enqueue answers the error.
    pub fn pool_options() -> PgPoolOptions {
        PgPoolOptions::new().max_connections(Self::DEFAULT_MAX_CONNECTIONS).test_before_acquire(false)
    }

    /// Opens a pool on `url` (with [`PgStore::pool_options`]) and applies the migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        let opts: PgConnectOptions =
            url.parse().map_err(|e| Error::InvalidConfig(format!("not a PostgreSQL URL: {e}")))?;
        let pool = Self::pool_options()
            .connect_with(opts.application_name("leasehold"))
            .await
            .map_err(|e| Error::Connect(format!("cannot connect to PostgreSQL: {e}")))?;
        let store = Self::from_pool(pool);
        store.migrate().await?;
        Ok(store)
    }

    /// Applies leasehold's migrations (idempotent, safe from many processes at once).
    pub async fn migrate(&self) -> Result<()> {
        crate::migrate::run(&self.pool).await
    }

    /// The pool, for the application's own queries and transactions. The store keeps some of its
    /// connections between its own statements (up to half, only while the pool has others to lend, for
    /// 10 s at most unused); closing the pool hands them back first.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Hands back the connections the store keeps and closes the pool, waiting for the connections
    /// still in use.
    pub async fn close(&self) {
        self.warm.release_all();
        self.pool.close().await;
        self.reserved.close().await;
        self.leader_reserved.close().await;
    }

    /// A connection for one of the store's statements; call `clean()` on it once the statement succeeded.
    pub(crate) async fn conn(&self) -> Result<Conn> {
        self.warm.get().await
    }

    /// The store's own connection, outside the application's pool, for the renewals of task leases
    /// (see `reserved.rs`).
    pub(crate) async fn reserved_conn(&self) -> Result<PoolConnection<Postgres>> {
        self.reserved.get(&self.pool).await
    }

    /// A connection for the leader lease that does not wait behind the pool's other borrowers: an idle
    /// pooled one, or else the leader's own outside the pool. Not the task renewals' own: a leader
    /// lease's upsert waits for the lock a leader's term check holds until its transaction ends, and
    /// the task renewals must not wait behind that.
    pub(crate) async fn leader_conn(&self) -> Result<Unqueued> {
        match self.warm.get_spare() {
            Some(conn) => Ok(Unqueued::Pooled(conn)),
            None => Ok(Unqueued::Reserved(self.leader_reserved.get(&self.pool).await?)),
        }
    }
}

/// A connection lent without a wait in the pool's queue (see [`PgStore::leader_conn`]).
pub(crate) enum Unqueued {
    Pooled(Conn),
    Reserved(PoolConnection<Postgres>),
}

impl Unqueued {
    /// The statement succeeded: a pooled connection may be kept for the next one.
    pub(crate) fn clean(&mut self) {
        if let Self::Pooled(c) = self {
            c.clean();
        }
    }
}

impl std::ops::Deref for Unqueued {
    type Target = sqlx::PgConnection;
    fn deref(&self) -> &sqlx::PgConnection {
        match self {
            Self::Pooled(c) => c,
            Self::Reserved(c) => c,
        }
    }
}

impl std::ops::DerefMut for Unqueued {
    fn deref_mut(&mut self) -> &mut sqlx::PgConnection {
        match self {
            Self::Pooled(c) => c,
            Self::Reserved(c) => c,
        }
    }
}

pub(crate) async fn insert_tasks<'e>(exec: impl PgExecutor<'e>, tasks: &[NewTask]) -> Result<Vec<TaskId>> {
    for t in tasks {
        t.validate()?;
        if t.idempotency.is_some() {
            return Err(Error::InvalidInput(
                "tasks with idempotency keys are enqueued one at a time, not in a batch".into(),
            ));
        }
    }
    if let [t] = tasks {
        let q = sqlx::query(include_str!("sql/task_insert_one.sql")).bind(t.id.0).bind(Json(&t.payload));
        TaskColumns::of(t).bind(q).execute(exec).await.map_err(db)?;
        return Ok(vec![t.id]);
    }
    let shared = TaskColumns::of(&tasks[0]);
    if tasks.iter().all(|t| TaskColumns::of(t) == shared) {
        let ids: Vec<Uuid> = tasks.iter().map(|t| t.id.0).collect();
        let payloads: Vec<Json<&serde_json::Value>> = tasks.iter().map(|t| Json(&t.payload)).collect();
        let q = sqlx::query(include_str!("sql/task_insert_alike.sql")).bind(&ids).bind(&payloads);
        shared.bind(q).execute(exec).await.map_err(db)?;
        return Ok(ids.into_iter().map(TaskId).collect());
    }
    let n = tasks.len();
    let (mut ids, mut kinds, mut queues, mut payloads, mut prios) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut run_ats, mut delays, mut maxes, mut ttls) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for t in tasks {
        ids.push(t.id.0);
        kinds.push(t.kind.as_str());
        queues.push(t.queue.as_str());
        payloads.push(Json(&t.payload));
        prios.push(t.priority);
        run_ats.push(t.run_at);
        delays.push(t.delay_ms());
        maxes.push(t.max_attempts);
        ttls.push(lease_ttl_ms(t));
    }
    sqlx::query(include_str!("sql/task_insert.sql"))
        .bind(&ids)
        .bind(&kinds)
        .bind(&queues)
        .bind(&payloads)
        .bind(&prios)
        .bind(&run_ats)
        .bind(&delays)
        .bind(&maxes)
        .bind(&ttls)
        .execute(exec)
        .await
        .map_err(db)?;
    Ok(ids.into_iter().map(TaskId).collect())
}

/// A task's own lease ttl as the table stores it (whole milliseconds in an `integer`).
fn lease_ttl_ms(t: &NewTask) -> Option<i32> {
    t.lease_ttl_ms().map(|ms| i32::try_from(ms).unwrap_or(i32::MAX))
}

/// The columns of a task other than its id and payload, as the insert statements bind them ($3 to $9
/// of `task_insert_one.sql`, `task_insert_alike.sql` and `task_insert_keyed.sql`). A batch whose tasks
/// all have the same ones is inserted by `task_insert_alike.sql`.
#[derive(PartialEq)]
pub(crate) struct TaskColumns<'a> {
    kind: &'a str,
    queue: &'a str,
    priority: i16,
    run_at: Option<DateTime<Utc>>,
    delay_ms: i64,
    max_attempts: i32,
    lease_ttl_ms: Option<i32>,
}

impl<'a> TaskColumns<'a> {
    pub(crate) fn of(t: &'a NewTask) -> Self {
        Self {
            kind: &t.kind,
            queue: &t.queue,
            priority: t.priority,
            run_at: t.run_at,
            delay_ms: t.delay_ms(),
            max_attempts: t.max_attempts,
            lease_ttl_ms: lease_ttl_ms(t),
        }
    }

    /// Binds them as $3 to $9 of `q`, which has bound $1 and $2.
    pub(crate) fn bind(self, q: PgQuery<'a>) -> PgQuery<'a> {
        q.bind(self.kind)
            .bind(self.queue)
            .bind(self.priority)
            .bind(self.run_at)
            .bind(self.delay_ms)
            .bind(self.max_attempts)
            .bind(self.lease_ttl_ms)
    }
}

/// A statement with its arguments, on PostgreSQL.
pub(crate) type PgQuery<'a> = sqlx::query::Query<'a, sqlx::Postgres, sqlx::postgres::PgArguments>;

pub(crate) async fn complete_tasks<'e>(
    exec: impl PgExecutor<'e>,
    tasks: &[(TaskLease, Option<serde_json::Value>)],
    delete_completed: bool,
) -> Result<Vec<CompletionStatus>> {
    let codes: Option<Vec<i16>> = if let [(lease, result)] = tasks {
        let q = sqlx::query_scalar(single::complete_one(delete_completed));
        let q = q.bind(lease.task_id.0).bind(lease.fence.0).bind(result.as_ref().map(Json));
        q.fetch_one(exec).await.map_err(db)?
    } else {
        let many = if delete_completed {
            include_str!("sql/task_complete_delete.sql")
        } else {
            include_str!("sql/task_complete.sql")
        };
        let ids: Vec<Uuid> = tasks.iter().map(|(l, _)| l.task_id.0).collect();
        let fences: Vec<i64> = tasks.iter().map(|(l, _)| l.fence.0).collect();
        let results: Vec<Option<Json<&serde_json::Value>>> = tasks.iter().map(|(_, r)| r.as_ref().map(Json)).collect();
        sqlx::query_scalar(many).bind(&ids).bind(&fences).bind(&results).fetch_one(exec).await.map_err(db)?
    };
    let codes = codes.unwrap_or_default();
    if codes.len() != tasks.len() {
        return Err(Error::Schema(format!("{} completion statuses for {} tasks", codes.len(), tasks.len())));
    }
    codes
        .into_iter()
        .map(|code| match code {
            0 => Ok(CompletionStatus::Completed),
            1 => Ok(CompletionStatus::AlreadyCompleted),
            2 => Ok(CompletionStatus::LeaseLost),
            other => Err(Error::Schema(format!("unexpected completion status {other}"))),
        })
        .collect()
}

/// Whether `task_insert_handoff.sql` may hand `task` to a waiting worker, as far as the store can tell
/// before sending it: the task may be attempted again should its hand-off be lost, and its payload
/// (`payload`, its compact JSON), kind and queue take at most 6,000 bytes as JSON. The statement checks
/// the notification's printed length itself.
fn may_hand_off(task: &NewTask, payload: &str) -> bool {
    const MAX_VARIABLE_PART: usize = 6_000;
    // an upper bound on a name's length as a JSON string: an escaped character takes at most six bytes
    let json_len = |s: &str| -> usize {
        s.chars()
            .map(|c| match c {
                '\u{0}'..='\u{1f}' => 6,
                '"' | '\\' => 2,
                c => c.len_utf8(),
            })
            .sum::<usize>()
            + 2
    };
    task.max_attempts > 1 && payload.len() + json_len(&task.kind) + json_len(&task.queue) <= MAX_VARIABLE_PART
}

impl TaskStore for PgStore {
    fn backend_name(&self) -> &'static str {
        "postgres"
    }

    async fn task_insert(&self, task: NewTask) -> Result<TaskId> {
        if task.idempotency.is_some() {
            return Ok(self.task_insert_idempotent(task).await?.id);
        }
        // the client's own enqueue, in a transaction of its own: it may hand its task to a waiting worker
        task.validate()?;
        let mut c = self.conn().await?;
        let waits: bool = if self.waiters.likely(&task.queue) {
            let payload = task.payload.to_string();
            let may = may_hand_off(&task, &payload);
            let q = sqlx::query(include_str!("sql/task_insert_handoff.sql")).bind(task.id.0).bind(payload.as_str());
            TaskColumns::of(&task).bind(q).bind(may).fetch_one(&mut *c).await.map_err(db)?.try_get(0).map_err(db)?
        } else {
            let q = sqlx::query(include_str!("sql/task_insert_one.sql")).bind(task.id.0).bind(Json(&task.payload));
            TaskColumns::of(&task).bind(q).fetch_one(&mut *c).await.map_err(db)?.try_get(0).map_err(db)?
        };
        c.clean();
        self.waiters.saw(&task.queue, waits);
        Ok(task.id)
    }

    async fn task_insert_idempotent(&self, task: NewTask) -> Result<Enqueued> {
        let mut c = self.conn().await?;
        let enqueued = crate::keyed::insert_keyed(&mut c, &task).await?;
        c.clean();
        Ok(enqueued)
    }

    async fn task_insert_many(&self, tasks: Vec<NewTask>) -> Result<Vec<TaskId>> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn().await?;
        let ids = insert_tasks(&mut *c, &tasks).await?;
        c.clean();
        Ok(ids)
    }

    async fn task_claim(&self, p: TaskClaimParams) -> Result<ClaimBatch> {
        if p.limit == 0 || p.queues.is_empty() {
            return Ok(ClaimBatch::default());
        }
        let mut c = self.conn().await?;
        let sql = claim_sql(&p.distinct_queues(), p.limit, self.size_class.get());
        let mut rows: Vec<ClaimRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(duration_ms(p.default_lease_ttl))
            .bind(&p.worker_id)
            .bind(LEASE_LOST_ON_LAST_ATTEMPT)
            .fetch_all(&mut *c)
            .await
            .map_err(db)?;
        c.clean();
        // handed back before any discard below asks for a connection: on a pool of one, it would wait for
        // this one until its acquire timed out
        drop(c);
        if let Some(r) = rows.first() {
            self.size_class.saw(r.table_pages);
        }
        let fresh = rows.iter().filter(|r| r.fresh_claim()).count() as i64;
        let contended = rows.first().is_some_and(|r| r.due_seen > fresh);
        let reached_limit = rows.first().is_some_and(|r| r.picked >= i64::from(p.limit));
        let mut discarded = rows.first_mut().map(ClaimRow::discarded).unwrap_or_default();
        let (mut tasks, mut unreadable) = (Vec::with_capacity(rows.len()), Vec::new());
        for task in rows.into_iter().filter_map(ClaimRow::into_task) {
            match task {
                Ok(task) => tasks.push(task),
                Err(task) => unreadable.push(task),
            }
        }
        discarded.extend(leasehold_core::claim::discard_unreadable(self, unreadable).await);
        Ok(ClaimBatch { tasks, contended, reached_limit, discarded })
    }

    async fn lease_renew(&self, p: LeaseRenewParams) -> Result<LeaseRenewal> {
        if p.leases.is_empty() {
            return Ok(LeaseRenewal::default());
        }
        let class = self.size_class.get();
        let query = if let [(lease, ttl)] = p.leases.as_slice() {
            let one = sqlx::query(single::renew_one(class));
            one.bind(lease.task_id.0).bind(lease.fence.0).bind(duration_ms(*ttl))
        } else {
            let ids: Vec<Uuid> = p.leases.iter().map(|(l, _)| l.task_id.0).collect();
            let fences: Vec<i64> = p.leases.iter().map(|(l, _)| l.fence.0).collect();
            let ttls: Vec<i64> = p.leases.iter().map(|(_, d)| duration_ms(*d)).collect();
            static MANY: LazyLock<PerClass> = LazyLock::new(|| PerClass::new(include_str!("sql/lease_renew.sql")));
            sqlx::query(MANY.get(class)).bind(ids).bind(fences).bind(ttls)
        };
        // on the store's own connection: handlers holding every connection of the pool must not hold up
        // the renewal of their own leases
        let mut c = self.reserved_conn().await?;
        let rows = query.fetch_all(&mut *c).await.map_err(db)?;
        let mut out = LeaseRenewal::default();
        for r in &rows {
            let lease = TaskLease { task_id: TaskId(r.get("id")), fence: FencingToken(r.get("fence")) };
            match r.get::<&str, _>("status") {
                "renewed" => out.renewed.push(lease),
                "busy" => out.busy.push(lease),
                _ => {}
            }
        }
        Ok(out)
    }

    async fn task_complete_many(&self, p: TaskCompleteParams) -> Result<Vec<CompletionStatus>> {
        if p.tasks.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn().await?;
        let statuses = complete_tasks(&mut *c, &p.tasks, p.delete_completed).await?;
        c.clean();
        Ok(statuses)
    }

    async fn task_retry(&self, p: TaskRetryParams) -> Result<TaskState> {
        let mut c = self.conn().await?;
        let state: Option<String> = sqlx::query_scalar(include_str!("sql/task_retry.sql"))
            .bind(p.lease.task_id.0)
            .bind(p.lease.fence.0)
            .bind(truncate_error(&p.error))
            .bind(p.retry_in.map(duration_ms))
            .fetch_optional(&mut *c)
            .await
            .map_err(db)?;
        c.clean();
        parse_state(&state.ok_or_else(|| Error::lease_lost(p.lease))?)
    }

    async fn task_snooze(&self, p: TaskSnoozeParams) -> Result<()> {
        let mut c = self.conn().await?;
        let done = sqlx::query(include_str!("sql/task_snooze.sql"))
            .bind(p.lease.task_id.0)
            .bind(p.lease.fence.0)
            .bind(duration_ms(p.delay))
            .execute(&mut *c)
            .await
            .map_err(db)?;
        c.clean();
        if done.rows_affected() == 0 { Err(Error::lease_lost(p.lease)) } else { Ok(()) }
    }

    async fn task_finish(&self, p: TaskFinishParams) -> Result<()> {
        if !matches!(p.state, TaskState::Cancelled | TaskState::Discarded) {
            return Err(Error::InvalidInput(format!("a holder cannot finish a task as {}", p.state)));
        }
        let mut c = self.conn().await?;
        let done = sqlx::query(include_str!("sql/task_finish.sql"))
            .bind(p.lease.task_id.0)
            .bind(p.lease.fence.0)
            .bind(p.state.as_str())
            .bind(truncate_error(&p.reason))
            .execute(&mut *c)
            .await
            .map_err(db)?;
        c.clean();
        if done.rows_affected() == 0 { Err(Error::lease_lost(p.lease)) } else { Ok(()) }
    }

    async fn task_release(&self, p: TaskReleaseParams) -> Result<Vec<TaskLease>> {
        if p.leases.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = p.leases.iter().map(|l| l.task_id.0).collect();
        let fences: Vec<i64> = p.leases.iter().map(|l| l.fence.0).collect();
        let mut c = self.conn().await?;
        let rows = sqlx::query(include_str!("sql/task_release.sql"))
            .bind(&ids)
            .bind(&fences)
            .bind(p.lease_lost)
            .fetch_all(&mut *c)
            .await
            .map_err(db)?;
        let mut queues: Vec<String> = rows.iter().map(|r| r.get("queue")).collect();
        queues.sort();
        queues.dedup();
        if !queues.is_empty() {
            sqlx::query(include_str!("sql/wakeup_notify.sql")).bind(&queues).execute(&mut *c).await.map_err(db)?;
        }
        c.clean();
        Ok(rows
            .iter()
            .map(|r| TaskLease { task_id: TaskId(r.get("id")), fence: FencingToken(r.get("fence")) })
            .collect())
    }

    async fn task_cancel(&self, p: TaskCancelParams) -> Result<TaskState> {
        let state: Option<String> = sqlx::query_scalar(include_str!("sql/task_cancel.sql"))
            .bind(p.id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        match state {
            Some(s) => parse_state(&s),
            None => Ok(self.task_get(p.id).await?.state),
        }
    }

    async fn task_get(&self, id: TaskId) -> Result<TaskRecord> {
        let row: Option<TaskRow> =
            sqlx::query_as(include_str!("sql/task_get.sql")).bind(id.0).fetch_optional(&self.pool).await.map_err(db)?;
        row.ok_or(Error::NotFound(id))?.try_into()
    }

    async fn task_due_exists(&self, queues: Vec<String>) -> Result<bool> {
        sqlx::query_scalar(include_str!("sql/task_due.sql")).bind(&queues).fetch_one(&self.pool).await.map_err(db)
    }

    async fn task_prune(&self, p: TaskPruneParams) -> Result<u64> {
        let done = sqlx::query(include_str!("sql/task_prune.sql"))
            .bind(duration_ms(p.older_than))
            .bind(i64::from(p.limit))
            .execute(&self.pool)
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
        Ok(Box::new(PgWakeup::listen(&self.pool).await?))
    }
}

impl CrossProcessWakeups for PgStore {}
