//! The PostgreSQL store for leasehold, on sqlx.
//!
//! # Layout
//! - [`PgStore`] (`store.rs`): the [`TaskStore`](leasehold_core::TaskStore) implementation.
//! - `sql/`: one file per statement; each is the whole truth about what that operation does.
//! - [`migrate`]: the embedded migrations of `migrations/postgres`, applied under sqlx's advisory lock
//!   into the `leasehold` schema with its own migrations table.
//! - [`tx`]: enqueue and completion inside the caller's own transaction.
//! - `waiters.rs`: which queues had a worker waiting at their latest enqueue (which enqueue to run).
//! - `wakeup.rs`: LISTEN/NOTIFY hints, and tasks handed to waiting workers.
//! - `keyed.rs`: idempotent enqueue and the record of effects.
//! - `schedules.rs`: the leader lease, schedules and per-tick ledger of singleton scheduled jobs.
//! - `rows.rs`: decoding rows into the core records.
//! - `claim.rs`: the claim's text as sent.
//! - `size.rs`: the size class of the tasks table, which the claim and the renewal are planned for.
//! - `single.rs`: the completion and renewal statements in their form for one task (one plan kept each).
//! - `warm.rs`: connections kept between the store's statements; `reserved.rs`: the store's own
//!   connection for lease renewals, outside the application's pool.
//!
//! Lease expiry is measured by this server's `now()` only; every write of a lease holder carries its
//! fencing token in the `WHERE` clause, and zero rows affected is [`Error::LeaseLost`].

mod claim;
mod keyed;
pub mod migrate;
mod reserved;
mod rows;
mod schedules;
mod single;
mod size;
mod store;
pub mod tx;
mod waiters;
mod wakeup;
mod warm;

pub use leasehold_core::{Error, Result};
pub use store::PgStore;

/// The channel enqueues notify on; the payload is the queue name. The enqueue statements in `sql/` name
/// it as a literal (`task_insert*.sql`, `wakeup_notify.sql`).
pub const WAKEUP_CHANNEL: &str = "leasehold_available";

/// A backend error as leasehold's: [`Error::Unavailable`] when the server could not be reached or the
/// connection broke (the request may or may not have been applied), [`Error::Database`] otherwise.
pub(crate) fn db(e: sqlx::Error) -> leasehold_core::Error {
    if unavailable(&e) { leasehold_core::Error::Unavailable(e.into()) } else { leasehold_core::Error::database(e) }
}

/// Connection failures, and the answers of a server that cannot serve the request now but may later:
/// - 08 (connection exception) and 57P01-57P03, 57P05 (a shutdown, a terminated backend, a server
///   still starting, an idle session the server ended: the next request goes on another connection), not
///   57P04 (the database was dropped);
/// - 53 (insufficient resources: too many connections, out of memory, disk full);
/// - the transaction rollbacks a request may simply be sent again after: 40001 (serialization failure),
///   40P01 (deadlock), 40003 (the statement's completion is unknown);
/// - 25P03 and 25P04 (the server ended an idle or overlong transaction) and 25006 (a read-only server: a
///   standby, until a failover completes).
///
/// Not among them: a closed pool (the store was closed, and nothing sent to it will succeed), and a
/// statement cancelled by its timeout or a lock not available in time (57014, 55P03): the same request
/// would most likely time out again, where a smaller one may not (a completion batch is then written in
/// halves).
fn unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|c| {
            c.starts_with("08")
                || c.starts_with("53")
                || matches!(
                    c.as_ref(),
                    "57P01" | "57P02" | "57P03" | "57P05" | "40001" | "40P01" | "40003" | "25P03" | "25P04" | "25006"
                )
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    use sqlx::{ConnectOptions, PgPool};

    use super::db;

    /// The error the server answers to a statement that raises `code`.
    async fn raised(pool: &PgPool, code: &str) -> sqlx::Error {
        let sql = format!("DO $$ BEGIN RAISE EXCEPTION 'raised' USING ERRCODE = '{code}'; END $$");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(pool).await.expect_err("the statement raises")
    }

    /// Which of the server's answers, and of the pool's own failures, a caller may send again later
    /// (`Error::Unavailable`) and which it may not: the retries of the worker's writes rest on it.
    #[tokio::test]
    async fn errors_are_unavailable_only_when_sending_again_may_succeed() {
        let test = leasehold_testkit::pg::TestDb::create().await;
        let pool = test.pool();
        let again = ["08006", "08001", "53300", "53100", "57P01", "57P02", "57P03", "57P05", "40001", "40P01", "40003"];
        let again = again.iter().chain(&["25P03", "25P04", "25006"]);
        for code in again {
            let e = db(raised(pool, code).await);
            assert!(e.is_unavailable(), "{code}: {e:?}");
        }
        // a cancelled statement (a timeout), a lock not granted at once, a dropped database, bad input
        for code in ["57014", "55P03", "57P04", "22023", "23505", "42601"] {
            let e = db(raised(pool, code).await);
            assert!(!e.is_unavailable(), "{code}: {e:?}");
        }
        // a statement timeout, as the server itself raises it
        let mut tx = pool.begin().await.unwrap();
        sqlx::raw_sql("SET LOCAL statement_timeout = 10").execute(&mut *tx).await.unwrap();
        let e = db(sqlx::raw_sql("SELECT pg_sleep(1)").execute(&mut *tx).await.unwrap_err());
        assert!(!e.is_unavailable() && !e.is_lease_lost(), "{e:?}");
        drop(tx);

        // a server that does not answer: nothing listens on port 1 of the loopback
        let nobody = PgConnectOptions::new().host("127.0.0.1").port(1).username("postgres");
        let e = db(nobody.connect().await.unwrap_err());
        assert!(e.is_unavailable(), "{e:?}");
        // every connection of a pool lent out for longer than its acquire timeout
        let one = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_millis(50))
            .connect(test.url())
            .await
            .unwrap();
        let held = one.acquire().await.unwrap();
        let e = db(one.acquire().await.unwrap_err());
        assert!(e.is_unavailable(), "{e:?}");
        drop(held);
        // a pool the application closed: nothing sent to it will ever be answered
        one.close().await;
        let e = db(one.acquire().await.unwrap_err());
        assert!(!e.is_unavailable(), "{e:?}");
    }
}
