//! What crash and pause scenarios read back from a database after worker processes ran on it: the
//! effects and attempts the test worker recorded, and the tasks' final state.

use std::future::Future;

use uuid::Uuid;

use leasehold_core::ScheduleStore;

use crate::pg::TestDb;
use crate::sqlite::TestFile;

/// One attempt as the test worker recorded it.
#[derive(Clone, Debug)]
pub struct AttemptRow {
    /// The task.
    pub task_id: Uuid,
    /// The worker process that ran it.
    pub worker: String,
    /// Its fencing token.
    pub fence: i64,
    /// When it started, in ms on the database's clock.
    pub started_ms: i64,
    /// Whether the job saw its cancellation.
    pub cancelled: Option<bool>,
    /// `completed`, `rejected` (by fencing) or `error`; `None` if the process died first.
    pub completion: Option<String>,
}

/// A database that worker processes share, with the queries the scenarios check.
pub trait ProcessDb: Send + Sync {
    /// The store.
    type Store: ScheduleStore;
    /// A handle on the store.
    fn store(&self) -> Self::Store;
    /// The URL worker processes open.
    fn url(&self) -> String;
    /// Effects recorded: (rows, distinct tasks, rows whose token is not their task's final one).
    fn effects(&self) -> impl Future<Output = (i64, i64, i64)> + Send;
    /// The tokens of the effects of one task.
    fn effect_fences(&self, task: Uuid) -> impl Future<Output = Vec<i64>> + Send;
    /// Tasks not completed.
    fn unfinished(&self) -> impl Future<Output = i64> + Send;
    /// The sum of every task's lease losses.
    fn lease_losses(&self) -> impl Future<Output = i64> + Send;
    /// The workers holding running tasks now.
    fn busy_workers(&self) -> impl Future<Output = Vec<String>> + Send;
    /// The database's clock, in ms.
    fn now_ms(&self) -> impl Future<Output = i64> + Send;
    /// Every attempt, oldest first.
    fn attempts(&self) -> impl Future<Output = Vec<AttemptRow>> + Send;

    /// How many effect rows each task has.
    fn effect_counts(&self) -> impl Future<Output = std::collections::HashMap<Uuid, i64>> + Send;

    /// The ledger of a schedule: (tick in ms, outcome, task), oldest first.
    fn ticks(&self, schedule: &str) -> impl Future<Output = Vec<(i64, String, Option<Uuid>)>> + Send;
}

type RawTick = (i64, String, Option<String>);

fn tick_row(r: RawTick) -> (i64, String, Option<Uuid>) {
    (r.0, r.1, r.2.map(|t| Uuid::parse_str(&t).unwrap()))
}

type RawAttempt = (String, String, i64, i64, Option<bool>, Option<String>);

fn attempt(r: RawAttempt) -> AttemptRow {
    AttemptRow {
        task_id: Uuid::parse_str(&r.0).unwrap(),
        worker: r.1,
        fence: r.2,
        started_ms: r.3,
        cancelled: r.4,
        completion: r.5,
    }
}

impl ProcessDb for TestDb {
    type Store = leasehold::postgres::PgStore;

    fn store(&self) -> Self::Store {
        TestDb::store(self)
    }

    fn url(&self) -> String {
        TestDb::url(self).to_owned()
    }

    async fn effects(&self) -> (i64, i64, i64) {
        sqlx::query_as(
            "SELECT count(*), count(DISTINCT e.task_id), count(*) FILTER (WHERE e.fence <> t.fence)
               FROM effects e JOIN leasehold.tasks t ON t.id = e.task_id",
        )
        .fetch_one(self.pool())
        .await
        .unwrap()
    }

    async fn effect_fences(&self, task: Uuid) -> Vec<i64> {
        sqlx::query_scalar("SELECT fence FROM effects WHERE task_id = $1 ORDER BY fence")
            .bind(task)
            .fetch_all(self.pool())
            .await
            .unwrap()
    }

    async fn unfinished(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM leasehold.tasks WHERE state <> 'completed'")
            .fetch_one(self.pool())
            .await
            .unwrap()
    }

    async fn lease_losses(&self) -> i64 {
        sqlx::query_scalar("SELECT coalesce(sum(lease_losses), 0)::bigint FROM leasehold.tasks")
            .fetch_one(self.pool())
            .await
            .unwrap()
    }

    async fn busy_workers(&self) -> Vec<String> {
        sqlx::query_scalar("SELECT DISTINCT claimed_by FROM leasehold.tasks WHERE state = 'running'")
            .fetch_all(self.pool())
            .await
            .unwrap()
    }

    async fn now_ms(&self) -> i64 {
        sqlx::query_scalar("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint")
            .fetch_one(self.pool())
            .await
            .unwrap()
    }

    async fn attempts(&self) -> Vec<AttemptRow> {
        let rows: Vec<RawAttempt> = sqlx::query_as(
            "SELECT task_id::text, worker, fence, (extract(epoch FROM started_at) * 1000)::bigint, cancelled, completion
               FROM attempts ORDER BY started_at",
        )
        .fetch_all(self.pool())
        .await
        .unwrap();
        rows.into_iter().map(attempt).collect()
    }

    async fn ticks(&self, schedule: &str) -> Vec<(i64, String, Option<Uuid>)> {
        self.ticks_of(schedule).await
    }

    async fn effect_counts(&self) -> std::collections::HashMap<Uuid, i64> {
        let rows: Vec<(String, i64)> = sqlx::query_as("SELECT task_id::text, count(*) FROM effects GROUP BY task_id")
            .fetch_all(self.pool())
            .await
            .unwrap();
        rows.into_iter().map(|(t, n)| (Uuid::parse_str(&t).unwrap(), n)).collect()
    }
}

impl TestDb {
    async fn ticks_of(&self, schedule: &str) -> Vec<(i64, String, Option<Uuid>)> {
        let rows: Vec<RawTick> = sqlx::query_as(
            "SELECT (extract(epoch FROM tick) * 1000)::bigint, outcome, task_id::text
               FROM leasehold.schedule_ticks WHERE schedule = $1 AND NOT manual ORDER BY tick",
        )
        .bind(schedule)
        .fetch_all(self.pool())
        .await
        .unwrap();
        rows.into_iter().map(tick_row).collect()
    }
}

impl ProcessDb for TestFile {
    type Store = leasehold::sqlite::SqliteStore;

    fn store(&self) -> Self::Store {
        TestFile::store(self)
    }

    fn url(&self) -> String {
        TestFile::url(self)
    }

    async fn effects(&self) -> (i64, i64, i64) {
        sqlx::query_as(
            "SELECT count(*), count(DISTINCT e.task_id), count(*) FILTER (WHERE e.fence <> t.fence)
               FROM effects e JOIN leasehold_tasks t ON t.id = e.task_id",
        )
        .fetch_one(self.pool())
        .await
        .unwrap()
    }

    async fn effect_fences(&self, task: Uuid) -> Vec<i64> {
        sqlx::query_scalar("SELECT fence FROM effects WHERE task_id = ?1 ORDER BY fence")
            .bind(task.to_string())
            .fetch_all(self.pool())
            .await
            .unwrap()
    }

    async fn unfinished(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM leasehold_tasks WHERE state <> 'completed'")
            .fetch_one(self.pool())
            .await
            .unwrap()
    }

    async fn lease_losses(&self) -> i64 {
        sqlx::query_scalar("SELECT coalesce(sum(lease_losses), 0) FROM leasehold_tasks")
            .fetch_one(self.pool())
            .await
            .unwrap()
    }

    async fn busy_workers(&self) -> Vec<String> {
        sqlx::query_scalar("SELECT DISTINCT claimed_by FROM leasehold_tasks WHERE state = 'running'")
            .fetch_all(self.pool())
            .await
            .unwrap()
    }

    async fn now_ms(&self) -> i64 {
        sqlx::query_scalar("SELECT CAST(unixepoch('subsec') * 1000 AS INTEGER)").fetch_one(self.pool()).await.unwrap()
    }

    async fn attempts(&self) -> Vec<AttemptRow> {
        let rows: Vec<RawAttempt> = sqlx::query_as(
            "SELECT task_id, worker, fence, started_at, cancelled, completion FROM attempts ORDER BY started_at",
        )
        .fetch_all(self.pool())
        .await
        .unwrap();
        rows.into_iter().map(attempt).collect()
    }

    async fn ticks(&self, schedule: &str) -> Vec<(i64, String, Option<Uuid>)> {
        let rows: Vec<RawTick> = sqlx::query_as(
            "SELECT tick, outcome, task_id FROM leasehold_schedule_ticks WHERE schedule = ?1 AND NOT manual ORDER BY tick",
        )
        .bind(schedule)
        .fetch_all(self.pool())
        .await
        .unwrap();
        rows.into_iter().map(tick_row).collect()
    }

    async fn effect_counts(&self) -> std::collections::HashMap<Uuid, i64> {
        let rows: Vec<(String, i64)> = sqlx::query_as("SELECT task_id, count(*) FROM effects GROUP BY task_id")
            .fetch_all(self.pool())
            .await
            .unwrap();
        rows.into_iter().map(|(t, n)| (Uuid::parse_str(&t).unwrap(), n)).collect()
    }
}
