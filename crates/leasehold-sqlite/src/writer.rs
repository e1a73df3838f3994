//! The connection the store's own writes run on.
//!
//! Within one process, the store's writes take turns on an in-process lock (see `local.rs`), and each
//! runs on a connection the store keeps for them, outside the pool, rather than on whichever of the
//! pool's connections is idle. Every SQLite connection has a page cache of its own, which it must throw
//! away when it finds that another connection wrote the file since it last looked. Writes spread over
//! the pool's connections (sqlx lends its idle connections in turn) each began with a cold cache and
//! read back from the file the pages of the tables and indexes they were about to change: a drain of
//! 20,000 tasks read about 8,800 pages with `pread`, where SQLite's own limit, on one connection, read
//! 730. sqlx also checks a connection it is handed back with a round trip to the connection's thread,
//! which a kept connection never pays.
//!
//! The kept connection keeps its statement journals in memory (`PRAGMA temp_store = MEMORY`). A
//! statement that changes many rows inside a transaction, and could fail partway on a constraint, keeps
//! the pages it changed in a statement journal, to undo that statement alone; past 64 KiB SQLite moves
//! that journal to a temporary file, which it creates, writes and deletes each time. A claim or a
//! completion of a few hundred tasks went past it: about a thousand such files in a five-round
//! `--sqlite-only --drain-only 20000` benchmark, none now. The store's statements inside a transaction
//! change bounded batches (a claim of at most the worker's free slots, a worker's completions of at most
//! a thousand tasks), so the journal in memory is bounded too: a few hundred pages. A statement run on
//! its own (an enqueue of many tasks, a prune) keeps no statement journal: its own transaction undoes
//! it. On a store made with `SqliteStore::from_pool`, the kept connection comes from the
//! application's pool and leaves it for good, so the setting applies to that one connection only.
//!
//! The kept connection comes from the pool and is detached from it, so it does not count against the
//! pool's size: the store opens at most one more connection than the pool's maximum. Once the pool is
//! closed the kept connection is closed too, and writes fail as the pool's statements do. A connection
//! not used for [`CHECK_AFTER`], or whose last transaction ended without a commit, is checked before its
//! next write and replaced if it broke or is stuck in a transaction (see [`reusable`]).

use std::ops::{Deref, DerefMut};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::{Connection, SqliteConnection, SqlitePool};

use leasehold_core::Result;

use crate::db;
use crate::local::FileLocal;

/// How long the kept connection may sit unused before it is checked (a round trip to its thread).
const CHECK_AFTER: Duration = Duration::from_secs(10);

/// The store's kept connection for its writes (shared by the store's clones) and the time it was
/// last handed back.
#[derive(Debug, Default)]
pub(crate) struct Kept(Mutex<Option<(SqliteConnection, Instant)>>);

/// A connection that holds this process's turn to write the file, until it is dropped (the connection
/// goes back to the store first, then the turn passes).
pub(crate) struct Writer<'a> {
    conn: Option<SqliteConnection>,
    kept: &'a Kept,
    _turn: tokio::sync::MutexGuard<'a, ()>,
}

impl Kept {
    /// Waits for this process's turn to write the file, then lends the kept connection (opening it
    /// first if there is none, or if it broke).
    pub(crate) async fn writer<'a>(&'a self, pool: &SqlitePool, local: &'a FileLocal) -> Result<Writer<'a>> {
        let turn = local.writer.lock().await;
        let taken = self.0.lock().unwrap().take();
        if pool.is_closed() {
            drop(taken);
            return Err(db(sqlx::Error::PoolClosed));
        }
        let conn = match taken {
            Some((conn, at)) => reusable(conn, at).await,
            None => None,
        };
        let conn = match conn {
            Some(conn) => conn,
            None => {
                let mut conn = pool.acquire().await.map_err(db)?.detach();
                sqlx::raw_sql("PRAGMA temp_store = MEMORY").execute(&mut conn).await.map_err(db)?;
                conn
            }
        };
        Ok(Writer { conn: Some(conn), kept: self, _turn: turn })
    }

    /// Closes the kept connection once the write that holds it (if any) has ended. Call it once the
    /// pool is closed, so that no later write opens another.
    pub(crate) async fn close(&self, local: &FileLocal) {
        let _turn = local.writer.lock().await;
        let taken = self.0.lock().unwrap().take();
        if let Some((conn, _)) = taken {
            let _ = conn.close().await;
        }
    }
}

/// The kept connection, if it can take the next write. It is checked with a round trip to its thread
/// when it sat unused for [`CHECK_AFTER`], and when a transaction on it ended without a commit: the
/// rollback sqlx queued then runs before the round trip's answer. A connection still in a transaction
/// after that is closed: SQLite ended the transaction itself (it does on some I/O errors and on a full
/// disk), the queued rollback failed, and sqlx still counts the transaction as open, so every `BEGIN`
/// on that connection would fail from then on.
async fn reusable(mut conn: SqliteConnection, kept_at: Instant) -> Option<SqliteConnection> {
    if (conn.is_in_transaction() || kept_at.elapsed() >= CHECK_AFTER)
        && let Err(e) = conn.ping().await
    {
        tracing::debug!(error = %e, "the kept SQLite connection broke; opening another");
        return None;
    }
    if conn.is_in_transaction() {
        tracing::warn!("a write transaction could not be rolled back on the kept SQLite connection; opening another");
        return None;
    }
    Some(conn)
}

impl Writer<'_> {
    /// Begins a write transaction on this connection, taking SQLite's write lock at once (`BEGIN
    /// IMMEDIATE`), as [`crate::SqliteStore::begin`] does on a pooled connection.
    pub(crate) async fn begin(&mut self) -> Result<sqlx::Transaction<'_, sqlx::Sqlite>> {
        Connection::begin_with(&mut **self, "BEGIN IMMEDIATE").await.map_err(db)
    }
}

impl Drop for Writer<'_> {
    fn drop(&mut self) {
        // a transaction dropped before its commit queued its rollback on the connection, which runs
        // before the connection's next statement
        if let Some(conn) = self.conn.take() {
            *self.kept.0.lock().unwrap() = Some((conn, Instant::now()));
        }
    }
}

impl Deref for Writer<'_> {
    type Target = SqliteConnection;
    fn deref(&self) -> &Self::Target {
        self.conn.as_ref().expect("a writer holds its connection until dropped")
    }
}

impl DerefMut for Writer<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.conn.as_mut().expect("a writer holds its connection until dropped")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use leasehold_core::{NewTask, TaskClaimParams, TaskState, TaskStore};
    use leasehold_testkit::sqlite::TestFile;

    use crate::SqliteStore;

    /// The kept connection, and the one that replaces it, keep their statement journals in memory.
    ///
    /// SQLite rolls a transaction back by itself on some errors (an I/O error, a full disk); sqlx does
    /// not see it, its own rollback then fails, and it counts the transaction as open. Here a `ROLLBACK`
    /// run inside the transaction ends it the same way. The store's next writes, each in a transaction
    /// of its own, must still run: the kept connection is replaced, not lent again stuck.
    #[tokio::test]
    async fn a_transaction_sqlite_ended_itself_does_not_stick_the_kept_connection() {
        let file = TestFile::create().await;
        let store = SqliteStore::open(file.path()).await.unwrap();
        let id = store.task_insert(NewTask::new("k", serde_json::json!({}))).await.unwrap();
        {
            let mut writer = store.writer().await.unwrap();
            let temp_store: i64 = sqlx::query_scalar("PRAGMA temp_store").fetch_one(&mut *writer).await.unwrap();
            assert_eq!(temp_store, 2, "the kept connection keeps its statement journals in memory");
            let mut tx = writer.begin().await.unwrap();
            sqlx::raw_sql("ROLLBACK").execute(&mut *tx).await.unwrap();
            // dropped uncommitted: sqlx queues a rollback, which fails
        }
        // the replacement keeps its statement journals in memory too (temp_store 2 is MEMORY)
        let temp_store: i64 =
            sqlx::query_scalar("PRAGMA temp_store").fetch_one(&mut *store.writer().await.unwrap()).await.unwrap();
        assert_eq!(temp_store, 2);
        for _ in 0..2 {
            let params = TaskClaimParams {
                queues: vec!["default".into()],
                limit: 1,
                default_lease_ttl: Duration::from_secs(30),
                worker_id: "w".into(),
            };
            store.task_claim(params).await.expect("a claim after the failed rollback");
        }
        assert_eq!(store.task_get(id).await.unwrap().state, TaskState::Running);
        store.close().await;
    }
}
