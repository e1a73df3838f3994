//! Connections kept warm between the store's statements.
//!
//! sqlx hands a connection back to its pool with a round trip to the server (a ping, in a task it
//! spawns), so a statement on the pool costs two round trips where one would do. The store's own
//! statements are single autocommit statements: one that returned without error leaves its connection
//! idle and clean, so the store keeps it for its next statement instead of handing it back. A statement
//! that failed, or a future dropped half-way, hands its connection back to sqlx, which checks it; a
//! failure also drops every kept connection, since a server that went away broke them all.
//!
//! Kept connections stay checked out of the pool, so the store keeps one only while the pool has others
//! to lend (fewer open than its maximum, or some idle), and never for long: a keeper started with the
//! first statement hands them all back when the pool has none to spare or is closed, and hands back any
//! kept longer than [`KEEP_FOR`] (so the pool's own lifetime and idle rules still apply to it). They also
//! go back when the last clone of the store is dropped and when [`crate::PgStore::close`] is called.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres};

use leasehold_core::Result;

use crate::db;

/// How long a connection stays kept without being used.
const KEEP_FOR: Duration = Duration::from_secs(10);
/// How often the keeper looks at the pool.
const KEEPER_EVERY: Duration = Duration::from_millis(500);

/// The kept connections of one store (shared by its clones), each with the time it was kept.
#[derive(Debug)]
pub(crate) struct Warm {
    pool: PgPool,
    idle: Mutex<Vec<(PoolConnection<Postgres>, Instant)>>,
    /// At most this many are kept; the pool's other connections stay free for the application.
    max_idle: usize,
    keeper: OnceLock<()>,
}

impl Warm {
    pub(crate) fn new(pool: PgPool) -> Arc<Self> {
        let max_idle = (pool.options().get_max_connections() as usize / 2).max(1);
        Arc::new(Self { pool, idle: Mutex::new(Vec::new()), max_idle, keeper: OnceLock::new() })
    }

    /// A connection for one statement: a kept one, or one from the pool.
    pub(crate) async fn get(self: &Arc<Self>) -> Result<Conn> {
        let conn = match self.take_kept() {
            Some(conn) => conn,
            None => self.pool.acquire().await.map_err(db)?,
        };
        Ok(self.lend(conn))
    }

    /// A connection for one statement only if one is at hand: a kept one, or one idle in the pool;
    /// `None` rather than a wait behind the pool's other borrowers.
    pub(crate) fn get_spare(self: &Arc<Self>) -> Option<Conn> {
        let conn = self.take_kept().or_else(|| self.pool.try_acquire())?;
        Some(self.lend(conn))
    }

    /// The latest connection kept, if any (starting the keeper on first use).
    fn take_kept(self: &Arc<Self>) -> Option<PoolConnection<Postgres>> {
        self.start_keeper();
        self.idle.lock().unwrap().pop().map(|(conn, _)| conn)
    }

    fn lend(self: &Arc<Self>, conn: PoolConnection<Postgres>) -> Conn {
        Conn { warm: self.clone(), conn: Some(conn), clean: false }
    }

    /// Hands every kept connection back to the pool.
    pub(crate) fn release_all(&self) {
        self.idle.lock().unwrap().clear();
    }

    /// Whether the pool could still lend a connection if this store kept one more.
    fn pool_has_spare(&self) -> bool {
        self.pool.num_idle() > 0 || self.pool.size() < self.pool.options().get_max_connections()
    }

    /// Hands back the kept connections that waited longer than [`KEEP_FOR`], or all of them when the pool
    /// has none to spare (someone else may be waiting for one).
    fn hand_back_stale(&self) {
        let starving = !self.pool_has_spare();
        let mut idle = self.idle.lock().unwrap();
        if starving {
            idle.clear();
        } else {
            idle.retain(|(_, kept)| kept.elapsed() < KEEP_FOR);
        }
    }

    /// Once: the keeper, a task that runs [`Warm::hand_back_stale`] every [`KEEPER_EVERY`] and hands
    /// everything back when the pool is closed, so that `PgPool::close` (which waits for every
    /// connection) never waits on this store. It ends with the pool or with the last clone of the store.
    fn start_keeper(self: &Arc<Self>) {
        self.keeper.get_or_init(|| {
            let mut closed = Box::pin(self.pool.close_event());
            let warm: Weak<Self> = Arc::downgrade(self);
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = &mut closed => break,
                        _ = tokio::time::sleep(KEEPER_EVERY) => {}
                    }
                    match warm.upgrade() {
                        Some(warm) => warm.hand_back_stale(),
                        None => return,
                    }
                }
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
        // decided under the lock, which the keeper takes too: a close seen after this check finds the
        // connection in the list and hands it back
        let mut idle = self.warm.idle.lock().unwrap();
        if !self.warm.pool.is_closed() && idle.len() < self.warm.max_idle && self.warm.pool_has_spare() {
            idle.push((conn, Instant::now()));
        }
    }
}
