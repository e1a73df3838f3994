//! The benchmark database: created fresh on the server `DATABASE_URL` names, dropped at the end, so the
//! benchmark never touches other data on that server.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

use crate::Res;

/// The server and database administered from when `DATABASE_URL` is unset.
pub(crate) const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// The database the benchmark creates, uses and drops.
pub(crate) const NAME: &str = "leasehold_bench";

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

/// Empties leasehold's task table.
pub(crate) async fn truncate_tasks(pool: &PgPool) -> Res<()> {
    sqlx::query("TRUNCATE leasehold.tasks").execute(pool).await?;
    Ok(())
}
