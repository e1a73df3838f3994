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
    let store = filled(&file).await;
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

    // a batch that answers one count runs the first or the second without its RETURNING (store.rs,
    // `counted`): the same reads of the table
    let statements = [
        ("task_complete_plain.sql", include_str!("../src/sql/task_complete_plain.sql"), &flat, None),
        ("task_complete_delete.sql", include_str!("../src/sql/task_complete_delete.sql"), &flat, None),
        ("task_complete.sql", include_str!("../src/sql/task_complete.sql"), &with_result, None),
        ("lease_renew.sql", include_str!("../src/sql/lease_renew.sql"), &with_ttl, None),
        ("task_release.sql", include_str!("../src/sql/task_release.sql"), &bare, Some("0")),
    ];
    for (name, sql, batch, second) in statements {
        let binds: Vec<&str> = [Some(batch.as_str()), second].into_iter().flatten().collect();
        let plan = plan_of(&store, sql, &binds).await;
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
    let store = filled(&file).await;
    for analyzed in [false, true] {
        if analyzed {
            sqlx::raw_sql("ANALYZE").execute(store.pool()).await.unwrap();
        }
        let plan = plan_of(&store, include_str!("../src/sql/task_claim_peek.sql"), &[r#"["other"]"#]).await;
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

/// The statements of one task, one idempotency key or one effect find it by its key's index once
/// `ANALYZE` has run, their bound values written `CAST(?n AS TEXT)` (see the next test).
#[tokio::test]
async fn single_key_statements_search_their_index_after_analyze() {
    let file = TestFile::create().await;
    let store = filled(&file).await;
    sqlx::raw_sql("ANALYZE").execute(store.pool()).await.unwrap();
    let by_id = "sqlite_autoindex_leasehold_tasks_1 (id=?)";
    let by_key = "leasehold_tasks_idempotency_key_idx (idempotency_key=?)";
    let by_effect = "sqlite_autoindex_leasehold_effects_1 (key=?)";
    let statements: [(&str, &str, &[&str]); 11] = [
        ("task_get.sql", include_str!("../src/sql/task_get.sql"), &[by_id]),
        ("task_cancel.sql", include_str!("../src/sql/task_cancel.sql"), &[by_id]),
        ("task_finish.sql", include_str!("../src/sql/task_finish.sql"), &[by_id]),
        ("task_retry.sql", include_str!("../src/sql/task_retry.sql"), &[by_id]),
        ("task_snooze.sql", include_str!("../src/sql/task_snooze.sql"), &[by_id]),
        ("task_by_key.sql", include_str!("../src/sql/task_by_key.sql"), &[by_id, by_key]),
        ("task_key_free.sql", include_str!("../src/sql/task_key_free.sql"), &[by_key]),
        ("effect_outcome.sql", include_str!("../src/sql/effect_outcome.sql"), &[by_effect]),
        ("effect_record.sql", include_str!("../src/sql/effect_record.sql"), &[by_effect]),
        ("effect_begin.sql", include_str!("../src/sql/effect_begin.sql"), &[by_id]),
        ("effect_holder.sql", include_str!("../src/sql/effect_holder.sql"), &[by_id]),
    ];
    for (name, sql, wanted) in statements {
        let params = (1..=9).rev().find(|n| sql.contains(&format!("?{n}"))).unwrap_or(0);
        let plan = plan_of(&store, sql, &vec!["x"; params]).await;
        for step in wanted {
            assert!(has(&plan, step), "{name} does not search {step}: {plan:#?}");
        }
        assert!(!reads_through(&plan), "{name} reads the tasks table through: {plan:#?}");
    }
    store.close().await;
}

/// No statement compares a key column with a bare bound value (`id = ?1`): once `ANALYZE` has run,
/// SQLite plans with such a value and prepares the statement again at every binding (a snooze took
/// about 10 us of SQLite's time before `ANALYZE` and 44 us after). `CAST(?1 AS TEXT)` is not a bare
/// value, and the key's index still serves it. Every statement file and every line of the store's
/// Rust sources is read (comments and test modules aside) for a key next to a bound value: `id = ?1`,
/// `?1 = id`, `id == ?1`, `id IN (?1)`, `id IS ?1`.
#[test]
fn no_statement_compares_a_key_with_a_bare_bound_value() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for dir in [src.clone(), src.join("sql")] {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "sql" || e == "rs") {
                files.push(path);
            }
        }
    }
    assert!(files.len() > 20, "the statements were found: {files:?}");
    let mut found = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        // a Rust file's own tests (at its end) quote plans, `(id=?)`, not statements
        for line in text.lines().take_while(|l| !l.starts_with("#[cfg(test)]")) {
            let trimmed = line.trim_start();
            if trimmed.starts_with("--") || trimmed.starts_with("//") {
                continue;
            }
            if bare_key_comparison(&tighten(line)) {
                found.push(format!("{}: {}", path.display(), line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "bare bound values compared with keys:\n{}", found.join("\n"));
    // the check itself: what it must find, and what it must let pass
    let bare = ["WHERE id = ?1", "WHERE t.id=?2", "AND ?1 = name", "WHERE key == ?1", "WHERE id IN (?1)", "name IS ?1"];
    for line in bare {
        assert!(bare_key_comparison(&tighten(line)), "{line}");
    }
    let fine = ["WHERE id = CAST(?1 AS TEXT)", "WHERE fence = ?2", "WHERE kind = ?1", "WHERE paid = ?1"];
    for line in fine {
        assert!(!bare_key_comparison(&tighten(line)), "{line}");
    }
}

/// A line lowercased, its spaces collapsed and taken out beside `=`, `(`, `)` and `?`: `id in(?1)`.
fn tighten(line: &str) -> String {
    let spaced: Vec<char> = line.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase().chars().collect();
    let tight = |c: Option<&char>| c.is_some_and(|c| "=()?".contains(*c));
    let kept = spaced.iter().enumerate().filter(|&(i, &c)| {
        c != ' ' || !(tight(i.checked_sub(1).and_then(|j| spaced.get(j))) || tight(spaced.get(i + 1)))
    });
    kept.map(|(_, c)| *c).collect()
}

/// Whether a tightened line compares a key column with a bare bound value.
fn bare_key_comparison(tight: &str) -> bool {
    const KEYS: [&str; 5] = ["idempotency_key", "id", "key", "name", "queue"];
    const OPS: [&str; 4] = ["==?", "=?", " in(?", " is?"];
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    KEYS.iter().any(|key| {
        tight.match_indices(key).any(|(at, _)| {
            let before = tight[..at].chars().next_back();
            let after = &tight[at + key.len()..];
            if before.is_some_and(ident) {
                return false;
            }
            // `col = ?n`, or `?n = col`
            let forward = OPS.iter().any(|op| after.starts_with(op));
            let backward = tight[..at].strip_suffix('=').is_some_and(|head| {
                let digits = head.trim_end_matches(|c: char| c.is_ascii_digit());
                digits.ends_with('?') && !after.starts_with(|c: char| ident(c))
            });
            forward || backward
        })
    })
}

/// A store on `file` holding [`TASKS`] available tasks.
async fn filled(file: &TestFile) -> SqliteStore {
    let store = SqliteStore::open(file.path()).await.unwrap();
    let tasks = (0..TASKS).map(|n| NewTask::new("k", json!({ "n": n }))).collect();
    store.task_insert_many(tasks).await.unwrap();
    store
}

/// The plan of `sql` with `binds` bound in order: EXPLAIN QUERY PLAN's `detail` column (a plan does not
/// depend on the types bound).
async fn plan_of(store: &SqliteStore, sql: &str, binds: &[&str]) -> Vec<String> {
    let explain = format!("EXPLAIN QUERY PLAN {sql}");
    let mut q = sqlx::query_as::<_, (i64, i64, i64, String)>(sqlx::AssertSqlSafe(explain));
    for value in binds {
        q = q.bind(*value);
    }
    q.fetch_all(store.pool()).await.unwrap().into_iter().map(|r| r.3).collect()
}
