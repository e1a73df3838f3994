//! The plans PostgreSQL makes for the statements that write many leased tasks at once (completions,
//! renewals, releases). Whatever the table's statistics say, each task given is looked up by key (or the
//! batch is hashed against the table); it is never compared with every running task in a nested loop.
//! And the claim's and the renewal's: a plan made while the table was empty does not outlive its growth.
//! The statements that pick their tasks themselves (a claim of hundreds, a retention batch) reach the row
//! versions they locked by `ctid`. Joined on the key, PostgreSQL's costs, which price an index lookup as a
//! read from disk, chose to hash a sequential scan of the whole table for tables up to about a hundred
//! times the batch.

use std::time::Duration;

use leasehold_core::*;
use leasehold_postgres::PgStore;
use leasehold_testkit::conformance::claim;
use leasehold_testkit::pg::TestDb;
use leasehold_testkit::plans::{Explain, claimed_after_stale_statistics, enqueued_and_analyzed, explained};
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

/// A queue drained and vacuumed empty (autovacuum's doing once its dead rows add up), a worker that
/// idles on it, then a burst of tasks. The idle worker's claims, and its renewals of leases it lost,
/// leave plans made for an empty table on their connection: sequential scans. The first claim after the
/// burst still runs on them (which shows the scenario reproduces); it answers the table's new size, and
/// the claims and renewals after it are planned for the table as it is and read no row sequentially.
/// (Before, every claim read the whole table three times until autovacuum next analyzed it, and every
/// renewal with a lease it could not renew read it too.)
#[tokio::test]
async fn after_a_burst_into_a_table_vacuumed_empty_claims_and_renewals_read_by_index() {
    let db = TestDb::create().await;
    let (pool, store) = one_connection(&db).await;
    sqlx::query("VACUUM leasehold.tasks").execute(db.pool()).await.unwrap();
    let claim_64 = || store.task_claim(claim(64));
    let gone = |n: i64| TaskLease { task_id: TaskId::new(), fence: FencingToken(n) };
    let renew = |leases: Vec<TaskLease>| {
        store.lease_renew(LeaseRenewParams {
            leases: leases.into_iter().map(|l| (l, Duration::from_secs(60))).collect(),
        })
    };
    for n in 0..8 {
        assert!(claim_64().await.unwrap().tasks.is_empty());
        assert!(renew(vec![gone(n)]).await.unwrap().renewed.is_empty());
        assert!(renew(vec![gone(n), gone(n + 1)]).await.unwrap().renewed.is_empty());
    }
    for _ in 0..20 {
        let batch = (0..1_000).map(|n| NewTask::new("k", serde_json::json!({ "n": n }))).collect();
        store.task_insert_many(batch).await.unwrap();
    }

    let mut leases = Vec::new();
    let claims = reads_per_step(&pool, 5, async || {
        leases.extend(claim_64().await.unwrap().tasks.into_iter().map(|t| t.lease));
    })
    .await;
    assert_eq!(leases.len(), 5 * 64);
    assert!(claims[0] > 0, "the first claim after the burst ran on the plan made for an empty table: {claims:?}");
    assert!(claims[1..].iter().all(|r| *r == 0), "rows read sequentially by each claim after the burst: {claims:?}");

    // a heartbeat's renewal of a few leases, one of them lost (a batch of hundreds, planned for its
    // values, is hashed against the table: see docs/benchmarks-history.md, "A claim of hundreds hashed
    // the whole table"), and one of a single lost lease
    let before = rows_read_sequentially(&pool).await;
    let renewed = renew(leases[..3].iter().copied().chain([gone(1)]).collect()).await.unwrap();
    assert_eq!(renewed.renewed.len(), 3);
    assert!(renew(vec![gone(2)]).await.unwrap().renewed.is_empty());
    let renewals = rows_read_sequentially(&pool).await - before;
    assert_eq!(renewals, 0, "rows read sequentially by the renewals after the burst");
}

/// A worker with hundreds of free slots claims them in one statement. The limit is in the claim's text,
/// so PostgreSQL plans for that many tasks; for a claim of 512 among 50,000 it hashed a sequential scan of
/// the whole table to update the tasks it picked (more than half of the claim's time, in every claim); the
/// updates now reach the row versions the claim locked, where they lie. Claims of 512, each connection's
/// first ones planned for their values and the later ones generically, read no row sequentially.
#[tokio::test]
async fn large_claims_update_the_tasks_they_picked_in_place() {
    let db = TestDb::create().await;
    let (pool, store) = one_connection(&db).await;
    enqueued_and_analyzed(&db, TASKS).await;
    let reads = reads_per_step(&pool, 8, async || {
        assert_eq!(store.task_claim(claim(512)).await.unwrap().tasks.len(), 512);
    })
    .await;
    assert!(reads.iter().all(|r| *r == 0), "rows read sequentially by each claim of 512: {reads:?}");
    // the plan the connection keeps: both updates (the discarded tasks, the claimed ones) read the rows
    // the claim locked where they lie, with no index to descend
    // (the text sought is split, so that this query, prepared too, does not find itself)
    let claims =
        "SELECT name FROM pg_prepared_statements WHERE strpos(statement, 'FROM picked WHERE ' || 'NOT exhausted') > 0";
    let names: Vec<String> = sqlx::query_scalar(claims).fetch_all(&pool).await.unwrap();
    assert!(!names.is_empty(), "the claim is prepared on the connection");
    for name in names {
        let explain = format!("EXPLAIN EXECUTE {name}(60000, 't', 'gone')");
        let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(explain)).fetch_all(&pool).await.unwrap();
        let tid_scans = plan.iter().filter(|line| line.contains("Tid Scan on tasks")).count();
        assert_eq!(tid_scans, 2, "the claim's plan:\n{}", plan.join("\n"));
    }
}

/// Retention deletes finished tasks in batches of 1,000; planned for that many among 50,000 tasks, the
/// deletion hashed a sequential scan of the whole table (each connection's first batches, planned for
/// their values). Every batch deletes the rows it locked where they lie, and reads no row sequentially.
#[tokio::test]
async fn retention_deletes_its_batches_in_place() {
    let db = TestDb::create().await;
    let (pool, store) = one_connection(&db).await;
    enqueued_and_analyzed(&db, TASKS).await;
    // on the one connection whose counts are read: its reads are then counted before the first batch
    let finish = "UPDATE leasehold.tasks SET state = 'completed', finalized_at = now() - interval '1 hour'
                   WHERE id IN (SELECT id FROM leasehold.tasks ORDER BY id LIMIT 20000)";
    sqlx::query(finish).execute(&pool).await.unwrap();
    sqlx::query("ANALYZE leasehold.tasks").execute(&pool).await.unwrap();
    let reads = reads_per_step(&pool, 7, async || {
        let pruned = store.task_prune(TaskPruneParams { older_than: Duration::from_secs(1), limit: 1_000 });
        assert_eq!(pruned.await.unwrap(), 1_000);
    })
    .await;
    assert!(reads.iter().all(|r| *r == 0), "rows read sequentially by each batch of 1,000: {reads:?}");
}

/// A claim reads the expired leases along the expiry index whatever the statistics say. Taken while
/// every running task's lease had expired, they count every running task as expired; a claim that sorted
/// all expired tasks in claim order was then planned as a sequential scan of the whole table, every time.
#[tokio::test]
async fn claims_read_expired_leases_by_index_when_the_statistics_say_every_lease_expired() {
    let db = TestDb::create().await;
    let (pool, store) = one_connection(&db).await;
    for sql in [
        "INSERT INTO leasehold.tasks (id, kind, queue, payload, max_attempts, run_at, state, attempt, fence, lease_expires_at)
         SELECT gen_random_uuid(), 'k', 'default', '{}', 3, now() - interval '1 minute' + g * interval '1 ms',
                'running', 1, g, now() - interval '1 hour' + g * interval '1 ms'
           FROM generate_series(1, 20000) AS g",
        "INSERT INTO leasehold.tasks (id, kind, queue, payload, max_attempts)
         SELECT gen_random_uuid(), 'k', 'default', '{}', 3 FROM generate_series(1, 2000)",
        "VACUUM ANALYZE leasehold.tasks",
        // the leases renewed since: none expired now
        "UPDATE leasehold.tasks SET lease_expires_at = now() + interval '1 hour' WHERE state = 'running'",
        "VACUUM leasehold.tasks",
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(db.pool()).await.unwrap();
    }
    let mut claimed = 0;
    let reads = reads_per_step(&pool, 7, async || {
        claimed += store.task_claim(claim(64)).await.unwrap().tasks.len();
    })
    .await;
    assert_eq!(claimed, 7 * 64, "the available tasks, no running one");
    assert!(reads.iter().all(|r| *r == 0), "rows read sequentially by each claim: {reads:?}");
}

/// A store on a pool of one connection, so that every statement runs where the earlier ones left their
/// plans (a statement's first five runs planned for their values, the later ones generically) and the
/// counts read are that connection's; with autovacuum off on the tasks table, since it would replan the
/// statements at a moment of its choosing.
async fn one_connection(db: &TestDb) -> (sqlx::PgPool, PgStore) {
    sqlx::query("ALTER TABLE leasehold.tasks SET (autovacuum_enabled = false)").execute(db.pool()).await.unwrap();
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(db.url()).await.unwrap();
    (pool.clone(), PgStore::from_pool(pool))
}

/// The rows sequential scans read from the tasks table in each of `steps` runs of `step`.
async fn reads_per_step(pool: &sqlx::PgPool, steps: usize, mut step: impl AsyncFnMut()) -> Vec<i64> {
    let mut reads = Vec::with_capacity(steps);
    let mut before = rows_read_sequentially(pool).await;
    for _ in 0..steps {
        step().await;
        let now = rows_read_sequentially(pool).await;
        reads.push(now - before);
        before = now;
    }
    reads
}

/// The rows sequential scans have read from the tasks table, with the counts of this pool's one
/// connection: asking for a flush makes it write them out when it next goes idle, before the next query.
async fn rows_read_sequentially(pool: &sqlx::PgPool) -> i64 {
    sqlx::query("SELECT pg_stat_force_next_flush()").execute(pool).await.unwrap();
    let sql = "SELECT seq_tup_read FROM pg_stat_user_tables WHERE relid = 'leasehold.tasks'::regclass";
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}
