//! The SQLite store for leasehold, on sqlx: the embedded default, nothing to install.
//!
//! # Layout
//! - [`SqliteStore`] (`store.rs`): the [`TaskStore`](leasehold_core::TaskStore) implementation.
//! - `open.rs`: opening a database file (WAL, busy timeout) and refusing files that are not
//!   leasehold's to use.
//! - `sql/`: one file per statement. Batches travel as one JSON array parameter read by `json_each`.
//!   A value bound for a key column is written `CAST(?n AS TEXT)`: once `ANALYZE` has run (an
//!   application sharing the file may run it), SQLite plans with a bare bound value compared with an
//!   indexed column and prepares the statement again every time it is bound, which made a single-task
//!   write cost four to five times as much CPU (`tests/plans.rs` keeps every statement to it).
//! - [`migrate`]: the embedded migrations of `migrations/sqlite`, tracked in `leasehold_migrations`.
//! - [`tx`]: enqueue and completion inside the caller's own transaction.
//! - `wakeup.rs`: in-process wake-ups (SQLite has no LISTEN/NOTIFY; other processes poll).
//! - `keyed.rs`: idempotent enqueue and the record of effects.
//! - `schedules.rs`: the leader lease, schedules and per-tick ledger of singleton scheduled jobs.
//! - `claim.rs`: the claim's picks (its first statement), with its queues and limit written in; the
//!   update and the answer follow it (`sql/task_claim_update_plain.sql` and
//!   `sql/task_claim_answer_plain.sql`, or, when a lease is taken over, `sql/task_claim_update.sql` and
//!   `sql/task_claim_answer.sql` after the picks are read again with their marks).
//! - `rows.rs`: decoding rows, and a claim's answer (one JSON array of its tasks), into the core records.
//! - `local.rs`, `writer.rs`: the store's own writes take turns within the process, on one
//!   connection the store keeps for them.
//!
//! Claims run inside `BEGIN IMMEDIATE`, so two processes never pick the same task. Fencing tokens come
//! from a counter row in the same file, bumped in the claiming transaction. Lease expiry is measured by
//! SQLite's clock inside each statement (`unixepoch('subsec')`), never by a time the worker sends;
//! every process sharing a file runs on the same host, hence the same clock.

mod claim;
mod keyed;
mod local;
pub mod migrate;
mod open;
mod rows;
mod schedules;
mod store;
pub mod tx;
mod wakeup;
mod writer;

pub use leasehold_core::{Error, Result};
pub use open::{APPLICATION_ID, SqliteOptions};
pub use store::SqliteStore;

/// A backend error as leasehold's: [`Error::Unavailable`] when the file stayed locked by another
/// writer, or could not be read or written (SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR, SQLITE_FULL,
/// SQLITE_CANTOPEN), or the connection's thread is gone; [`Error::Database`] otherwise (a closed store
/// among them: nothing sent to it will succeed).
pub(crate) fn db(e: sqlx::Error) -> leasehold_core::Error {
    let unavailable = match &e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => {
            d.code().and_then(|c| c.parse::<i32>().ok()).is_some_and(|c| matches!(c & 0xff, 5 | 6 | 10 | 13 | 14))
        }
        _ => false,
    };
    if unavailable { leasehold_core::Error::Unavailable(e.into()) } else { leasehold_core::Error::database(e) }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{ConnectOptions, Connection};

    use super::db;

    /// Which of SQLite's answers a caller may send again later (`Error::Unavailable`: the file is busy or
    /// locked, an I/O error, a full disk, a file that cannot be opened) and which it may not: the retries
    /// of the worker's writes rest on it. Extended codes count by their primary code.
    #[tokio::test]
    async fn errors_are_unavailable_only_when_sending_again_may_succeed() {
        let file = leasehold_testkit::sqlite::TestFile::create().await;
        let opts = SqliteConnectOptions::new().filename(file.path()).busy_timeout(Duration::ZERO);
        let mut holder = opts.connect().await.unwrap();
        let mut other = opts.connect().await.unwrap();
        sqlx::raw_sql("CREATE TABLE t (k INTEGER PRIMARY KEY)").execute(&mut holder).await.unwrap();
        // SQLITE_BUSY: another connection holds the write lock
        let tx = holder.begin_with("BEGIN IMMEDIATE").await.unwrap();
        let e = db(sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut other).await.unwrap_err());
        assert!(e.is_unavailable(), "{e:?}");
        tx.rollback().await.unwrap();
        // SQLITE_CONSTRAINT (an extended code, 1555): the statement itself is refused
        sqlx::raw_sql("INSERT INTO t VALUES (1)").execute(&mut holder).await.unwrap();
        let e = db(sqlx::raw_sql("INSERT INTO t VALUES (1)").execute(&mut other).await.unwrap_err());
        assert!(!e.is_unavailable(), "{e:?}");
        // SQLITE_ERROR: a statement that cannot be prepared
        let e = db(sqlx::raw_sql("SELECT * FROM missing").execute(&mut other).await.unwrap_err());
        assert!(!e.is_unavailable(), "{e:?}");
        // SQLITE_CANTOPEN: a file in a directory that does not exist
        let nowhere = SqliteConnectOptions::new().filename(file.path().join("no-such-dir/x.sqlite"));
        let e = db(nowhere.create_if_missing(true).connect().await.unwrap_err());
        assert!(e.is_unavailable(), "{e:?}");
    }
}
