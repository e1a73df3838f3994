//! SQLite: leasehold on a temporary file, against SQLite's own limit measured in the same run on
//! another temporary file: a minimal jobs table driven through sqlx with the claim-100-and-complete
//! statements, the claim and the completion each in its own `BEGIN IMMEDIATE` transaction. Both files
//! use WAL with `synchronous = FULL`, leasehold's default, so every commit is durable.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection, SqlitePool};

use leasehold::sqlite::SqliteStore;

use crate::report::{Figures, key};
use crate::timing::{rate, timed};
use crate::{BoxError, CHUNK, Profile, Res, SQLITE_CLIENTS, TIMEOUT, framework};

/// The limit's minimal jobs table, in SQLite's terms (times in ms since the epoch).
/// state: 0 = available, 1 = running, 2 = completed.
const SCHEMA: &str = "
CREATE TABLE jobs (
  id               INTEGER PRIMARY KEY,
  queue            TEXT    NOT NULL DEFAULT 'default',
  state            INTEGER NOT NULL DEFAULT 0,
  run_at           INTEGER NOT NULL,
  lease_expires_at INTEGER,
  attempt          INTEGER NOT NULL DEFAULT 0,
  payload          TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX jobs_available_idx ON jobs (run_at, id) WHERE state = 0;";

/// One row, its own transaction.
const INSERT_ONE: &str = r#"
INSERT INTO jobs (queue, run_at, payload)
VALUES ('default', CAST(unixepoch('subsec') * 1000 AS INTEGER), '{"k": 1}')
RETURNING id"#;

/// 1,000 rows (= [`CHUNK`]) in one statement.
const INSERT_CHUNK: &str = r#"
WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 1000)
INSERT INTO jobs (queue, run_at, payload)
SELECT 'default', CAST(unixepoch('subsec') * 1000 AS INTEGER), '{"k": 1}' FROM s"#;

/// Claim 100 due jobs with a lease, in a `BEGIN IMMEDIATE` transaction...
const CLAIM_HUNDRED: &str = "
UPDATE jobs SET state = 1, attempt = attempt + 1,
       lease_expires_at = CAST(unixepoch('subsec') * 1000 AS INTEGER) + 30000
 WHERE id IN (SELECT id FROM jobs
               WHERE state = 0 AND run_at <= CAST(unixepoch('subsec') * 1000 AS INTEGER)
               ORDER BY run_at, id LIMIT 100)
RETURNING id";

/// ...then complete them in another (`?1` is a JSON array of ids).
const COMPLETE_MANY: &str =
    "UPDATE jobs SET state = 2, lease_expires_at = NULL WHERE id IN (SELECT value FROM json_each(?1)) AND state = 1";

/// Every pass on fresh files: SQLite's limit, then leasehold, step by step. Answers a line about the
/// SQLite library for the report.
pub(crate) async fn run(p: &Profile, figs: &mut Figures) -> Res<String> {
    let raw_path = temp_file("limit");
    let lh_path = temp_file("leasehold");
    let mut version = String::new();
    for pass in 1..=p.passes {
        let step = |what: &str| eprintln!("[sqlite pass {pass}/{}] {what}", p.passes);
        remove(&raw_path);
        remove(&lh_path);

        let raw = raw_pool(&raw_path).await?;
        sqlx::raw_sql(SCHEMA).execute(&raw).await?;
        version = sqlx::query_scalar("SELECT sqlite_version()").fetch_one(&raw).await?;
        let store = SqliteStore::open(&lh_path).await?;

        step("limit: INSERT of 1,000 rows per statement, then claim 100 + complete until empty");
        figs.put(key::SQ_RAW_BATCH, insert_batches(&raw, p.sqlite_drain_tasks).await?);
        figs.put(key::SQ_RAW_DRAIN, claim(&raw, SQLITE_CLIENTS, TIMEOUT).await?);
        step("leasehold: enqueue_many in chunks of 1,000, then a worker drains them");
        figs.put(key::SQ_LH_BATCH, framework::batch_enqueue(&store, p.sqlite_drain_tasks).await?);
        figs.put(key::SQ_LH_DRAIN, framework::drain(&store, p.sqlite_drain_tasks).await?);

        step("limit: single-row INSERT, 1 client");
        figs.put(key::SQ_RAW_INSERT_1, insert_single(&raw, p.phase).await?);
        step("leasehold: Client::enqueue, 1 client");
        figs.put(key::SQ_LH_ENQUEUE_1, framework::single_enqueue(&store, 1, p.phase).await?);

        raw.close().await;
        store.pool().close().await;
    }
    remove(&raw_path);
    remove(&lh_path);
    Ok(format!("SQLite {version}: WAL, synchronous=FULL, on {}", std::env::temp_dir().display()))
}

/// `--drain-only N --sqlite-only`: five rounds of leasehold's drain of `N` tasks and the limit's drain of
/// as many, each on a fresh file, with the CPU both took.
pub(crate) async fn drain_only(n: u64) -> Res<()> {
    let raw_path = temp_file("limit");
    let lh_path = temp_file("leasehold");
    for round in 1..=5 {
        remove(&lh_path);
        let store = SqliteStore::open(&lh_path).await?;
        framework::batch_enqueue(&store, n).await?;
        let (ours, cpu) = crate::with_cpu(n, framework::drain(&store, n)).await?;
        println!("drain {round}: {ours:.0} jobs/s{cpu}");
        store.pool().close().await;
        remove(&raw_path);
        let raw = raw_pool(&raw_path).await?;
        sqlx::raw_sql(SCHEMA).execute(&raw).await?;
        insert_batches(&raw, n).await?;
        let (limit, cpu) = crate::with_cpu(n, claim(&raw, SQLITE_CLIENTS, TIMEOUT)).await?;
        println!("  limit: claim 100 + complete of as many, 1 client: {limit:.0} jobs/s{cpu}");
        raw.close().await;
    }
    remove(&raw_path);
    remove(&lh_path);
    Ok(())
}

/// A temporary database file of this process.
fn temp_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("leasehold-bench-{}-{name}.sqlite", std::process::id()))
}

/// Removes a database file with its WAL and shared-memory files.
fn remove(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut name = OsString::from(path.as_os_str());
        name.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(name));
    }
}

/// The limit's pool, opened as leasehold opens its own file: WAL, `synchronous = FULL`, a busy timeout.
async fn raw_pool(path: &Path) -> Res<SqlitePool> {
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10));
    Ok(SqlitePoolOptions::new().max_connections(2).connect_with(opts).await?)
}

/// `total` rows in INSERTs of 1,000 rows each; rows/s.
async fn insert_batches(pool: &SqlitePool, total: u64) -> Res<f64> {
    let mut conn = pool.acquire().await?;
    let statements = total.div_ceil(CHUNK);
    let started = Instant::now();
    for _ in 0..statements {
        sqlx::query(INSERT_CHUNK).execute(&mut *conn).await?;
    }
    Ok(rate(statements * CHUNK, started.elapsed()))
}

/// Single-row INSERTs by one client for `run_for`; rows/s.
async fn insert_single(pool: &SqlitePool, run_for: Duration) -> Res<f64> {
    timed(1, run_for, |gate| {
        let pool = pool.clone();
        async move {
            let conn = pool.acquire().await;
            let deadline = gate.start().await;
            let mut conn = conn?;
            let mut rows = 0u64;
            while Instant::now() < deadline {
                sqlx::query_scalar::<_, i64>(INSERT_ONE).fetch_one(&mut *conn).await?;
                rows += 1;
            }
            Ok::<_, BoxError>(rows)
        }
    })
    .await
}

/// Claim 100 + complete by `clients` clients until nothing is left or `run_for` passed; jobs/s.
async fn claim(pool: &SqlitePool, clients: usize, run_for: Duration) -> Res<f64> {
    timed(clients, run_for, |gate| {
        let pool = pool.clone();
        async move {
            let conn = pool.acquire().await;
            let deadline = gate.start().await;
            let mut conn = conn?;
            let mut jobs = 0u64;
            while Instant::now() < deadline {
                let n = claim_complete(&mut conn).await?;
                if n == 0 {
                    break;
                }
                jobs += n;
            }
            Ok::<_, BoxError>(jobs)
        }
    })
    .await
}

/// One claim of 100 (committed), then the completion of what it claimed (committed).
async fn claim_complete(conn: &mut SqliteConnection) -> Res<u64> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let ids: Vec<i64> = sqlx::query_scalar(CLAIM_HUNDRED).fetch_all(&mut *tx).await?;
    tx.commit().await?;
    if ids.is_empty() {
        return Ok(0);
    }
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query(COMPLETE_MANY).bind(serde_json::to_string(&ids)?).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(ids.len() as u64)
}
