//! The rules the tasks table holds every row to, whoever writes it. leasehold's own statements validate
//! what they write before it reaches the table; the table refuses the rest (an edit by hand, a bug), so
//! that no write can put a task out of every claim's reach, such as a running task without a lease, which
//! would never be taken over.

use std::time::Duration;

use leasehold_core::*;
use leasehold_postgres::{PgStore, migrate};
use leasehold_testkit::pg::TestDb;
use sqlx::AssertSqlSafe;

/// SQLSTATE `check_violation`, raised by a domain's check and by a table's alike.
const CHECK_VIOLATION: &str = "23514";

/// The migration that moved the single-column rules from the table into domains.
const DOMAINS_MIGRATION: i64 = 20261207000002;

async fn refused(db: &TestDb, sql: &str) {
    let err = sqlx::raw_sql(AssertSqlSafe(sql.to_owned())).execute(db.pool()).await.expect_err(sql);
    let code = err.as_database_error().and_then(|d| d.code()).map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some(CHECK_VIOLATION), "{sql}: {err}");
}

async fn written(db: &TestDb, sql: &str) {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned())).execute(db.pool()).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// An insert of one task with these columns' values in place of a valid task's.
fn insert(changes: &[(&str, &str)]) -> String {
    let mut row = [
        ("id", "gen_random_uuid()"),
        ("kind", "'k'"),
        ("queue", "'q'"),
        ("payload", "'{}'"),
        ("state", "'available'"),
        ("max_attempts", "3"),
        ("lease_ttl_ms", "NULL"),
        ("lease_expires_at", "NULL"),
    ];
    for (column, value) in changes {
        row.iter_mut().find(|(c, _)| c == column).unwrap_or_else(|| panic!("no column {column}")).1 = value;
    }
    let columns: Vec<&str> = row.iter().map(|(c, _)| *c).collect();
    let values: Vec<&str> = row.iter().map(|(_, v)| *v).collect();
    format!("INSERT INTO leasehold.tasks ({}) VALUES ({})", columns.join(", "), values.join(", "))
}

#[tokio::test]
async fn the_tasks_table_refuses_rows_that_break_its_rules() {
    let db = TestDb::create().await;

    // rows at the edges of every rule are written
    written(&db, &insert(&[])).await;
    written(&db, &insert(&[("max_attempts", "1"), ("lease_ttl_ms", "1000")])).await;
    written(&db, &insert(&[("state", "'running'"), ("lease_expires_at", "now()")])).await;
    for state in ["completed", "cancelled", "discarded"] {
        written(&db, &insert(&[("state", &format!("'{state}'"))])).await;
    }

    // inserts that break one rule each
    let broken: &[&[(&str, &str)]] = &[
        &[("kind", "''")],
        &[("queue", "''")],
        &[("state", "'paused'")],
        &[("state", "'Available'")],
        &[("max_attempts", "0")],
        &[("lease_ttl_ms", "999")],
        &[("state", "'running'")],
        &[("lease_expires_at", "now()")],
    ];
    for changes in broken {
        refused(&db, &insert(changes)).await;
    }
    // a batch's shape: values from arrays, one of them empty
    refused(
        &db,
        "INSERT INTO leasehold.tasks (id, kind, queue, payload, max_attempts)
         SELECT gen_random_uuid(), k, 'q', '{}', 3 FROM unnest(ARRAY['a', '']) AS k",
    )
    .await;

    // updates of a valid available task that break one rule each
    let available = "(SELECT id FROM leasehold.tasks WHERE state = 'available' LIMIT 1)";
    for set in [
        "kind = ''",
        "queue = ''",
        "state = 'bogus'",
        "state = 'running'",
        "lease_expires_at = now()",
        "max_attempts = 0",
        "lease_ttl_ms = 10",
    ] {
        refused(&db, &format!("UPDATE leasehold.tasks SET {set} WHERE id = {available}")).await;
    }

    // and nothing refused was written
    let (total, blank): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE kind = '' OR queue = '' OR max_attempts < 1) FROM leasehold.tasks",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!((total, blank), (6, 0));
}

/// A database that an earlier build migrated, holding tasks in every state, takes the migration that moved
/// the rules into domains and goes on as before: the tasks keep their values, the rules still hold, a
/// claim takes the available task and its completion is fenced.
#[tokio::test]
async fn tasks_written_before_the_rules_moved_into_domains_survive_the_migration() {
    let db = TestDb::create().await;
    written(&db, "DROP SCHEMA leasehold CASCADE").await;
    let mut earlier = migrate::migrator();
    earlier.migrations = earlier.migrations.iter().filter(|m| m.version < DOMAINS_MIGRATION).cloned().collect();
    earlier.run(db.pool()).await.unwrap();

    written(&db, &insert(&[("kind", "'before'"), ("lease_ttl_ms", "5000")])).await;
    written(
        &db,
        &insert(&[("kind", "'before'"), ("state", "'running'"), ("lease_expires_at", "now() + interval '1 hour'")]),
    )
    .await;
    written(&db, &insert(&[("kind", "'before'"), ("state", "'completed'")])).await;

    let store = PgStore::from_pool(db.pool().clone());
    store.migrate().await.unwrap();
    let states: Vec<(String, i32, Option<i32>)> =
        sqlx::query_as("SELECT state, max_attempts, lease_ttl_ms FROM leasehold.tasks ORDER BY state")
            .fetch_all(db.pool())
            .await
            .unwrap();
    assert_eq!(
        states,
        vec![("available".into(), 3, Some(5000)), ("completed".into(), 3, None), ("running".into(), 3, None)]
    );
    refused(&db, &insert(&[("state", "'paused'")])).await;
    refused(&db, &insert(&[("state", "'running'")])).await;

    let claimed = store
        .task_claim(TaskClaimParams {
            queues: vec!["q".into()],
            limit: 10,
            default_lease_ttl: Duration::from_secs(30),
            worker_id: "w".into(),
        })
        .await
        .unwrap()
        .tasks;
    assert_eq!(claimed.len(), 1, "the available task, not the running one whose lease holds");
    assert_eq!(claimed[0].lease_ttl, Duration::from_secs(5));
    let stale = TaskLease { fence: FencingToken(claimed[0].lease.fence.0 - 1), ..claimed[0].lease };
    let done = store
        .task_complete_many(TaskCompleteParams {
            tasks: vec![(stale, None), (claimed[0].lease, None)],
            delete_completed: false,
        })
        .await
        .unwrap();
    assert_eq!(done, vec![CompletionStatus::LeaseLost, CompletionStatus::Completed]);
}
