//! Connections kept warm between the store's statements.
//!
//! sqlx hands a connection back to its pool with a round trip to the server (a ping, in a task it
//! spawns), so a statement on the pool costs two round trips where one would do. The store's own
//! statements are single autocommit statements: one that returned without error leaves its connection
//! idle and clean, so the store keeps it for its next statement instead of handing it back. A statement
//! that failed, or a future dropped half-way, hands its connection back to sqlx, which checks it; a
//! failure also drops every kept connection, since a server that went away broke them all.
//!
//! Kept connections stay checked out of the pool. They go back when the last clone of the store is
//! dropped, when [`crate::PgStore::close`] is called, and when the pool itself is closed (a watcher
//! started with the first statement waits for that).

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres};

use leasehold_core::Result;

use crate::db;

/// The kept connections of one store (shared by its clones).
#[derive(Debug)]
pub(crate) struct Warm {
    pool: PgPool,
    idle: Mutex<Vec<PoolConnection<Postgres>>>,
    /// At most this many are kept; the pool's other connections stay free for the application.
    max_idle: usize,
    watching: OnceLock<()>,
}

impl Warm {
    pub(crate) fn new(pool: PgPool) -> Arc<Self> {
        let max_idle = (pool.options().get_max_connections() as usize / 2).max(1);
        Arc::new(Self { pool, idle: Mutex::new(Vec::new()), max_idle, watching: OnceLock::new() })
    }

    /// A connection for one statement: a kept one, or one from the pool.
    pub(crate) async fn get(self: &Arc<Self>) -> Result<Conn> {
        self.watch_close();
        let kept = self.idle.lock().unwrap().pop();
        let conn = match kept {
            Some(conn) => conn,
            None => self.pool.acquire().await.map_err(db)?,
        };
        Ok(Conn { warm: self.clone(), conn: Some(conn), clean: false })
    }

    /// Hands every kept connection back to the pool.
    pub(crate) fn release_all(&self) {
        self.idle.lock().unwrap().clear();
    }

    /// Once: a task that hands the kept connections back when the pool is closed, so that
    /// `PgPool::close` (which waits for every connection) never waits on this store.
    fn watch_close(self: &Arc<Self>) {
        self.watching.get_or_init(|| {
            let closed = self.pool.close_event();
            let warm: Weak<Self> = Arc::downgrade(self);
            tokio::spawn(async move {
                closed.await;
                if let Some(warm) = warm.upgrade() {
                    warm.release_all();
                }
            });
        });
    }
}

/// A connection lent for one statement. Mark it [`Conn::clean`] after the statement succeeded to keep
/// it; otherwise it goes back to sqlx's pool when dropped.
pub(crate) struct Conn {
    warm: Arc<Warm>,
    conn: Option<PoolConnection<Postgres>>,
    clean: bool,
}

impl Conn {
    /// The statement succeeded: the connection is idle and may serve the next one.
    pub(crate) fn clean(&mut self) {
        self.clean = true;
    }
}

impl Deref for Conn {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        self.conn.as_deref().expect("a lent connection is present until dropped")
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn.as_deref_mut().expect("a lent connection is present until dropped")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if !self.clean {
            // failed or interrupted: sqlx checks this one; the kept ones may be broken as well
            self.warm.release_all();
            return;
        }
        if self.warm.pool.is_closed() {
            return;
        }
        let mut idle = self.warm.idle.lock().unwrap();
        if idle.len() < self.warm.max_idle {
            idle.push(conn);
        }
    }
}
