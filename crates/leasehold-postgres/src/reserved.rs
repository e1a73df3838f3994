//! A connection of the store's own for lease renewals, outside the application's pool. The store has
//! two: one for the renewals of task leases, one for the scheduler's leader lease when the pool has no
//! connection idle (see `PgStore::leader_conn`).
//!
//! Handlers often run their own transactions on the pool the store was given (the transactional
//! completion and the effect records are built for that). When every connection of that pool was lent to
//! handlers that held it (a slow transaction each, as many handlers as connections, the defaults of both
//! being ten), a heartbeat round waited in the pool's queue behind them. The worker stopped trusting the
//! leases meanwhile and cancelled the very jobs that held the connections, though the server was there
//! all along. Renewals therefore run on a pool of one connection of their own, opened on the first
//! renewal with the application pool's connect options (so the same server, user and application name;
//! options the application sets on its pool later are taken up by the next connection opened), and kept
//! open: the store opens at most two connections more than its pool's maximum. The pool's hooks
//! (`after_connect` and the like) do not run on it: the renewal names leasehold's schema itself and needs
//! nothing else of the session, but a role the hooks set is not set there. It closes with
//! [`crate::PgStore::close`], when the application's pool was closed, and when the last clone of the store
//! is dropped.

use std::sync::OnceLock;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres};

use leasehold_core::Result;

use crate::db;

/// How long a renewal waits for the reserved connection, or for the server to accept it.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The store's own connection for renewals, opened on first use.
#[derive(Debug, Default)]
pub(crate) struct Reserved(OnceLock<PgPool>);

impl Reserved {
    /// The reserved connection; `app` is the application's pool, whose options it is opened with. A
    /// closed `app` closes it and answers the error a closed pool does.
    pub(crate) async fn get(&self, app: &PgPool) -> Result<PoolConnection<Postgres>> {
        if app.is_closed() {
            self.close().await;
            return Err(db(sqlx::Error::PoolClosed));
        }
        let pool = self.0.get_or_init(|| {
            PgPoolOptions::new()
                .max_connections(1)
                .min_connections(0)
                // kept while it works: a server that has no connection left to give is when it counts
                .idle_timeout(None)
                .max_lifetime(None)
                // a connection that broke fails its renewal, which the heartbeat tries again soon
                .test_before_acquire(false)
                // a server that refuses connections fails the round within this, rather than the 30 s
                // sqlx's pool spends retrying the connect by default: the heartbeat tries again after H / 4
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_lazy_with((*app.connect_options()).clone())
        });
        // the application may change its pool's options (a rotated password): a connection opened
        // after that uses the new ones
        pool.set_connect_options((*app.connect_options()).clone());
        // closed meanwhile, perhaps before this pool existed for its close to find
        if app.is_closed() {
            self.close().await;
            return Err(db(sqlx::Error::PoolClosed));
        }
        pool.acquire().await.map_err(db)
    }

    /// Closes the connection, if one was opened.
    pub(crate) async fn close(&self) {
        if let Some(pool) = self.0.get() {
            pool.close().await;
        }
    }
}
