//! The plans PostgreSQL makes for the statements that write many leased tasks at once (completions,
//! renewals, releases). Whatever the
//! table's statistics say, each task given is looked up by key (or the batch is hashed against the
//! table); it is never compared with every running task in a nested loop.

use std::time::Duration;

use leasehold_core::*;
use leasehold_testkit::pg::TestDb;
use sqlx::types::Json;

const TASKS: usize = 50_000;
const CLAIMED: u32 = 600;

/// The most rows any join of the plan compared and threw away.
fn most_removed_by_join_filter(plan: &serde_json::Value) -> u64 {
    let own = plan.get("Rows Removed by Join Filter").and_then(|v| v.as_u64()).unwrap_or(0);
    let children = plan.get("Plans").and_then(|p| p.as_array()).into_iter().flatten();
    children.map(most_removed_by_join_filter).fold(own, u64::max)
}

/// A table analyzed while no task ran (just after a large enqueue), so its statistics say that no task is
/// running; then a worker claims hundreds and completes, renews or releases them in one statement, planned
/// for the values given, as a connection's first executions are.
#[tokio::test]
async fn completions_look_tasks_up_by_key_when_the_statistics_say_none_runs() {
    let db = TestDb::create().await;
    let store = db.store();
    for _ in 0..TASKS / 1_000 {
        let tasks = (0..1_000).map(|n| NewTask::new("k", serde_json::json!({ "n": n }))).collect();
        store.task_insert_many(tasks).await.unwrap();
    }
    sqlx::query("ANALYZE leasehold.tasks").execute(db.pool()).await.unwrap();
    let claim = TaskClaimParams {
        queues: vec![DEFAULT_QUEUE.to_owned()],
        limit: CLAIMED,
        default_lease_ttl: Duration::from_secs(60),
        worker_id: "t".into(),
    };
    let claimed = store.task_claim(claim).await.unwrap().tasks;
    assert_eq!(claimed.len(), CLAIMED as usize);
    let ids: Vec<uuid::Uuid> = claimed.iter().map(|c| c.lease.task_id.0).collect();
    let fences: Vec<i64> = claimed.iter().map(|c| c.lease.fence.0).collect();
    let results: Vec<Option<Json<serde_json::Value>>> = vec![None; claimed.len()];

    let ttls: Vec<i64> = vec![60_000; claimed.len()];
    let check = |name: &str, removed: u64| {
        // by key or hashed, a join throws away at most the one row of each task given that fails a test
        // (the deleting statement's update finds every unkeyed task so); a nested loop over every running
        // task, about CLAIMED x CLAIMED rows
        assert!(removed <= u64::from(CLAIMED), "{name}: a join compared and threw away {removed} rows");
    };
    for (name, sql) in [
        ("task_complete.sql", include_str!("../src/sql/task_complete.sql")),
        ("task_complete_delete.sql", include_str!("../src/sql/task_complete_delete.sql")),
    ] {
        check(name, most_removed(db.pool(), explain(sql).bind(&ids).bind(&fences).bind(&results)).await);
    }
    let renew = explain(include_str!("../src/sql/lease_renew.sql")).bind(&ids).bind(&fences).bind(&ttls);
    check("lease_renew.sql", most_removed(db.pool(), renew).await);
    let release = explain(include_str!("../src/sql/task_release.sql")).bind(&ids).bind(&fences).bind(false);
    check("task_release.sql", most_removed(db.pool(), release).await);
}

type Explain<'q> = sqlx::query::QueryScalar<'q, sqlx::Postgres, serde_json::Value, sqlx::postgres::PgArguments>;

/// `EXPLAIN (ANALYZE, FORMAT JSON)` of a statement, planned for the values bound to it.
fn explain<'q>(sql: &str) -> Explain<'q> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN (ANALYZE, FORMAT JSON) {sql}")))
}

/// Runs the explained statement (EXPLAIN ANALYZE runs it) in a transaction that is rolled back, so every
/// statement sees the same tasks; answers the most rows any join of its plan compared and threw away.
async fn most_removed(pool: &sqlx::PgPool, explain: Explain<'_>) -> u64 {
    let mut tx = pool.begin().await.unwrap();
    let plan = explain.fetch_one(&mut *tx).await.unwrap();
    tx.rollback().await.unwrap();
    most_removed_by_join_filter(&plan[0]["Plan"])
}
