//! The claim's picks as sent (`sql/task_claim.sql` with a branch of `sql/task_claim_available.sql` per
//! queue): its queues and limit written into the text as constants, its picks in one of two forms.

use std::sync::{Arc, LazyLock};

use leasehold_core::statements::KeptStatements;

/// The form of a claim's picks (see task_claim.sql).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Picks {
    /// Each pick's rowid alone: the claim's first read, and its only one unless it takes a lease over.
    Plain,
    /// Each pick as `[rowid, taken_over, exhausted]`: read again when the plain read found a pick taken
    /// over.
    Marked,
}

/// The picks of a claim of `queues` (each named once) and at most `limit` tasks, in the form `picks`:
/// task_claim.sql with one branch of task_claim_available.sql per queue, the queue names and the limit
/// written in as constants (see task_claim.sql for why). Written once per set of queues, limit and form
/// in the process, not on every claim: a worker has one set of queues and claims in a few sizes (powers
/// of two and halfway between, about a dozen; see [`KeptStatements`]). Each statement kept is also
/// prepared once on the store's write connection, whose cache sqlx bounds (100 by default): a process
/// claiming from more than a few sets of queues prepares some again.
pub(crate) fn claim_sql(queues: &[String], limit: u32, picks: Picks) -> Arc<str> {
    static WRITTEN: LazyLock<KeptStatements<(u32, Picks)>> = LazyLock::new(KeptStatements::new);
    WRITTEN.get_or_write((limit, picks), queues, || write(queues, limit, picks))
}

/// The text itself, as [`claim_sql`] describes it.
fn write(queues: &[String], limit: u32, picks: Picks) -> String {
    let constants: Vec<String> = queues.iter().map(|q| text_constant(q)).collect();
    let available: Vec<String> =
        constants.iter().map(|q| include_str!("sql/task_claim_available.sql").replace("{queue}", q)).collect();
    let listed = match picks {
        Picks::Plain => "json_group_array(rid ORDER BY priority, run_at, id)",
        Picks::Marked => "json_group_array(json_array(rid, taken_over, exhausted) ORDER BY priority, run_at, id)",
    };
    include_str!("sql/task_claim.sql")
        .replace("{available}", &available.join("    UNION ALL\n"))
        .replace("{queues}", &constants.join(", "))
        .replace("{limit}", &limit.to_string())
        .replace("{picks}", listed)
}

/// `name` as an SQL text constant: `char(...)` of its code points, in runs of [`CHAR_ARGS`] joined by
/// `||`. No name, whatever it holds (quotes, a NUL, the text of a placeholder), can end the constant or
/// change the statement around it, and SQLite converts the result to the file's text encoding (a blob
/// cast to text would be read in that encoding as it stands: wrong in a UTF-16 file).
fn text_constant(name: &str) -> String {
    let points: Vec<String> = name.chars().map(|c| u32::from(c).to_string()).collect();
    let runs: Vec<String> = points.chunks(CHAR_ARGS).map(|run| format!("char({})", run.join(", "))).collect();
    concatenated(&runs)
}

/// `parts` joined by `||` as a balanced tree, `(a || b) || (c || d)`: SQLite refuses an expression more
/// than 1,000 levels deep, which a flat chain of a long name's runs would reach. No parts (an empty
/// name) is the empty text.
fn concatenated(parts: &[String]) -> String {
    match parts {
        [] => "''".to_owned(),
        [one] => one.clone(),
        _ => {
            let (left, right) = parts.split_at(parts.len() / 2);
            format!("({} || {})", concatenated(left), concatenated(right))
        }
    }
}

/// Code points per `char(...)` call, below SQLite's oldest default limit on a function's arguments (127).
const CHAR_ARGS: usize = 100;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use leasehold_core::{NewTask, TaskClaimParams, TaskStore};
    use leasehold_testkit::sqlite::TestFile;
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{Connection, SqliteConnection};

    use super::{Picks, claim_sql};
    use crate::SqliteStore;

    /// Every read of the claim follows its index as a range: each queue's available tasks from the
    /// queue's first entry, the expired leases up to SQLite's clock; its update and its answer find each
    /// pick by rowid. A read that scans (a comparison
    /// the planner cannot bound) costs every claim one index entry per waiting or running task. The
    /// same with statistics, taken while 2,000 tasks waited (as an application's `ANALYZE` may).
    #[tokio::test]
    async fn the_claims_reads_are_index_ranges() {
        let file = TestFile::create().await;
        let store = SqliteStore::open(file.path()).await.unwrap();
        for analyzed in [false, true] {
            if analyzed {
                let tasks = (0..2_000).map(|n| NewTask::new("k", serde_json::json!({ "n": n }))).collect();
                store.task_insert_many(tasks).await.unwrap();
                sqlx::raw_sql("ANALYZE").execute(store.pool()).await.unwrap();
            }
            for (queues, picks) in (1..=3).flat_map(|n| [(n, Picks::Plain), (n, Picks::Marked)]) {
                let plan = explain(&store, queues, picks).await;
                let available = plan.iter().filter(|d| d.contains("leasehold_tasks_available_idx (queue=?)")).count();
                assert_eq!(available, queues, "analyzed: {analyzed}: {plan:#?}");
                assert!(
                    plan.iter().any(|d| d.contains("leasehold_tasks_lease_expiry_idx (lease_expires_at<?)")),
                    "analyzed: {analyzed}: {plan:#?}"
                );
                assert!(!plan.iter().any(|d| d == "SCAN t" || d.starts_with("SCAN t ")), "{plan:#?}");
            }
            // the updates and the answers find each pick by its rowid
            let marked = [include_str!("sql/task_claim_update.sql"), include_str!("sql/task_claim_answer.sql")];
            let plain =
                [include_str!("sql/task_claim_update_plain.sql"), include_str!("sql/task_claim_answer_plain.sql")];
            let forms = marked.map(|sql| (sql, Picks::Marked)).into_iter().chain(plain.map(|sql| (sql, Picks::Plain)));
            for (sql, picks) in forms {
                let plan = plan_of(&store, sql, picks).await;
                assert!(plan.iter().any(|d| d.contains("SEARCH t USING INTEGER PRIMARY KEY (rowid=?)")), "{plan:#?}");
                assert!(!plan.iter().any(|d| d.starts_with("SCAN t")), "analyzed: {analyzed}: {plan:#?}");
            }
        }
        store.close().await;
    }

    /// The claim's limit and queues are part of its text, never bound values: SQLite re-plans a
    /// statement whenever a value it planned with is bound anew, and it plans with a bound LIMIT (and,
    /// once `ANALYZE` has run, with a value bound for an indexed column), so binding them would make
    /// every claim parse and plan the whole statement again. Each shape is written once and kept.
    #[test]
    fn the_claims_limit_and_queues_are_written_into_its_text() {
        for n in 1..=3 {
            let queues: Vec<String> = (0..n).map(|i| format!("q{i}")).collect();
            for (limit, picks) in [1, 12, 100, 384].into_iter().flat_map(|l| [(l, Picks::Plain), (l, Picks::Marked)]) {
                let sql = claim_sql(&queues, limit, picks);
                let code: String = sql.lines().filter(|l| !l.trim_start().starts_with("--")).collect();
                assert!(!code.contains("LIMIT ?") && !code.contains("?4"), "{sql}");
                assert!(!code.contains('{'), "a placeholder left in the text: {sql}");
                assert_eq!(code.matches(&format!("LIMIT {limit}")).count(), n + 2, "{sql}");
                // "q0" is code points 113 and 48: once in its queue's branch, once among the expired leases' queues
                assert_eq!(code.matches("char(113, 48)").count(), 2, "{sql}");
                assert_eq!(code.contains("json_array(rid, taken_over, exhausted)"), picks == Picks::Marked, "{sql}");
                assert!(std::sync::Arc::ptr_eq(&sql, &claim_sql(&queues, limit, picks)), "written once per shape");
            }
        }
    }

    /// A queue's name is written into the claim as `char(...)` of its code points (the conformance case
    /// `any_queue_name_is_claimed` covers quotes and placeholders): names longer than one run of
    /// `char(...)`, the longest name accepted, a code point beyond U+FFFF (a surrogate
    /// pair in UTF-16), each claims its own tasks, in a file whose text is UTF-8 and in one whose text
    /// is UTF-16. A claim may name a queue longer than a task may have now, and than SQLite's depth of
    /// expressions allows in a flat chain of runs, or one holding a NUL (which an enqueue refuses now): it
    /// claims the tasks an older leasehold took there.
    #[tokio::test]
    async fn queue_names_are_claimed_in_either_text_encoding() {
        let names = [
            "q".repeat(250) + "é",
            "é".repeat(leasehold_core::MAX_NAME_LEN / 2),
            "ünïcode ✓ 🦀".to_owned(),
            "plain".to_owned(),
        ];
        // 150,000 characters: 1,500 runs of `char(...)`, eleven levels deep once balanced
        let unclaimed = "q".repeat(150_000);
        for encoding in ["UTF-8", "UTF-16le"] {
            let name = format!("leasehold-encoding-{}-{encoding}.sqlite", std::process::id());
            let path = std::env::temp_dir().join(name);
            // an application's file: its encoding is set before its first table
            let opts = SqliteConnectOptions::new().filename(&path).create_if_missing(true);
            let mut app = SqliteConnection::connect_with(&opts).await.unwrap();
            let setup = format!("PRAGMA encoding = '{encoding}'; CREATE TABLE app (x INTEGER);");
            sqlx::raw_sql(sqlx::AssertSqlSafe(setup)).execute(&mut app).await.unwrap();
            app.close().await.unwrap();

            let store = SqliteStore::open(&path).await.unwrap();
            let used: String = sqlx::query_scalar("PRAGMA encoding").fetch_one(store.pool()).await.unwrap();
            assert_eq!(used, encoding);
            for name in &names {
                let task = NewTask { queue: name.clone(), ..NewTask::new("k", serde_json::json!({ "q": name })) };
                store.task_insert(task).await.unwrap();
            }
            let claim = |queue: &String| TaskClaimParams {
                queues: vec![queue.clone()],
                limit: 10,
                default_lease_ttl: Duration::from_secs(30),
                worker_id: "w".into(),
            };
            for name in &names {
                let tasks = store.task_claim(claim(name)).await.unwrap().tasks;
                assert_eq!(tasks.len(), 1, "{encoding}: a name of {} characters", name.chars().count());
                assert!(&tasks[0].queue == name && tasks[0].payload == serde_json::json!({ "q": name }));
            }
            // a task in such a queue, or in one whose name holds a NUL, as an older leasehold took it (both
            // names are refused now), is claimed
            for older in [&unclaimed, &"a\0b".to_owned()] {
                sqlx::query(
                    "INSERT INTO leasehold_tasks (id, kind, queue, payload, run_at, max_attempts, created_at)
                     VALUES (?1, 'k', ?2, '{}', 0, 1, 0)",
                )
                .bind(leasehold_core::TaskId::new().0.to_string())
                .bind(older)
                .execute(store.pool())
                .await
                .unwrap();
                let tasks = store.task_claim(claim(older)).await.unwrap().tasks;
                assert!(tasks.len() == 1 && &tasks[0].queue == older, "{encoding}: {older:?}");
            }
            store.close().await;
            for suffix in ["", "-wal", "-shm"] {
                let mut file = path.clone().into_os_string();
                file.push(suffix);
                let _ = std::fs::remove_file(file);
            }
        }
    }

    /// The plan of the claim's picks in the form `picks`: the `detail` column of EXPLAIN QUERY PLAN (id,
    /// parent, notused, detail).
    async fn explain(store: &SqliteStore, queues: usize, picks: Picks) -> Vec<String> {
        let names: Vec<String> = (0..queues).map(|i| format!("q{i}")).collect();
        plan_of(store, &claim_sql(&names, 10, picks), picks).await
    }

    /// The plan of `sql`, with picks of two tasks in the form `picks` bound where it takes them.
    async fn plan_of(store: &SqliteStore, sql: &str, picks: Picks) -> Vec<String> {
        let explain = format!("EXPLAIN QUERY PLAN {sql}");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(explain));
        if sql.contains("?1") {
            let bound = match picks {
                Picks::Plain => "[1, 2]",
                Picks::Marked => "[[1, 0, 0], [2, 1, 0]]",
            };
            q = q.bind(bound).bind(30_000);
        }
        if sql.contains("?3") {
            q = q.bind("w");
        }
        if sql.contains("?4") {
            q = q.bind("lost");
        }
        let rows = q.fetch_all(store.pool()).await.unwrap();
        rows.iter().map(|r| sqlx::Row::get::<String, _>(r, 3)).collect()
    }
}
