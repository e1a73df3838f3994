//! The plans PostgreSQL makes for the statements that write many leased tasks at once (completions,
//! renewals, releases). Whatever the table's statistics say, each task given is looked up by key (or the
//! batch is hashed against the table); it is never compared with every running task in a nested loop.

use leasehold_core::*;
use leasehold_testkit::pg::TestDb;
use leasehold_testkit::plans::{Explain, claimed_after_stale_statistics, explained};
use sqlx::types::Json;

const TASKS: usize = 50_000;
const CLAIMED: u32 = 600;

/// A table analyzed while no task ran (just after a large enqueue), so its statistics say that no task is
/// running; then a worker claims hundreds and completes, renews or releases them in one statement. Each
/// statement is planned both ways PostgreSQL plans a prepared statement: for the values given (a
/// connection's first executions) and generically (the plan it keeps).
#[tokio::test]
async fn batch_writes_look_tasks_up_by_key_when_the_statistics_say_none_runs() {
    let db = TestDb::create().await;
    let claimed = claimed_after_stale_statistics(&db, TASKS, CLAIMED).await;
    // every lease claimed, and one whose token is stale: it writes nothing, and it keeps the deleting
    // statement's update of keyed tasks from being skipped, so that its plan is checked too
    let given = || claimed.iter().map(|c| c.lease).chain([TaskLease { fence: FencingToken(0), ..claimed[0].lease }]);
    let ids: Vec<uuid::Uuid> = given().map(|l| l.task_id.0).collect();
    let fences: Vec<i64> = given().map(|l| l.fence.0).collect();
    let results: Vec<Option<Json<serde_json::Value>>> = vec![None; ids.len()];
    let ttls: Vec<i64> = vec![60_000; ids.len()];

    // the same values written out, for EXECUTE (a utility statement, which takes no bound parameters)
    let list = |v: Vec<String>| format!("'{{{}}}'", v.join(","));
    let ids_sql = list(ids.iter().map(|i| i.to_string()).collect()) + "::uuid[]";
    let fences_sql = list(fences.iter().map(|f| f.to_string()).collect()) + "::bigint[]";
    let n = ids.len();

    let statements = [
        ("task_complete.sql", include_str!("../src/sql/task_complete.sql"), "jsonb[]"),
        ("task_complete_delete.sql", include_str!("../src/sql/task_complete_delete.sql"), "jsonb[]"),
        ("lease_renew.sql", include_str!("../src/sql/lease_renew.sql"), "bigint[]"),
        ("task_release.sql", include_str!("../src/sql/task_release.sql"), "boolean"),
    ];
    for (name, sql, third) in statements {
        for generic in [false, true] {
            let (prepare, q): (_, Explain<'_>) = if generic {
                let third_sql = match third {
                    "jsonb[]" => format!("array_fill(NULL::jsonb, ARRAY[{n}])"),
                    "bigint[]" => format!("array_fill(60000::bigint, ARRAY[{n}])"),
                    _ => "false".to_owned(),
                };
                let prepare = format!(
                    "SET LOCAL plan_cache_mode = force_generic_plan; PREPARE s(uuid[], bigint[], {third}) AS {sql}"
                );
                let explain = format!("EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE s({ids_sql}, {fences_sql}, {third_sql})");
                (Some(prepare), sqlx::query_scalar(sqlx::AssertSqlSafe(explain)))
            } else {
                let explain = format!("EXPLAIN (ANALYZE, FORMAT JSON) {sql}");
                let q = sqlx::query_scalar(sqlx::AssertSqlSafe(explain)).bind(&ids).bind(&fences);
                let q = match third {
                    "jsonb[]" => q.bind(&results),
                    "bigint[]" => q.bind(&ttls),
                    _ => q.bind(false),
                };
                (None, q)
            };
            let got = explained(db.pool(), prepare, q).await;
            let how = if generic { "generic plan" } else { "plan for the values" };
            assert_eq!(got.written, u64::from(CLAIMED), "{name}, {how}: every task still held is written");
            // by key or hashed, each join throws away at most the one row of each task given that fails a
            // test (the stale token; the deleting statement's update, every unkeyed task); a nested loop
            // over every running task, about CLAIMED x CLAIMED rows
            assert!(
                got.removed_by_joins <= 2 * n as u64,
                "{name}, {how}: joins compared and threw away {} rows",
                got.removed_by_joins
            );
        }
    }
}
