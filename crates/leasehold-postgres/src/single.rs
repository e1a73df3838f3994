//! The statements that write many leased tasks, in their form for one task or one lease.
//!
//! A completion or a renewal reads its tasks from arrays (`unnest($1::uuid[], ...)`). Over arrays,
//! PostgreSQL's generic plan guesses many rows and loses to a plan made for the values given, so every
//! statement for a single task was planned anew: planning cost about twice the execution (0.19 ms
//! against 0.09 in an idle worker's completions). An idle or lightly loaded worker completes and renews
//! one task at a time, so these forms read one row of single values instead, and PostgreSQL keeps one
//! generic plan for each (the renewal, one for each size class of the table: see `size.rs`). The rest
//! of each statement is the same text as in `sql/`, so both forms say the same. The tests below also
//! check the plans of the other writes of one leased task (finish, retry, snooze): every one of them
//! must find its task by key whatever the table's statistics say.

use std::sync::LazyLock;

use crate::size::PerClass;

/// The completion of one task: `task_complete_delete.sql` when completed tasks are deleted, else
/// `task_complete.sql`. Binds the task's id, its token and its result.
pub(crate) fn complete_one(delete_completed: bool) -> &'static str {
    static KEEP: LazyLock<String> = LazyLock::new(|| one_task(include_str!("sql/task_complete.sql")));
    static DELETE: LazyLock<String> = LazyLock::new(|| one_task(include_str!("sql/task_complete_delete.sql")));
    if delete_completed { &DELETE } else { &KEEP }
}

/// The renewal of one lease (`lease_renew.sql`), planned for a tasks table of size class `class` (see
/// `size.rs`). Binds the task's id, its token and the ttl in ms.
pub(crate) fn renew_one(class: u8) -> &'static str {
    static ONE: LazyLock<PerClass> = LazyLock::new(|| {
        PerClass::new(&single_row(
            include_str!("sql/lease_renew.sql"),
            "FROM unnest($1::uuid[], $2::bigint[], $3::bigint[]) AS h(id, fence, ttl_ms)",
            "FROM (VALUES ($1::uuid, $2::bigint, $3::bigint)) AS h(id, fence, ttl_ms)",
        ))
    });
    ONE.get(class)
}

fn one_task(sql: &str) -> String {
    single_row(
        sql,
        "FROM unnest($1::uuid[], $2::bigint[], $3::jsonb[]) WITH ORDINALITY AS h(id, fence, result, ord)",
        "FROM (VALUES ($1::uuid, $2::bigint, $3::jsonb, 1::bigint)) AS h(id, fence, result, ord)",
    )
}

/// `sql` reading the row `one` where it read the arrays `arrays`.
fn single_row(sql: &str, arrays: &str, one: &str) -> String {
    assert!(sql.contains(arrays), "the statement reads its tasks as `{arrays}`:\n{sql}");
    sql.replace(arrays, one)
}

#[cfg(test)]
mod tests {
    use leasehold_testkit::pg::TestDb;
    use leasehold_testkit::plans::{claimed_after_stale_statistics, explained};

    use super::{complete_one, renew_one};

    fn statements() -> [(&'static str, &'static str, &'static str); 3] {
        [
            (complete_one(false), "uuid, bigint, jsonb", "NULL"),
            (complete_one(true), "uuid, bigint, jsonb", "NULL"),
            (renew_one(0), "uuid, bigint, bigint", "60000"),
        ]
    }

    #[test]
    fn the_single_forms_read_no_arrays() {
        for (sql, _, _) in statements() {
            assert!(!sql.contains("[]"), "an array is left in:\n{sql}");
        }
    }

    /// After its first five runs on a connection PostgreSQL settles on a generic plan for each form,
    /// where over arrays of one element it planned every run anew (`pg_prepared_statements` counts
    /// both for the connection's prepared statements).
    #[tokio::test]
    async fn the_single_forms_keep_a_generic_plan() {
        let db = TestDb::create().await;
        let mut conn = db.pool().acquire().await.unwrap();
        for _ in 0..8 {
            for delete in [false, true] {
                let q = sqlx::query(complete_one(delete)).bind(uuid::Uuid::now_v7()).bind(1_i64);
                q.bind(None::<sqlx::types::Json<serde_json::Value>>).fetch_all(&mut *conn).await.unwrap();
            }
            let q = sqlx::query(renew_one(0)).bind(uuid::Uuid::now_v7()).bind(1_i64).bind(30_000_i64);
            q.fetch_all(&mut *conn).await.unwrap();
        }
        for (sql, _, _) in statements() {
            let (generic, custom): (i64, i64) =
                sqlx::query_as("SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1")
                    .bind(sql)
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap();
            assert!(generic >= 3 && custom <= 5, "{generic} generic and {custom} custom plans for:\n{sql}");
        }
    }

    /// Their generic plans, and those of the other writes of one leased task (finish, retry, snooze), look
    /// the task up by key, even when the table's statistics (taken while no task ran) say that no task is
    /// running: never a read of every running task, for the lease given or for a stale one.
    #[tokio::test]
    async fn the_writes_of_one_task_read_by_key_when_the_statistics_say_none_runs() {
        let db = TestDb::create().await;
        let held = claimed_after_stale_statistics(&db, 4_000, 600).await[0].lease;
        let others = [
            (include_str!("sql/task_finish.sql"), "uuid, bigint, text, text", "'cancelled', 'stop'"),
            (include_str!("sql/task_retry.sql"), "uuid, bigint, text, bigint", "'failed', 1000"),
            (include_str!("sql/task_snooze.sql"), "uuid, bigint, bigint", "1000"),
        ];
        for (sql, types, rest) in statements().into_iter().chain(others) {
            for fence in [held.fence.0, 0] {
                let prepare = format!("SET LOCAL plan_cache_mode = force_generic_plan; PREPARE s({types}) AS {sql}");
                let explain =
                    format!("EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE s('{}', {fence}, {rest})", held.task_id.0);
                let ran = explained(db.pool(), Some(prepare), sqlx::query_scalar(sqlx::AssertSqlSafe(explain))).await;
                let thrown = ran.thrown_away();
                // the task given fails a test in some of the statement's few reads of it (a stale token in
                // each); a read of every running task throws away about 600
                assert!(thrown <= 4, "{thrown} rows thrown away with fence {fence} by the generic plan of:\n{sql}");
            }
        }
    }
}
