//! How cost grows on SQLite (`--growth`): the phases of `growth.rs`, each on a fresh temporary file
//! (WAL, `synchronous = FULL`, as `SqliteStore::open` makes it).
//!
//! SQLite has neither dead tuples nor an MVCC horizon, so two readings differ from PostgreSQL's:
//! - After each phase: the database file's size, the WAL file's size and the size of the tasks table's
//!   indexes (SQLite's `dbstat` table). A deleted row's space is reused within its page or goes to
//!   the file's free list at once; what grows instead is the WAL, until a checkpoint copies it back.
//! - The pinned run holds a read transaction open on a second connection for the whole steady run.
//!   A checkpoint copies no page past the oldest reader's snapshot and cannot start the WAL over while
//!   that reader lasts, so the WAL grows through the run, and every read looks pages up in a longer
//!   WAL index: SQLite's counterpart of a pinned horizon.
//!
//! Backlogs are written straight into `leasehold_tasks` by one recursive `INSERT ... SELECT` (the
//! columns of `migrations/sqlite`, defaults for the rest), followed by `ANALYZE` and a checkpoint that
//! empties the WAL.

use std::path::{Path, PathBuf};
use std::time::Instant;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};

use leasehold::Job;
use leasehold::core::{DEFAULT_MAX_ATTEMPTS, DEFAULT_QUEUE};
use leasehold::sqlite::SqliteStore;

use crate::framework::Finished;
use crate::growth::{Names, SHORT_RETENTION, claim_latency, rows};
use crate::jobs::Noop;
use crate::report::{Figures, Section, Unit, thousands};
use crate::sqlite::{remove, temp_file};
use crate::timing::rate;
use crate::{Profile, Res, framework};

/// SQLite's growth figures.
const SQ: Names = Names("sqlite_growth");

/// What each phase reads after it: the figure's name, its label, its unit.
const AFTER: [(&str, &str, Unit); 3] = [
    ("file_bytes", "database file size", Unit::Bytes),
    ("wal_bytes", "WAL file size", Unit::Bytes),
    ("index_bytes", "index size", Unit::Bytes),
];

/// `?1` available no-op tasks of kind `?2`, queue `?3`, attempts `?4`, due in order over the past day;
/// ids are sequential, as time-ordered UUID v7 ids are.
const FILL: &str = "
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < ?1)
INSERT INTO leasehold_tasks (id, kind, queue, payload, max_attempts, run_at, created_at)
SELECT printf('00000000-0000-7000-8000-%012x', n), ?2, ?3, 'null', ?4,
       CAST(unixepoch('subsec') * 1000 AS INTEGER) - 86400000 + n, CAST(unixepoch('subsec') * 1000 AS INTEGER)
  FROM g";

/// Measures every backlog, the long runs with and without retention, then the pinned reader, each on
/// a fresh file; answers a line for the report.
pub(crate) async fn run(p: &Profile, backlogs: &[u64], figs: &mut Figures) -> Res<String> {
    let path = temp_file("growth");
    let outcome = phases(&path, p, backlogs, figs).await;
    remove(&path);
    outcome?;
    Ok(format!(
        "SQLite growth: backlogs {}; claims of 10 timed {} times per backlog; pinned by a read transaction",
        backlogs.iter().map(|n| thousands(*n as f64)).collect::<Vec<_>>().join(" and "),
        p.growth_claim_samples,
    ))
}

async fn phases(path: &Path, p: &Profile, backlogs: &[u64], figs: &mut Figures) -> Res<()> {
    for &n in backlogs {
        let backlog = thousands(n as f64);
        eprintln!("[sqlite growth] backlog of {backlog}: filling leasehold_tasks, then ANALYZE");
        let store = fresh(path).await?;
        let filled = Instant::now();
        fill(&store, n).await?;
        eprintln!("[sqlite growth] backlog of {backlog}: filled in {:.1?}; timing claims of 10", filled.elapsed());

        let (latency, claimed) = claim_latency(&store, p.growth_claim_samples).await?;
        figs.put(&SQ.claim_p50(n), latency.p50);
        figs.put(&SQ.claim_p99(n), latency.p99);

        eprintln!("[sqlite growth] backlog of {backlog}: a worker drains for up to {:?}", p.growth_drain);
        let (done, elapsed) =
            framework::drain_for(&store, n.saturating_sub(claimed), p.growth_drain, Finished::Kept).await?;
        figs.put(&SQ.drain(n), rate(done, elapsed));
        file_figures(&store, path, &format!("backlog_{n}"), figs).await?;
        store.close().await;
    }

    // a long steady run keeping every finished task, then the same pruning them after a second
    for (label, retention, key) in
        [("keep_all", None, SQ.long_keep()), ("retention", Some(SHORT_RETENTION), SQ.long_prune())]
    {
        eprintln!("[sqlite growth] long steady run for {:?}, {label}", p.growth_long);
        let store = fresh(path).await?;
        figs.put(&key, framework::steady_keeping(&store, retention, p.steady_warmup, p.growth_long).await?);
        file_figures(&store, path, &format!("long_{label}"), figs).await?;
        store.close().await;
    }

    eprintln!("[sqlite growth] steady worker with a producer for {:?}: baseline", p.growth_pinned);
    let store = fresh(path).await?;
    figs.put(&SQ.steady_baseline(), framework::steady(&store, p.steady_warmup, p.growth_pinned).await?);
    file_figures(&store, path, "horizon_baseline", figs).await?;
    store.close().await;

    eprintln!("[sqlite growth] the same while a read transaction on another connection lasts");
    let store = fresh(path).await?;
    let mut reader = SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path)).await?;
    sqlx::raw_sql("BEGIN").execute(&mut reader).await?;
    // the first read takes the transaction's snapshot, which it keeps until it ends
    let _: i64 = sqlx::query_scalar("SELECT count(*) FROM leasehold_tasks").fetch_one(&mut reader).await?;
    let pinned = framework::steady(&store, p.steady_warmup, p.growth_pinned).await;
    let sizes = file_figures(&store, path, "horizon_pinned", figs).await;
    // end the reader and close both whatever the run answered, then report the first failure
    let ended = sqlx::raw_sql("ROLLBACK").execute(&mut reader).await;
    let _ = reader.close().await;
    store.close().await;
    figs.put(&SQ.steady_pinned(), pinned?);
    sizes?;
    ended?;
    Ok(())
}

/// A store on a new, empty file at `path`.
async fn fresh(path: &Path) -> Res<SqliteStore> {
    remove(path);
    Ok(SqliteStore::open(path).await?)
}

/// Writes `n` available no-op tasks in one statement, analyzes the table and empties the WAL.
async fn fill(store: &SqliteStore, n: u64) -> Res<()> {
    sqlx::query(FILL)
        .bind(i64::try_from(n)?)
        .bind(Noop::KIND)
        .bind(DEFAULT_QUEUE)
        .bind(DEFAULT_MAX_ATTEMPTS)
        .execute(store.pool())
        .await?;
    sqlx::raw_sql("ANALYZE; PRAGMA wal_checkpoint(TRUNCATE);").execute(store.pool()).await?;
    Ok(())
}

/// Records the database file's and the WAL's sizes and the tasks table's index size after `phase`.
async fn file_figures(store: &SqliteStore, path: &Path, phase: &str, figs: &mut Figures) -> Res<()> {
    let file = std::fs::metadata(path)?.len();
    let wal = std::fs::metadata(wal_of(path)).map_or(0, |m| m.len());
    let indexes: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(pgsize), 0) FROM dbstat
          WHERE aggregate = TRUE
            AND name IN (SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'leasehold_tasks')",
    )
    .fetch_one(store.pool())
    .await?;
    for ((name, _, _), value) in AFTER.iter().zip([file as f64, wal as f64, indexes as f64]) {
        figs.put(&SQ.after(phase, name), value);
    }
    Ok(())
}

/// The WAL file beside the database file at `path`.
fn wal_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// SQLite's growth table, beside PostgreSQL's.
pub(crate) fn section(backlogs: &[u64]) -> Section {
    Section {
        title: "SQLite: how cost grows (one pass)".to_owned(),
        ours_column: "measured",
        limit_column: "baseline",
        rows: rows(SQ, backlogs, &AFTER, "a read transaction open / none"),
    }
}
