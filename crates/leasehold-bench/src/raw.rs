//! The raw SQL limit on PostgreSQL: a minimal `jobs` table (with a partial index on available jobs) and
//! a `leases` table, in a scratch schema `bench_raw`, driven directly through sqlx with the fewest, plainest
//! statements that do the work (the same ones a pgbench script of the limit runs). Every statement is
//! its own transaction (autocommit), committed with the server's own durability settings; each client
//! holds one connection, as a pgbench client does.

use std::time::{Duration, Instant};

use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool};
use tokio::sync::mpsc;

use crate::loops::{steady_steps, timed_steps};
use crate::timing::{Percentiles, ms, rate};
use crate::{CHUNK, LATENCY_GAP, LATENCY_WARMUP, LEASE_KEYS, Res, SAMPLE_TIMEOUT, db};

/// The limit's jobs table, as the set-up and the figures that read its size name it.
pub(crate) const JOBS: &str = "bench_raw.jobs";

/// The limit's tables, in the schema `bench_raw`.
const SCHEMA: &str = r#"
CREATE SCHEMA IF NOT EXISTS bench_raw;
-- state: 0 = available, 1 = running, 2 = completed
DROP TABLE IF EXISTS bench_raw.jobs;
CREATE TABLE bench_raw.jobs (
  id               bigserial PRIMARY KEY,
  queue            text        NOT NULL DEFAULT 'default',
  state            smallint    NOT NULL DEFAULT 0,
  run_at           timestamptz NOT NULL DEFAULT now(),
  lease_expires_at timestamptz,
  attempt          int         NOT NULL DEFAULT 0,
  payload          jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX jobs_available_idx ON bench_raw.jobs (run_at, id) WHERE state = 0;
DROP TABLE IF EXISTS bench_raw.leases;
CREATE TABLE bench_raw.leases (
  key        text        PRIMARY KEY,
  token      bigint      NOT NULL,
  owner      text        NOT NULL,
  expires_at timestamptz NOT NULL
);
DROP SEQUENCE IF EXISTS bench_raw.lease_token_seq;
CREATE SEQUENCE bench_raw.lease_token_seq;
"#;

/// Single-row enqueue, one transaction per job.
const INSERT_ONE: &str = r#"INSERT INTO bench_raw.jobs (queue, payload) VALUES ('default', '{"k": 1}') RETURNING id"#;

/// Batch enqueue: 1,000 jobs (= [`CHUNK`]) in one `INSERT ... SELECT`, one transaction.
const INSERT_CHUNK: &str =
    r#"INSERT INTO bench_raw.jobs (queue, payload) SELECT 'default', '{"k": 1}' FROM generate_series(1, 1000)"#;

/// Fills the table with `$1` available jobs in one statement (set-up, not measured).
const FILL: &str =
    r#"INSERT INTO bench_raw.jobs (queue, payload) SELECT 'default', '{"k": 1}' FROM generate_series(1, $1::bigint)"#;

/// The same, due a minute ago (the limit's claim runs start from such a table).
const FILL_DUE: &str = r#"INSERT INTO bench_raw.jobs (queue, payload, run_at)
SELECT 'default', '{"k": 1}', now() - interval '1 minute' FROM generate_series(1, $1::bigint)"#;

/// Claim one job with a lease (one transaction)...
const CLAIM_ONE: &str = "
UPDATE bench_raw.jobs SET state = 1, lease_expires_at = now() + interval '30 seconds', attempt = attempt + 1
 WHERE id = (SELECT id FROM bench_raw.jobs WHERE state = 0 AND run_at <= now()
             ORDER BY run_at, id FOR UPDATE SKIP LOCKED LIMIT 1)
 RETURNING id";

/// ...then complete it (another transaction).
const COMPLETE_ONE: &str = "UPDATE bench_raw.jobs SET state = 2, lease_expires_at = NULL WHERE id = $1 AND state = 1";

/// Claim 10 jobs in one statement...
const CLAIM_TEN: &str = "
WITH c AS (
  SELECT id FROM bench_raw.jobs WHERE state = 0 AND run_at <= now()
   ORDER BY run_at, id FOR UPDATE SKIP LOCKED LIMIT 10
), u AS (
  UPDATE bench_raw.jobs j SET state = 1, lease_expires_at = now() + interval '30 seconds', attempt = j.attempt + 1
    FROM c WHERE j.id = c.id
  RETURNING j.id
)
SELECT array_agg(id) FROM u";

/// Claim 100 jobs in one statement...
const CLAIM_HUNDRED: &str = "
WITH c AS (
  SELECT id FROM bench_raw.jobs WHERE state = 0 AND run_at <= now()
   ORDER BY run_at, id FOR UPDATE SKIP LOCKED LIMIT 100
), u AS (
  UPDATE bench_raw.jobs j SET state = 1, lease_expires_at = now() + interval '30 seconds', attempt = j.attempt + 1
    FROM c WHERE j.id = c.id
  RETURNING j.id
)
SELECT array_agg(id) FROM u";

/// ...then complete them with one statement.
const COMPLETE_MANY: &str =
    "UPDATE bench_raw.jobs SET state = 2, lease_expires_at = NULL WHERE id = ANY($1) AND state = 1";

/// The LISTEN/NOTIFY floor: insert a job and notify in one statement, one transaction.
const INSERT_NOTIFY: &str = r#"
WITH i AS (INSERT INTO bench_raw.jobs (queue, payload) VALUES ('default', '{"k": 1}') RETURNING id)
SELECT pg_notify('bench_raw_available', id::text) FROM i"#;

/// The channel of the floor.
const CHANNEL: &str = "bench_raw_available";

/// Lease row: acquire (insert, or take over an expired lease) with a fencing token...
const LEASE_ACQUIRE: &str = "
WITH a AS (
  INSERT INTO bench_raw.leases AS l (key, token, owner, expires_at)
  VALUES ($1, nextval('bench_raw.lease_token_seq'), 'w', now() + interval '30 seconds')
  ON CONFLICT (key) DO UPDATE
     SET token = EXCLUDED.token, owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
   WHERE l.expires_at < now()
  RETURNING token
)
SELECT coalesce((SELECT token FROM a), 0) AS token";

/// ...then release it, fenced by the token.
const LEASE_RELEASE: &str = "DELETE FROM bench_raw.leases WHERE key = $1 AND token = $2";

/// The claim sizes of the limit.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Claim {
    /// One job per claim.
    One,
    /// 10 jobs per claim.
    Ten,
    /// 100 jobs per claim.
    Hundred,
}

/// Creates the scratch schema and its tables.
pub(crate) async fn setup(pool: &PgPool) -> Res<()> {
    sqlx::raw_sql(SCHEMA).execute(pool).await?;
    Ok(())
}

/// Empties the jobs table.
pub(crate) async fn reset(pool: &PgPool) -> Res<()> {
    sqlx::query("TRUNCATE bench_raw.jobs").execute(pool).await?;
    Ok(())
}

/// Puts `n` available jobs in the table and gathers its statistics (set-up; see [`db::analyze`]).
pub(crate) async fn fill(pool: &PgPool, n: u64) -> Res<()> {
    sqlx::query(FILL).bind(i64::try_from(n)?).execute(pool).await?;
    db::analyze(pool, JOBS).await
}

/// Puts `n` available jobs, due a minute ago, in the table and vacuums it, as the limit's pgbench
/// scripts start their claim runs (set-up, not measured).
pub(crate) async fn fill_vacuumed(pool: &PgPool, n: u64) -> Res<()> {
    sqlx::query(FILL_DUE).bind(i64::try_from(n)?).execute(pool).await?;
    sqlx::query("VACUUM ANALYZE bench_raw.jobs").execute(pool).await?;
    Ok(())
}

/// Single-row INSERTs by `clients` clients for `run_for`; rows/s.
pub(crate) async fn insert_single(pool: &PgPool, clients: usize, run_for: Duration) -> Res<f64> {
    timed_steps(pool, clients, run_for, |conn| Box::pin(insert_one(conn))).await
}

/// One single-row INSERT; answers 1.
async fn insert_one(conn: &mut PgConnection) -> Res<u64> {
    sqlx::query_scalar::<_, i64>(INSERT_ONE).fetch_one(&mut *conn).await?;
    Ok(1)
}

/// `total` rows in INSERTs of 1,000 rows each, one client; rows/s.
pub(crate) async fn insert_batches(pool: &PgPool, total: u64) -> Res<f64> {
    let mut conn = pool.acquire().await?;
    let statements = total.div_ceil(CHUNK);
    let started = Instant::now();
    for _ in 0..statements {
        sqlx::query(INSERT_CHUNK).execute(&mut *conn).await?;
    }
    Ok(rate(statements * CHUNK, started.elapsed()))
}

/// Claims and completes jobs of `size` per claim with `clients` clients, until the table has none
/// left available or `run_for` passed; jobs/s (claims x jobs each, per second).
pub(crate) async fn claim(pool: &PgPool, size: Claim, clients: usize, run_for: Duration) -> Res<f64> {
    timed_steps(pool, clients, run_for, move |conn| Box::pin(claim_complete(conn, size))).await
}

/// One claim of `size` (committed), then the completion of what it claimed (committed); answers the
/// jobs claimed.
async fn claim_complete(conn: &mut PgConnection, size: Claim) -> Res<u64> {
    let sql = match size {
        Claim::One => {
            let Some(id) = sqlx::query_scalar::<_, i64>(CLAIM_ONE).fetch_optional(&mut *conn).await? else {
                return Ok(0);
            };
            sqlx::query(COMPLETE_ONE).bind(id).execute(&mut *conn).await?;
            return Ok(1);
        }
        Claim::Ten => CLAIM_TEN,
        Claim::Hundred => CLAIM_HUNDRED,
    };
    let ids = sqlx::query_scalar::<_, Option<Vec<i64>>>(sql).fetch_one(&mut *conn).await?.unwrap_or_default();
    if ids.is_empty() {
        return Ok(0);
    }
    sqlx::query(COMPLETE_MANY).bind(&ids).execute(&mut *conn).await?;
    Ok(ids.len() as u64)
}

/// Claim 100 + complete by `clients` clients while one producer inserts chunks of 1,000 whenever fewer
/// than [`STEADY_MAX_BACKLOG`] wait; completed jobs/s over `measure`, after `warmup`.
pub(crate) async fn steady(pool: &PgPool, clients: usize, warmup: Duration, measure: Duration) -> Res<f64> {
    reset(pool).await?;
    steady_steps(
        pool,
        clients,
        warmup,
        measure,
        |conn| Box::pin(claim_complete(conn, Claim::Hundred)),
        |conn| Box::pin(insert_chunk(conn)),
    )
    .await
}

/// One INSERT of [`CHUNK`] rows; answers the rows.
async fn insert_chunk(conn: &mut PgConnection) -> Res<u64> {
    sqlx::query(INSERT_CHUNK).execute(&mut *conn).await?;
    Ok(CHUNK)
}

/// The LISTEN/NOTIFY floor: one connection inserts a job and notifies in one statement; a listening
/// connection claims one job on each notification. Latency from before the insert was sent to
/// the claim's answer, in ms.
pub(crate) async fn notify_floor(pool: &PgPool, samples: usize) -> Res<Percentiles> {
    reset(pool).await?;
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let claimer = tokio::spawn(listen_and_claim(listener, tx));

    let mut conn = pool.acquire().await?;
    let mut out = Vec::with_capacity(samples);
    for i in 0..LATENCY_WARMUP + samples {
        let sent = Instant::now();
        sqlx::query(INSERT_NOTIFY).execute(&mut *conn).await?;
        let Some(claimed) = tokio::time::timeout(SAMPLE_TIMEOUT, rx.recv()).await? else {
            return Err(match claimer.await {
                Ok(Err(e)) => e,
                _ => "the listening claimer stopped".into(),
            });
        };
        if i >= LATENCY_WARMUP {
            out.push(ms(claimed.saturating_duration_since(sent)));
        }
        tokio::time::sleep(LATENCY_GAP).await;
    }
    claimer.abort();
    Ok(Percentiles::of(out))
}

/// The listening side of the floor: on each notification, a minimal claim on the same connection,
/// then the time it answered is reported and the job completed.
async fn listen_and_claim(mut listener: PgListener, tx: mpsc::UnboundedSender<Instant>) -> Res<()> {
    loop {
        let _notification = listener.recv().await?;
        let claimed = sqlx::query_scalar::<_, i64>(CLAIM_ONE).fetch_optional(&mut listener).await?;
        let at = Instant::now();
        if let Some(id) = claimed {
            if tx.send(at).is_err() {
                return Ok(());
            }
            sqlx::query(COMPLETE_ONE).bind(id).execute(&mut listener).await?;
        }
    }
}

/// Lease row acquire + release pairs on random keys, by `clients` clients; pairs/s.
pub(crate) async fn lease_pairs(pool: &PgPool, clients: usize, run_for: Duration) -> Res<f64> {
    timed_steps(pool, clients, run_for, |conn| Box::pin(lease_pair(conn))).await
}

/// One lease row acquire on a random key, then its fenced release; answers 1.
async fn lease_pair(conn: &mut PgConnection) -> Res<u64> {
    let key = format!("k{}", rand::random_range(1..=LEASE_KEYS));
    let token = sqlx::query_scalar::<_, i64>(LEASE_ACQUIRE).bind(&key).fetch_one(&mut *conn).await?;
    sqlx::query(LEASE_RELEASE).bind(&key).bind(token).execute(&mut *conn).await?;
    Ok(1)
}
