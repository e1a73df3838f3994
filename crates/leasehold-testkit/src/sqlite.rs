//! A fresh SQLite file per test, in the system's temporary folder, removed afterwards.

use std::path::{Path, PathBuf};

use sqlx::SqlitePool;
use uuid::Uuid;

use leasehold::sqlite::{SqliteStore, tx};
use leasehold_core::{NewTask, Result, TaskId, TaskLease};

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
                                    cancelled INTEGER, completion TEXT);",
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
        .map_err(leasehold_core::Error::database)?;
    tx::task_complete_in(&mut txn, lease, None).await?;
    txn.commit().await.map_err(leasehold_core::Error::database)
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

    async fn effect_count(&self, id: TaskId) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM effects WHERE task_id = ?1")
            .bind(id.0.to_string())
            .fetch_one(self.file.pool())
            .await
            .unwrap()
    }
}
