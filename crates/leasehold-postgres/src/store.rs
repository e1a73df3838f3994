//! [`PgStore`]: the task store on a PostgreSQL pool.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::types::Json;
use sqlx::{PgExecutor, PgPool, Row};
use uuid::Uuid;

use leasehold_core::params::duration_ms;
use leasehold_core::*;

use crate::rows::{ClaimRow, TaskRow, parse_state};
use crate::wakeup::PgWakeup;
use crate::{WAKEUP_CHANNEL, db};

/// The PostgreSQL task store. Cheap to clone: it shares one connection pool.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connections a pool opened by [`PgStore::connect`] keeps at most.
    pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;

    /// Wraps an existing pool (the application's own). Run [`PgStore::migrate`] once before use.
    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Opens a pool on `url` and applies the migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        let opts: PgConnectOptions =
            url.parse().map_err(|e| Error::InvalidConfig(format!("not a PostgreSQL URL: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(Self::DEFAULT_MAX_CONNECTIONS)
            .connect_with(opts.application_name("leasehold"))
            .await
            .map_err(db)?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies leasehold's migrations (idempotent, safe from many processes at once).
    pub async fn migrate(&self) -> Result<()> {
        crate::migrate::run(&self.pool).await
    }

    /// The pool, for the application's own queries and transactions.
    pub fn pool(&self) -> &PgPool {
        &self.pool
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
        ttls.push(t.lease_ttl_ms().map(|ms| i32::try_from(ms).unwrap_or(i32::MAX)));
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

pub(crate) async fn complete_tasks<'e>(
    exec: impl PgExecutor<'e>,
    tasks: &[(TaskLease, Option<serde_json::Value>)],
) -> Result<Vec<CompletionStatus>> {
    let ids: Vec<Uuid> = tasks.iter().map(|(l, _)| l.task_id.0).collect();
    let fences: Vec<i64> = tasks.iter().map(|(l, _)| l.fence.0).collect();
    let results: Vec<Option<Json<&serde_json::Value>>> = tasks.iter().map(|(_, r)| r.as_ref().map(Json)).collect();
    let rows = sqlx::query_scalar::<_, String>(include_str!("sql/task_complete.sql"))
        .bind(&ids)
        .bind(&fences)
        .bind(&results)
        .fetch_all(exec)
        .await
        .map_err(db)?;
    rows.iter()
        .map(|s| match s.as_str() {
            "completed" => Ok(CompletionStatus::Completed),
            "already_completed" => Ok(CompletionStatus::AlreadyCompleted),
            "lease_lost" => Ok(CompletionStatus::LeaseLost),
            other => Err(Error::Schema(format!("unexpected completion status {other:?}"))),
        })
        .collect()
}

fn lost(lease: TaskLease) -> Error {
    Error::LeaseLost { task_id: lease.task_id, fence: lease.fence }
}

impl TaskStore for PgStore {
    fn backend_name(&self) -> &'static str {
        "postgres"
    }

    async fn task_insert(&self, task: NewTask) -> Result<TaskId> {
        if task.idempotency.is_some() {
            return Ok(self.task_insert_idempotent(task).await?.id);
        }
        let ids = insert_tasks(&self.pool, std::slice::from_ref(&task)).await?;
        Ok(ids[0])
    }

    async fn task_insert_idempotent(&self, task: NewTask) -> Result<Enqueued> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        crate::keyed::insert_keyed(&mut conn, &task).await
    }

    async fn task_insert_many(&self, tasks: Vec<NewTask>) -> Result<Vec<TaskId>> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        insert_tasks(&self.pool, &tasks).await
    }

    async fn task_claim(&self, p: TaskClaimParams) -> Result<ClaimBatch> {
        if p.limit == 0 || p.queues.is_empty() {
            return Ok(ClaimBatch::default());
        }
        let rows: Vec<ClaimRow> = sqlx::query_as(include_str!("sql/task_claim.sql"))
            .bind(&p.queues)
            .bind(i64::from(p.limit))
            .bind(duration_ms(p.default_lease_ttl))
            .bind(&p.worker_id)
            .bind(LEASE_LOST_ON_LAST_ATTEMPT)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        let fresh = rows.iter().filter(|r| r.fresh_claim()).count() as i64;
        let contended = rows.first().is_some_and(|r| r.due_seen > fresh);
        Ok(ClaimBatch { tasks: rows.into_iter().filter_map(ClaimRow::into_task).collect(), contended })
    }

    async fn lease_renew(&self, p: LeaseRenewParams) -> Result<LeaseRenewal> {
        if p.leases.is_empty() {
            return Ok(LeaseRenewal::default());
        }
        let ids: Vec<Uuid> = p.leases.iter().map(|(l, _)| l.task_id.0).collect();
        let fences: Vec<i64> = p.leases.iter().map(|(l, _)| l.fence.0).collect();
        let ttls: Vec<i64> = p.leases.iter().map(|(_, d)| duration_ms(*d)).collect();
        let rows = sqlx::query(include_str!("sql/lease_renew.sql"))
            .bind(&ids)
            .bind(&fences)
            .bind(&ttls)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
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
        complete_tasks(&self.pool, &p.tasks).await
    }

    async fn task_retry(&self, p: TaskRetryParams) -> Result<TaskState> {
        let state: Option<String> = sqlx::query_scalar(include_str!("sql/task_retry.sql"))
            .bind(p.lease.task_id.0)
            .bind(p.lease.fence.0)
            .bind(truncate_error(&p.error))
            .bind(p.retry_in.map(duration_ms))
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        parse_state(&state.ok_or_else(|| lost(p.lease))?)
    }

    async fn task_snooze(&self, p: TaskSnoozeParams) -> Result<()> {
        let done = sqlx::query(include_str!("sql/task_snooze.sql"))
            .bind(p.lease.task_id.0)
            .bind(p.lease.fence.0)
            .bind(duration_ms(p.delay))
            .execute(&self.pool)
            .await
            .map_err(db)?;
        if done.rows_affected() == 0 { Err(lost(p.lease)) } else { Ok(()) }
    }

    async fn task_finish(&self, p: TaskFinishParams) -> Result<()> {
        if !matches!(p.state, TaskState::Cancelled | TaskState::Discarded) {
            return Err(Error::InvalidInput(format!("a holder cannot finish a task as {}", p.state)));
        }
        let done = sqlx::query(include_str!("sql/task_finish.sql"))
            .bind(p.lease.task_id.0)
            .bind(p.lease.fence.0)
            .bind(p.state.as_str())
            .bind(truncate_error(&p.reason))
            .execute(&self.pool)
            .await
            .map_err(db)?;
        if done.rows_affected() == 0 { Err(lost(p.lease)) } else { Ok(()) }
    }

    async fn task_release(&self, p: TaskReleaseParams) -> Result<Vec<TaskLease>> {
        if p.leases.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = p.leases.iter().map(|l| l.task_id.0).collect();
        let fences: Vec<i64> = p.leases.iter().map(|l| l.fence.0).collect();
        let rows = sqlx::query(include_str!("sql/task_release.sql"))
            .bind(&ids)
            .bind(&fences)
            .bind(p.lease_lost)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        let mut queues: Vec<String> = rows.iter().map(|r| r.get("queue")).collect();
        queues.sort();
        queues.dedup();
        if !queues.is_empty() {
            sqlx::query("SELECT pg_notify($1, q) FROM unnest($2::text[]) AS q")
                .bind(WAKEUP_CHANNEL)
                .bind(&queues)
                .execute(&self.pool)
                .await
                .map_err(db)?;
        }
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
