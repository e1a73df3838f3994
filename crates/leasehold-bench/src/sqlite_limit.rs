//! SQLite's own limit, measured beside leasehold's SQLite store: a minimal jobs table and a lease
//! table on a temporary file of their own, driven directly through sqlx with the fewest, plainest
//! statements that do the work. Every write is its own transaction, or its own `BEGIN IMMEDIATE`
//! transaction where it reads before it writes (SQLite's way of taking the write lock up front), on a
//! file in WAL mode with `synchronous = FULL`, as leasehold opens its own.

use std::path::Path;
use std::time::{Duration, Instant};

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection, SqlitePool};
use tokio::sync::mpsc;

use crate::loops::{steady_steps, timed_steps};
use crate::timing::{Percentiles, ms, rate};
use crate::{BoxError, CHUNK, LATENCY_GAP, LATENCY_WARMUP, LEASE_KEYS, Res, SAMPLE_TIMEOUT};

/// The limit's minimal jobs table, in SQLite's terms (times in ms since the epoch).
/// state: 0 = available, 1 = running, 2 = completed. It and the drain's two statements live in
/// `sql/sqlite_limit/`, where `scripts/sqlite_statements.py` reads them too.
pub(crate) const SCHEMA: &str = include_str!("sql/sqlite_limit/schema.sql");

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
const CLAIM_HUNDRED: &str = include_str!("sql/sqlite_limit/claim_hundred.sql");

/// Claim one due job with a lease (the floor's claim), in a `BEGIN IMMEDIATE` transaction.
const CLAIM_ONE: &str = "
UPDATE jobs SET state = 1, attempt = attempt + 1,
       lease_expires_at = CAST(unixepoch('subsec') * 1000 AS INTEGER) + 30000
 WHERE id = (SELECT id FROM jobs
              WHERE state = 0 AND run_at <= CAST(unixepoch('subsec') * 1000 AS INTEGER)
              ORDER BY run_at, id LIMIT 1)
RETURNING id";

/// ...then complete it.
const COMPLETE_ONE: &str = "UPDATE jobs SET state = 2, lease_expires_at = NULL WHERE id = ?1 AND state = 1";

/// ...then complete them in another (`?1` is a JSON array of ids).
const COMPLETE_MANY: &str = include_str!("sql/sqlite_limit/complete_many.sql");

/// A lease row's token: the next value of a one-row counter (SQLite has no sequences), in the
/// acquiring transaction.
const LEASE_TOKEN: &str = "UPDATE lease_seq SET n = n + 1 WHERE id = 1 RETURNING n";

/// Take the lease `?1` if it is free or expired, with the token `?2`; answers the token, or no row
/// when another holds it.
const LEASE_ACQUIRE: &str = "
INSERT INTO leases AS l (key, token, owner, expires_at)
VALUES (?1, ?2, 'w', CAST(unixepoch('subsec') * 1000 AS INTEGER) + 30000)
ON CONFLICT (key) DO UPDATE
   SET token = excluded.token, owner = excluded.owner, expires_at = excluded.expires_at
 WHERE l.expires_at < CAST(unixepoch('subsec') * 1000 AS INTEGER)
RETURNING token";

/// Release the lease, fenced by its token.
const LEASE_RELEASE: &str = "DELETE FROM leases WHERE key = ?1 AND token = ?2";

/// The limit's pool, opened as leasehold opens its own file: WAL, `synchronous = FULL`, a busy timeout.
pub(crate) async fn pool(path: &Path) -> Res<SqlitePool> {
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10));
    Ok(SqlitePoolOptions::new().max_connections(2).connect_with(opts).await?)
}

/// `total` rows in INSERTs of 1,000 rows each; rows/s.
pub(crate) async fn insert_batches(pool: &SqlitePool, total: u64) -> Res<f64> {
    let mut conn = pool.acquire().await?;
    let statements = total.div_ceil(CHUNK);
    let started = Instant::now();
    for _ in 0..statements {
        sqlx::query(INSERT_CHUNK).execute(&mut *conn).await?;
    }
    Ok(rate(statements * CHUNK, started.elapsed()))
}

/// Single-row INSERTs by one client for `run_for`; rows/s.
pub(crate) async fn insert_single(pool: &SqlitePool, run_for: Duration) -> Res<f64> {
    timed_steps(pool, 1, run_for, |conn| Box::pin(insert_one(conn))).await
}

/// One single-row INSERT; answers 1.
async fn insert_one(conn: &mut SqliteConnection) -> Res<u64> {
    sqlx::query_scalar::<_, i64>(INSERT_ONE).fetch_one(&mut *conn).await?;
    Ok(1)
}

/// Claim 100 + complete by `clients` clients until nothing is left or `run_for` passed; jobs/s.
pub(crate) async fn claim(pool: &SqlitePool, clients: usize, run_for: Duration) -> Res<f64> {
    timed_steps(pool, clients, run_for, |conn| Box::pin(claim_complete(conn))).await
}

/// Claim 100 + complete by one client while a producer on another connection inserts chunks of 1,000
/// whenever fewer than [`STEADY_MAX_BACKLOG`] wait; completed jobs/s over `measure`, after `warmup`.
pub(crate) async fn steady(pool: &SqlitePool, warmup: Duration, measure: Duration) -> Res<f64> {
    steady_steps(pool, 1, warmup, measure, |conn| Box::pin(claim_complete(conn)), |conn| Box::pin(insert_chunk(conn)))
        .await
}

/// One INSERT of [`CHUNK`] rows; answers the rows.
async fn insert_chunk(conn: &mut SqliteConnection) -> Res<u64> {
    sqlx::query(INSERT_CHUNK).execute(&mut *conn).await?;
    Ok(CHUNK)
}

/// The floor of a wake-up inside one process (SQLite has no LISTEN/NOTIFY; leasehold's SQLite store
/// wakes its workers in-process): one connection inserts a job, then signals a waiting claimer over a
/// channel; the claimer claims one job on its own connection. Latency from before the insert was sent
/// to the claim's answer, in ms.
pub(crate) async fn signal_floor(pool: &SqlitePool, samples: usize) -> Res<Percentiles> {
    let (signal, mut signals) = mpsc::unbounded_channel::<()>();
    let (claimed_tx, mut claimed) = mpsc::unbounded_channel();
    let mut claimer_conn = pool.acquire().await?;
    let claimer = tokio::spawn(async move {
        while signals.recv().await.is_some() {
            let mut tx = claimer_conn.begin_with("BEGIN IMMEDIATE").await?;
            let id = sqlx::query_scalar::<_, i64>(CLAIM_ONE).fetch_optional(&mut *tx).await?;
            tx.commit().await?;
            let at = Instant::now();
            if let Some(id) = id {
                if claimed_tx.send(at).is_err() {
                    break;
                }
                sqlx::query(COMPLETE_ONE).bind(id).execute(&mut *claimer_conn).await?;
            }
        }
        Ok::<_, BoxError>(())
    });

    let mut conn = pool.acquire().await?;
    let mut out = Vec::with_capacity(samples);
    for i in 0..LATENCY_WARMUP + samples {
        let sent = Instant::now();
        sqlx::query_scalar::<_, i64>(INSERT_ONE).fetch_one(&mut *conn).await?;
        signal.send(()).map_err(|_| "the signalled claimer stopped")?;
        let Some(at) = tokio::time::timeout(SAMPLE_TIMEOUT, claimed.recv()).await? else {
            return Err(match claimer.await {
                Ok(Err(e)) => e,
                _ => "the signalled claimer stopped".into(),
            });
        };
        if i >= LATENCY_WARMUP {
            out.push(ms(at.saturating_duration_since(sent)));
        }
        tokio::time::sleep(LATENCY_GAP).await;
    }
    drop(signal);
    claimer.await??;
    Ok(Percentiles::of(out))
}

/// Lease row acquire (the token counter and the upsert in one `BEGIN IMMEDIATE` transaction) + release
/// pairs on random keys, one client; pairs/s.
pub(crate) async fn lease_pairs(pool: &SqlitePool, run_for: Duration) -> Res<f64> {
    timed_steps(pool, 1, run_for, |conn| Box::pin(lease_pair(conn))).await
}

/// One lease row acquire on a random key (the counter's next token and the upsert in one `BEGIN
/// IMMEDIATE`), then its fenced release when it was taken; answers 1.
async fn lease_pair(conn: &mut SqliteConnection) -> Res<u64> {
    let key = format!("k{}", rand::random_range(1..=LEASE_KEYS));
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let next = sqlx::query_scalar::<_, i64>(LEASE_TOKEN).fetch_one(&mut *tx).await?;
    let token = sqlx::query_scalar::<_, i64>(LEASE_ACQUIRE).bind(&key).bind(next).fetch_optional(&mut *tx).await?;
    tx.commit().await?;
    if let Some(token) = token {
        sqlx::query(LEASE_RELEASE).bind(&key).bind(token).execute(&mut *conn).await?;
    }
    Ok(1)
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
