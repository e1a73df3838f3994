//! A fresh SQLite file per test, in the system's temporary folder, removed afterwards.

use std::path::{Path, PathBuf};

use sqlx::SqlitePool;
use uuid::Uuid;

use leasehold::Once;
use leasehold::sqlite::{SqliteStore, tx};
use leasehold_core::{Error, NewTask, Result, TaskId, TaskLease};

use crate::backend::Backend;

/// A database file created for one test.
pub struct TestFile {
    path: PathBuf,
    store: SqliteStore,
}

impl TestFile {
    /// Creates the file with leasehold's migrations and the suite's effect and attempt tables.
    pub async fn create() -> Self {
        let path = std::env::temp_dir().join(format!("leasehold-test-{}.sqlite", Uuid::now_v7().simple()));
        let store = SqliteStore::open(&path).await.unwrap();
        sqlx::raw_sql(
            "CREATE TABLE effects (task_id TEXT NOT NULL, fence INTEGER NOT NULL, worker TEXT,
                                   applied_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)));
             CREATE TABLE attempts (task_id TEXT NOT NULL, fence INTEGER NOT NULL, worker TEXT NOT NULL,
                                    started_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
                                    cancelled INTEGER, cancelled_ms INTEGER, completion TEXT);
             CREATE TABLE fenced (id TEXT PRIMARY KEY, body TEXT NOT NULL, last_fence INTEGER);",
        )
        .execute(store.pool())
        .await
        .unwrap();
        Self { path, store }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its `sqlite:` URL, for worker processes.
    pub fn url(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }

    /// Its pool.
    pub fn pool(&self) -> &SqlitePool {
        self.store.pool()
    }

    /// The store.
    pub fn store(&self) -> SqliteStore {
        self.store.clone()
    }
}

impl Drop for TestFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Records an effect and completes the task in one `BEGIN IMMEDIATE` transaction.
pub async fn complete_with_effect(store: &SqliteStore, lease: TaskLease, worker: &str) -> Result<()> {
    let mut txn = store.begin().await?;
    sqlx::query("INSERT INTO effects (task_id, fence, worker) VALUES (?1, ?2, ?3)")
        .bind(lease.task_id.0.to_string())
        .bind(lease.fence.0)
        .bind(worker)
        .execute(&mut *txn)
        .await
        .map_err(Error::database)?;
    tx::task_complete_in(&mut txn, lease, None).await?;
    txn.commit().await.map_err(Error::database)
}

/// The SQLite backend under the conformance suite.
pub struct SqliteBackend {
    /// Its file.
    pub file: TestFile,
}

impl SqliteBackend {
    /// A backend on a fresh file.
    pub async fn new() -> Self {
        Self { file: TestFile::create().await }
    }
}

impl Backend for SqliteBackend {
    type Store = SqliteStore;

    fn store(&self) -> SqliteStore {
        self.file.store()
    }

    async fn expire_lease(&self, id: TaskId) {
        sqlx::query(
            "UPDATE leasehold_tasks SET lease_expires_at = CAST(unixepoch('subsec') * 1000 AS INTEGER) - 1000
              WHERE id = ?1 AND state = 'running'",
        )
        .bind(id.0.to_string())
        .execute(self.file.pool())
        .await
        .unwrap();
    }

    async fn write_payload(&self, id: TaskId, payload: &str) {
        sqlx::query("UPDATE leasehold_tasks SET payload = ?2 WHERE id = ?1")
            .bind(id.0.to_string())
            .bind(payload)
            .execute(self.file.pool())
            .await
            .unwrap();
    }

    async fn make_due(&self, id: TaskId) {
        sqlx::query(
            "UPDATE leasehold_tasks SET run_at = CAST(unixepoch('subsec') * 1000 AS INTEGER) - 1 WHERE id = ?1",
        )
        .bind(id.0.to_string())
        .execute(self.file.pool())
        .await
        .unwrap();
    }

    async fn insert_in_tx(&self, task: NewTask, commit: bool) -> Result<TaskId> {
        let mut txn = self.file.store.begin().await?;
        let id = tx::task_insert_in(&mut txn, task).await?;
        if commit {
            txn.commit().await.unwrap();
        } else {
            txn.rollback().await.unwrap();
        }
        Ok(id)
    }

    async fn complete_with_effect(&self, lease: TaskLease) -> Result<()> {
        complete_with_effect(&self.file.store, lease, "suite").await
    }

    fn transactional_completer(&self) -> crate::jobs::TxCompleter {
        let store = self.file.store();
        std::sync::Arc::new(move |lease| {
            let store = store.clone();
            Box::pin(async move { complete_with_effect(&store, lease, "suite").await })
        })
    }

    async fn expire_leader(&self, name: &str) {
        sqlx::query(
            "UPDATE leasehold_leaders SET expires_at = CAST(unixepoch('subsec') * 1000 AS INTEGER) - 1000 WHERE name = ?1",
        )
        .bind(name)
        .execute(self.file.pool())
        .await
        .unwrap();
    }

    async fn finish_long_ago(&self, id: TaskId) {
        sqlx::query("UPDATE leasehold_tasks SET finalized_at = finalized_at - 3600000 WHERE id = ?1")
            .bind(id.0.to_string())
            .execute(self.file.pool())
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
        let mut txn = self.file.store.begin().await?;
        let got = match leasehold::sqlite::effect_begin::<serde_json::Value>(&mut txn, key, Some(lease)).await? {
            Once::Done(recorded) => (false, recorded),
            Once::Fresh(k) => {
                sqlx::query("INSERT INTO effects (task_id, fence, worker) VALUES (?1, ?2, 'suite')")
                    .bind(lease.task_id.0.to_string())
                    .bind(lease.fence.0)
                    .execute(&mut *txn)
                    .await
                    .map_err(Error::database)?;
                leasehold::sqlite::effect_record(&mut txn, &k, &outcome).await?;
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
            "INSERT INTO fenced (id, body, last_fence) VALUES (?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET body = excluded.body, last_fence = excluded.last_fence
              WHERE coalesce(fenced.last_fence, 0) <= excluded.last_fence",
        )
        .bind(resource)
        .bind(body)
        .bind(lease.fence.0)
        .execute(self.file.pool())
        .await
        .map_err(Error::database)?;
        leasehold::guard::expect_fenced(done.rows_affected(), lease)
    }

    async fn fenced_read(&self, resource: &str) -> Option<String> {
        sqlx::query_scalar("SELECT body FROM fenced WHERE id = ?1")
            .bind(resource)
            .fetch_optional(self.file.pool())
            .await
            .unwrap()
    }

    async fn effect_count(&self, id: TaskId) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM effects WHERE task_id = ?1")
            .bind(id.0.to_string())
            .fetch_one(self.file.pool())
            .await
            .unwrap()
    }
}
