//! The plans SQLite makes for the statements that write many leased tasks at once (completions,
//! renewals, releases): each task given is looked up by key, whatever `ANALYZE` recorded. Statistics
//! taken while no task ran (an `ANALYZE` or `PRAGMA optimize` after a large enqueue, as an application
//! sharing the file may run) make the partial lease-expiry index look nearly empty; a plan that reads it
//! compares every running task with every task given, and a worker's drain fell about eightfold.
//! And the idle worker's look for work: a probe along the index per queue, never the table nor another
//! queue's waiting tasks.

use std::time::Duration;

use leasehold_core::{NewTask, TaskClaimParams, TaskLease, TaskStore};
use leasehold_sqlite::SqliteStore;
use leasehold_testkit::sqlite::TestFile;
use serde_json::json;

const TASKS: usize = 5_000;
const CLAIMED: u32 = 200;

#[tokio::test]
async fn batch_writes_look_tasks_up_by_key_when_the_statistics_say_none_runs() {
    let file = TestFile::create().await;
    let store = SqliteStore::open(file.path()).await.unwrap();
    let tasks = (0..TASKS).map(|n| NewTask::new("k", json!({ "n": n }))).collect();
    store.task_insert_many(tasks).await.unwrap();
    sqlx::raw_sql("ANALYZE").execute(store.pool()).await.unwrap();
    let params = TaskClaimParams {
        queues: vec!["default".into()],
        limit: CLAIMED,
        default_lease_ttl: Duration::from_secs(60),
        worker_id: "w".into(),
    };
    let leases: Vec<TaskLease> = store.task_claim(params).await.unwrap().tasks.iter().map(|t| t.lease).collect();
    assert_eq!(leases.len(), CLAIMED as usize);

    let pairs = || leases.iter().map(|l| (l.task_id.0.to_string(), l.fence.0));
    let flat = json!(pairs().map(|(id, fence)| format!("{id}:{fence}")).collect::<Vec<_>>()).to_string();
    let with_ttl = json!(pairs().map(|(id, fence)| json!([id, fence, 60_000])).collect::<Vec<_>>()).to_string();
    let with_result = json!(pairs().map(|(id, fence)| json!([id, fence, false, null])).collect::<Vec<_>>()).to_string();
    let bare = json!(pairs().map(|(id, fence)| json!([id, fence])).collect::<Vec<_>>()).to_string();

    let statements = [
        ("task_complete_plain.sql", include_str!("../src/sql/task_complete_plain.sql"), &flat, None),
        ("task_complete_delete.sql", include_str!("../src/sql/task_complete_delete.sql"), &flat, None),
        ("task_complete.sql", include_str!("../src/sql/task_complete.sql"), &with_result, None),
        ("lease_renew.sql", include_str!("../src/sql/lease_renew.sql"), &with_ttl, None),
        ("task_release.sql", include_str!("../src/sql/task_release.sql"), &bare, Some(0)),
    ];
    for (name, sql, batch, second) in statements {
        let explain = format!("EXPLAIN QUERY PLAN {sql}");
        let mut q = sqlx::query_as::<_, (i64, i64, i64, String)>(sqlx::AssertSqlSafe(explain)).bind(batch.as_str());
        if let Some(second) = second {
            q = q.bind(second);
        }
        let plan: Vec<String> = q.fetch_all(store.pool()).await.unwrap().into_iter().map(|r| r.3).collect();
        // the tasks table is read only by key: `SEARCH t USING INDEX sqlite_autoindex_leasehold_tasks_1 (id=?)`,
        // never scanned (`SCAN t`, whole or along an index)
        let by_key = has(&plan, "SEARCH t USING INDEX sqlite_autoindex_leasehold_tasks_1 (id=?)");
        assert!(by_key, "{name} does not look its tasks up by key: {plan:#?}");
        assert!(!reads_through(&plan), "{name} reads the tasks table through: {plan:#?}");
    }
    store.close().await;
}

/// The statement an idle worker runs at every poll: each of its queues is probed along the available
/// index (`queue=?`), the expired leases along the lease-expiry index, with or without statistics, and
/// the table is never read through. It once walked the available index from its first entry (every
/// waiting task of the queues sorted before the worker's) and, after `ANALYZE`, read the whole table.
#[tokio::test]
async fn an_idle_look_for_work_reads_a_few_index_entries() {
    let file = TestFile::create().await;
    let store = SqliteStore::open(file.path()).await.unwrap();
    let tasks = (0..TASKS).map(|n| NewTask::new("k", json!({ "n": n }))).collect();
    store.task_insert_many(tasks).await.unwrap();
    let sql = format!("EXPLAIN QUERY PLAN {}", include_str!("../src/sql/task_claim_peek.sql"));
    for analyzed in [false, true] {
        if analyzed {
            sqlx::raw_sql("ANALYZE").execute(store.pool()).await.unwrap();
        }
        let plan: Vec<String> = sqlx::query_as::<_, (i64, i64, i64, String)>(sqlx::AssertSqlSafe(sql.clone()))
            .bind(r#"["other"]"#)
            .fetch_all(store.pool())
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.3)
            .collect();
        assert!(has(&plan, "leasehold_tasks_available_idx (queue=?)"), "analyzed: {analyzed}: {plan:#?}");
        let expired = has(&plan, "leasehold_tasks_lease_expiry_idx (lease_expires_at<?)");
        assert!(expired, "analyzed: {analyzed}: {plan:#?}");
        assert!(!reads_through(&plan), "analyzed: {analyzed}: {plan:#?}");
        // and it still tells: nothing due in "other", the tasks of "default" are
        assert!(!store.task_due_exists(vec!["other".into()]).await.unwrap());
        assert!(store.task_due_exists(vec!["other".into(), "default".into()]).await.unwrap());
    }
    // an expired lease counts for its own queue only
    let params = TaskClaimParams {
        queues: vec!["default".into()],
        limit: 1,
        default_lease_ttl: Duration::from_secs(60),
        worker_id: "w".into(),
    };
    store.task_claim(params).await.unwrap();
    sqlx::raw_sql("UPDATE leasehold_tasks SET lease_expires_at = 0 WHERE state = 'running'")
        .execute(store.pool())
        .await
        .unwrap();
    sqlx::raw_sql("UPDATE leasehold_tasks SET queue = 'later' WHERE state = 'available'")
        .execute(store.pool())
        .await
        .unwrap();
    sqlx::raw_sql("UPDATE leasehold_tasks SET run_at = run_at + 86400000 WHERE state = 'available'")
        .execute(store.pool())
        .await
        .unwrap();
    assert!(!store.task_due_exists(vec!["other".into(), "later".into()]).await.unwrap(), "nothing due there");
    assert!(store.task_due_exists(vec!["default".into()]).await.unwrap(), "the expired lease");
    store.close().await;
}

/// Whether a step of the plan (EXPLAIN QUERY PLAN's `detail`) mentions `what`.
fn has(plan: &[String], what: &str) -> bool {
    plan.iter().any(|step| step.contains(what))
}

/// Whether the plan reads the tasks table through (`SCAN t`, whole or along an index).
fn reads_through(plan: &[String]) -> bool {
    plan.iter().any(|step| step.starts_with("SCAN t") || step.starts_with("SCAN leasehold_tasks"))
}

/// No statement compares a key column with a bare bound value (`id = ?1`): once `ANALYZE` has run,
/// SQLite plans with such a value and prepares the statement again at every binding (a snooze took
/// about 10 us of SQLite's time before `ANALYZE` and 44 us after). `CAST(?1 AS TEXT)` is not a bare
/// value, and the key's index still serves it.
#[test]
fn no_statement_compares_a_key_with_a_bare_bound_value() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/sql");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines().filter(|l| !l.trim_start().starts_with("--")) {
            for column in ["id", "idempotency_key", "key", "name", "queue"] {
                for qualified in [column.to_owned(), format!("t.{column}"), format!("l.{column}")] {
                    let bare = format!(" {qualified} = ?");
                    if format!(" {line}").contains(&bare) {
                        found.push(format!("{}: {}", path.display(), line.trim()));
                    }
                }
            }
        }
    }
    let inline = include_str!("../src/schedules.rs");
    for line in inline.lines().filter(|l| l.contains("name = ?")) {
        found.push(format!("schedules.rs: {}", line.trim()));
    }
    assert!(found.is_empty(), "bare bound values compared with keys:\n{}", found.join("\n"));
}
