//! The rules the tasks table holds every row to, whoever writes it. leasehold's own statements validate
//! what they write before it reaches the table; the table refuses the rest (an edit by hand, a bug), so
//! that no write can put a task out of every claim's reach, such as a running task without a lease, which
//! would never be taken over.

use leasehold_testkit::pg::TestDb;
use sqlx::AssertSqlSafe;

/// SQLSTATE `check_violation`.
const CHECK_VIOLATION: &str = "23514";

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
