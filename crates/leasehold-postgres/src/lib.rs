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
//!
//! Lease expiry is measured by this server's `now()` only; every write of a lease holder carries its
//! fencing token in the `WHERE` clause, and zero rows affected is [`Error::LeaseLost`].

mod claim;
mod keyed;
pub mod migrate;
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

/// Connection failures, and the SQLSTATE classes of a server that is going away or cannot serve now:
/// 08 (connection exception), 57P (operator intervention: a shutdown, a terminated backend, a server still
/// starting), 53 (insufficient resources, such as too many connections), and the two rollbacks a
/// transaction may simply be run again after (40001 serialization failure, 40P01 deadlock).
fn unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|c| {
            c.starts_with("08") || c.starts_with("57P") || c.starts_with("53") || c == "40001" || c == "40P01"
        }),
        _ => false,
    }
}
