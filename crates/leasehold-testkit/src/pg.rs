//! A fresh PostgreSQL database per test, migrated, and dropped when the handle is dropped.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use uuid::Uuid;

use leasehold::Once;
use leasehold::postgres::{PgStore, tx};
use leasehold_core::{Error, NewTask, Result, TaskId, TaskLease};

use crate::backend::Backend;

/// The server tests use when `LEASEHOLD_TEST_DATABASE_URL` is unset: the local one, on loopback.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The URL of a database on the test server that may create databases.
pub fn admin_url() -> String {
    std::env::var("LEASEHOLD_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

/// A database created for one test.
pub struct TestDb {
    name: String,
    url: String,
    admin: PgConnectOptions,
    pool: PgPool,
}

impl TestDb {
    /// Creates an empty database with leasehold's migrations and the suite's effect table.
    pub async fn create() -> Self {
        Self::create_on(&admin_url()).await
    }

    /// The same on the server of `admin_url` (a cluster of the test's own, say).
    pub async fn create_on(admin_url: &str) -> Self {
        let admin: PgConnectOptions = admin_url.parse().expect("not a PostgreSQL URL");
        let name = format!("leasehold_test_{}", Uuid::now_v7().simple());
        let mut conn =
            admin.connect().await.unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL at {admin_url}: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.unwrap();
        conn.close().await.ok();
        let opts = admin.clone().database(&name);
        let url = opts.to_url_lossy().to_string();
        let pool = PgPoolOptions::new()
            .max_connections(20)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts.application_name("leasehold-test"))
            .await
            .unwrap();
        PgStore::from_pool(pool.clone()).migrate().await.unwrap();
        sqlx::raw_sql(
            "CREATE TABLE effects (task_id uuid NOT NULL, fence bigint NOT NULL, worker text,
                                   applied_at timestamptz NOT NULL DEFAULT clock_timestamp());
             CREATE TABLE attempts (task_id uuid NOT NULL, fence bigint NOT NULL, worker text NOT NULL,
                                    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
                                    cancelled boolean, cancelled_ms bigint, completion text);
             CREATE TABLE fenced (id text PRIMARY KEY, body text NOT NULL, last_fence bigint);",
        )
        .execute(&pool)
        .await
        .unwrap();
        Self { name, url, admin, pool }
    }

    /// The database's URL, for worker processes.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A pool on it.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A store on its pool.
    pub fn store(&self) -> PgStore {
        PgStore::from_pool(self.pool.clone())
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Dropping a database needs I/O, and Drop cannot await: do it on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                if let Ok(mut c) = admin.connect().await {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut c).await;
                }
            });
        })
        .join();
    }
}

/// The PostgreSQL backend under the conformance suite.
pub struct PgBackend {
    /// Its database.
    pub db: TestDb,
}

impl PgBackend {
    /// A backend on a fresh database.
    pub async fn new() -> Self {
        Self { db: TestDb::create().await }
    }
}

/// Records an effect and completes the task in one transaction (shared by the suite and the worker
/// processes of the crash tests).
pub async fn complete_with_effect(pool: &PgPool, lease: TaskLease, worker: &str) -> Result<()> {
    let mut txn = pool.begin().await.map_err(Error::database)?;
    sqlx::query("INSERT INTO effects (task_id, fence, worker) VALUES ($1, $2, $3)")
        .bind(lease.task_id.0)
        .bind(lease.fence.0)
        .bind(worker)
        .execute(&mut *txn)
        .await
        .map_err(leasehold_core::Error::database)?;
    tx::task_complete_in(&mut txn, lease, None).await?;
    txn.commit().await.map_err(leasehold_core::Error::database)
}

impl Backend for PgBackend {
    type Store = PgStore;

    fn store(&self) -> PgStore {
        self.db.store()
    }

    async fn expire_lease(&self, id: TaskId) {
        sqlx::query("UPDATE leasehold.tasks SET lease_expires_at = now() - interval '1 second' WHERE id = $1 AND state = 'running'")
            .bind(id.0)
            .execute(self.db.pool())
            .await
            .unwrap();
    }

    async fn write_payload(&self, id: TaskId, payload: &str) {
        sqlx::query("UPDATE leasehold.tasks SET payload = $2::jsonb WHERE id = $1")
            .bind(id.0)
            .bind(payload)
            .execute(self.db.pool())
            .await
            .unwrap();
    }

    async fn make_due(&self, id: TaskId) {
        sqlx::query("UPDATE leasehold.tasks SET run_at = now() - interval '1 millisecond' WHERE id = $1")
            .bind(id.0)
            .execute(self.db.pool())
            .await
            .unwrap();
    }

    async fn insert_in_tx(&self, task: NewTask, commit: bool) -> Result<TaskId> {
        let mut conn: PgConnection = self.db.pool().acquire().await.unwrap().detach();
        let mut txn = conn.begin().await.unwrap();
        let id = tx::task_insert_in(&mut txn, task).await?;
        if commit {
            txn.commit().await.unwrap();
        } else {
            txn.rollback().await.unwrap();
        }
        Ok(id)
    }

    async fn complete_with_effect(&self, lease: TaskLease) -> Result<()> {
        complete_with_effect(self.db.pool(), lease, "suite").await
    }

    fn transactional_completer(&self) -> crate::jobs::TxCompleter {
        let pool = self.db.pool().clone();
        std::sync::Arc::new(move |lease| {
            let pool = pool.clone();
            Box::pin(async move { complete_with_effect(&pool, lease, "suite").await })
        })
    }

    async fn expire_leader(&self, name: &str) {
        sqlx::query("UPDATE leasehold.leaders SET expires_at = now() - interval '1 second' WHERE name = $1")
            .bind(name)
            .execute(self.db.pool())
            .await
            .unwrap();
    }

    async fn finish_long_ago(&self, id: TaskId) {
        sqlx::query("UPDATE leasehold.tasks SET finalized_at = now() - interval '1 hour' WHERE id = $1")
            .bind(id.0)
            .execute(self.db.pool())
            .await
            .unwrap();
    }

    async fn effect_once(
        &self,
        lease: TaskLease,
        key: &str,
        outcome: serde_json::Value,
        commit: bool,
    ) -> Result<(bool, serde_json::Value)> {
        let mut txn = self.db.pool().begin().await.map_err(Error::database)?;
        let got = match leasehold::postgres::effect_begin::<serde_json::Value>(&mut txn, key, Some(lease)).await? {
            Once::Done(recorded) => (false, recorded),
            Once::Fresh(k) => {
                sqlx::query("INSERT INTO effects (task_id, fence, worker) VALUES ($1, $2, 'suite')")
                    .bind(lease.task_id.0)
                    .bind(lease.fence.0)
                    .execute(&mut *txn)
                    .await
                    .map_err(Error::database)?;
                leasehold::postgres::effect_record(&mut txn, &k, &outcome).await?;
                (true, outcome)
            }
        };
        if commit {
            txn.commit().await.map_err(Error::database)?;
        }
        Ok(got)
    }

    async fn fenced_write(&self, lease: TaskLease, resource: &str, body: &str) -> Result<()> {
        let done = sqlx::query(
            "INSERT INTO fenced (id, body, last_fence) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body, last_fence = EXCLUDED.last_fence
              WHERE coalesce(fenced.last_fence, 0) <= EXCLUDED.last_fence",
        )
        .bind(resource)
        .bind(body)
        .bind(lease.fence.0)
        .execute(self.db.pool())
        .await
        .map_err(Error::database)?;
        leasehold::guard::expect_fenced(done.rows_affected(), lease)
    }

    async fn fenced_read(&self, resource: &str) -> Option<String> {
        sqlx::query_scalar("SELECT body FROM fenced WHERE id = $1")
            .bind(resource)
            .fetch_optional(self.db.pool())
            .await
            .unwrap()
    }

    async fn effect_count(&self, id: TaskId) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM effects WHERE task_id = $1")
            .bind(id.0)
            .fetch_one(self.db.pool())
            .await
            .unwrap()
    }
}
