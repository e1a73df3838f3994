//! The plans PostgreSQL makes for the writes of lease holders, for the tests that check them: a table
//! whose statistics were taken while no task ran, and what a plan did, from `EXPLAIN (ANALYZE)`.

use std::time::Duration;

use leasehold_core::{ClaimedTask, DEFAULT_QUEUE, NewTask, TaskClaimParams, TaskStore};

use crate::pg::TestDb;

/// An `EXPLAIN (ANALYZE, FORMAT JSON)` statement, with its arguments bound or not.
pub type Explain<'q> = sqlx::query::QueryScalar<'q, sqlx::Postgres, serde_json::Value, sqlx::postgres::PgArguments>;

/// What a plan did, summed over its nodes (EXPLAIN gives a node's figures per loop).
#[derive(Debug, Default)]
pub struct Ran {
    /// Rows that joins compared and threw away.
    pub removed_by_joins: u64,
    /// Rows that filters read and threw away.
    pub removed_by_filters: u64,
    /// Rows the statement deleted or updated.
    pub written: u64,
}

impl Ran {
    /// The figures of the plan `plan` (the `Plan` of EXPLAIN's answer) and of every node below it.
    pub fn of(plan: &serde_json::Value) -> Self {
        let mut ran = Self::default();
        ran.add(plan);
        ran
    }

    /// Rows read and thrown away by filters and joins. A statement that looks its tasks up by key throws
    /// away a row or two per task given at most; one that reads every running task, about as many rows
    /// as are running.
    pub fn thrown_away(&self) -> u64 {
        self.removed_by_joins + self.removed_by_filters
    }

    fn add(&mut self, plan: &serde_json::Value) {
        let num = |key: &str| plan.get(key).and_then(|v| v.as_f64()).unwrap_or(0.0);
        let loops = num("Actual Loops");
        self.removed_by_joins += (num("Rows Removed by Join Filter") * loops) as u64;
        self.removed_by_filters += (num("Rows Removed by Filter") * loops) as u64;
        if plan.get("Node Type").and_then(|v| v.as_str()) == Some("ModifyTable") {
            self.written += (num("Actual Rows") * loops) as u64;
        }
        for child in plan.get("Plans").and_then(|p| p.as_array()).into_iter().flatten() {
            self.add(child);
        }
    }
}

/// Runs an `EXPLAIN (ANALYZE, FORMAT JSON)` (which runs the statement) in a transaction that is rolled
/// back, so every statement sees the same tasks. `prepare`, if any, runs first in the transaction (it
/// prepares the statement `s`, which is deallocated after).
pub async fn explained(pool: &sqlx::PgPool, prepare: Option<String>, explain: Explain<'_>) -> Ran {
    let mut conn = pool.acquire().await.unwrap();
    let mut tx = sqlx::Connection::begin(&mut *conn).await.unwrap();
    if let Some(sql) = &prepare {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone())).execute(&mut *tx).await.unwrap();
    }
    let plan = explain.fetch_one(&mut *tx).await.unwrap();
    tx.rollback().await.unwrap();
    if prepare.is_some() {
        sqlx::raw_sql("DEALLOCATE s").execute(&mut *conn).await.unwrap();
    }
    Ran::of(&plan[0]["Plan"])
}

/// Enqueues `tasks` tasks in batches of 1,000 and analyzes the table while none runs, as autovacuum does
/// just after a large enqueue.
pub async fn enqueued_and_analyzed(db: &TestDb, tasks: usize) {
    let store = db.store();
    for _ in 0..tasks / 1_000 {
        let batch = (0..1_000).map(|n| NewTask::new("k", serde_json::json!({ "n": n }))).collect();
        store.task_insert_many(batch).await.unwrap();
    }
    sqlx::query("ANALYZE leasehold.tasks").execute(db.pool()).await.unwrap();
}

/// [`enqueued_and_analyzed`], then claims `claimed` of the tasks: the statistics say that no task is
/// running while `claimed` are. Answers the claimed tasks.
pub async fn claimed_after_stale_statistics(db: &TestDb, tasks: usize, claimed: u32) -> Vec<ClaimedTask> {
    enqueued_and_analyzed(db, tasks).await;
    let store = db.store();
    let claim = TaskClaimParams {
        queues: vec![DEFAULT_QUEUE.to_owned()],
        limit: claimed,
        default_lease_ttl: Duration::from_secs(60),
        worker_id: "t".into(),
    };
    let got = store.task_claim(claim).await.unwrap().tasks;
    assert_eq!(got.len(), claimed as usize);
    got
}
