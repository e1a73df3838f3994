//! The benchmark database: created fresh on the server `DATABASE_URL` names, dropped at the end, so the
//! benchmark never touches other data on that server.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

use leasehold::postgres::PgStore;

use crate::Res;

/// The server and database administered from when `DATABASE_URL` is unset.
pub(crate) const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// The database the benchmark creates, uses and drops.
pub(crate) const NAME: &str = "leasehold_bench";

/// leasehold's task table, as the set-up and the figures that read its size name it.
pub(crate) const TASKS: &str = "leasehold.tasks";

/// The fresh database, and how to reach the server it lives on.
pub(crate) struct BenchDb {
    admin: PgConnectOptions,
    opts: PgConnectOptions,
}

impl BenchDb {
    /// Creates the database (dropping a leftover of an interrupted run first).
    pub(crate) async fn create(admin_url: &str) -> Res<Self> {
        let admin: PgConnectOptions = admin_url.parse()?;
        if admin.get_database() == Some(NAME) {
            return Err(
                format!("DATABASE_URL must name another database than {NAME}, which the benchmark drops").into()
            );
        }
        let mut conn = admin.connect().await.map_err(|e| format!("cannot reach PostgreSQL at {admin_url}: {e}"))?;
        sqlx::query("DROP DATABASE IF EXISTS leasehold_bench WITH (FORCE)").execute(&mut conn).await?;
        sqlx::query("CREATE DATABASE leasehold_bench").execute(&mut conn).await?;
        conn.close().await?;
        let opts = admin.clone().database(NAME);
        Ok(Self { admin, opts })
    }

    /// A pool on the benchmark database.
    pub(crate) async fn pool(&self, max_connections: u32, application: &str) -> Res<PgPool> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .connect_with(self.opts.clone().application_name(application))
            .await?;
        Ok(pool)
    }

    /// The pool [`PgStore::connect`] would open on the benchmark database.
    pub(crate) async fn store_pool(&self) -> Res<PgPool> {
        Ok(PgStore::pool_options().connect_with(self.opts.clone().application_name("leasehold")).await?)
    }

    /// Drops the database, closing whatever connections are left on it.
    pub(crate) async fn drop_database(&self) -> Res<()> {
        let mut conn = self.admin.connect().await?;
        sqlx::query("DROP DATABASE IF EXISTS leasehold_bench WITH (FORCE)").execute(&mut conn).await?;
        conn.close().await?;
        Ok(())
    }
}

/// The server's version and the settings that decide durable commit cost, for the report.
pub(crate) async fn describe(pool: &PgPool) -> Res<String> {
    let (version, fsync, sync_commit, shared_buffers): (String, String, String, String) = sqlx::query_as(
        "SELECT current_setting('server_version'), current_setting('fsync'),
                current_setting('synchronous_commit'), current_setting('shared_buffers')",
    )
    .fetch_one(pool)
    .await?;
    Ok(format!(
        "PostgreSQL {version}: fsync={fsync}, synchronous_commit={sync_commit}, shared_buffers={shared_buffers}"
    ))
}

/// Has the server write a checkpoint, so that a phase after it does not pay for the dirty pages of the
/// phase before. PostgreSQL 15 refuses a role that is neither a superuser nor in `pg_checkpoint`.
pub(crate) async fn checkpoint(pool: &PgPool) -> Res<()> {
    sqlx::query("CHECKPOINT").execute(pool).await?;
    Ok(())
}

/// Has the server gather `table`'s statistics (one of the benchmark's own), as autovacuum would for a
/// table in use. A table filled for a drain right after it was created has none, and PostgreSQL then
/// guesses that few rows match a claim's conditions: the limit's claim read every due row and sorted
/// them (a bitmap scan) instead of walking its index, and its drain in the first pass ran at 8.5-14k
/// jobs/s against 75-105k in the other two. (Reading the table also sets its rows' hint bits, work that
/// a drain of unread rows would otherwise do; both sides are analyzed alike.)
pub(crate) async fn analyze(pool: &PgPool, table: &str) -> Res<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!("ANALYZE {table}"))).execute(pool).await?;
    Ok(())
}

/// Empties leasehold's task table.
pub(crate) async fn truncate_tasks(pool: &PgPool) -> Res<()> {
    sqlx::query("TRUNCATE leasehold.tasks").execute(pool).await?;
    Ok(())
}

/// The rows of `table` (one of the benchmark's own), as a count of the tasks a phase enqueued.
pub(crate) async fn rows(pool: &PgPool, table: &str) -> Res<u64> {
    let n: i64 =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}"))).fetch_one(pool).await?;
    Ok(n.unsigned_abs())
}

/// Where the WAL and the transaction ids stood before a phase.
pub(crate) struct WalMark {
    lsn: String,
    xid: i64,
}

/// What a phase cost the server per task.
pub(crate) struct PhaseCost {
    /// WAL written, bytes per task.
    pub(crate) wal_bytes: f64,
    /// Transactions that wrote (each got a transaction id), per 100 tasks.
    pub(crate) transactions_per_100: f64,
}

impl WalMark {
    /// The WAL position and the next transaction id now (taking neither).
    pub(crate) async fn take(pool: &PgPool) -> Res<Self> {
        let (lsn, xid): (String, i64) =
            sqlx::query_as("SELECT pg_current_wal_lsn()::text, pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
                .fetch_one(pool)
                .await?;
        Ok(Self { lsn, xid })
    }

    /// WAL bytes and writing transactions since the mark, per task of `tasks`.
    pub(crate) async fn since(&self, pool: &PgPool, tasks: u64) -> Res<PhaseCost> {
        let (bytes, xid): (f64, i64) = sqlx::query_as(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::float8,
                    pg_snapshot_xmax(pg_current_snapshot())::text::bigint",
        )
        .bind(&self.lsn)
        .fetch_one(pool)
        .await?;
        let n = tasks.max(1) as f64;
        Ok(PhaseCost { wal_bytes: bytes / n, transactions_per_100: (xid - self.xid) as f64 * 100.0 / n })
    }
}

/// Puts (or takes away) an announcement that a worker waits on the default queue, as an idle worker
/// makes, so that enqueues notify while no worker claims what they add.
pub(crate) async fn announce_waiting(pool: &PgPool, waiting: bool) -> Res<()> {
    let sql = if waiting {
        "INSERT INTO leasehold.waiting (queue, waiter, until) VALUES ('default', 'bench', now() + interval '1 hour')
         ON CONFLICT (queue, waiter) DO UPDATE SET until = EXCLUDED.until"
    } else {
        "DELETE FROM leasehold.waiting WHERE waiter = 'bench'"
    };
    sqlx::query(sql).execute(pool).await?;
    Ok(())
}
