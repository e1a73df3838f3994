//! The client loops the limits share on PostgreSQL and on SQLite: clients that each repeat one step on
//! a connection of their own for a timed phase, and a steady phase where claimers run beside a
//! producer that keeps a backlog waiting. Generic over the sqlx database, so that both limits drive
//! their statements the same way.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::{Database, Pool};

use crate::timing::{IDLE, SteadyClock, timed};
use crate::{BoxError, Res, STEADY_MAX_BACKLOG};

/// What a step answers: the units it did (rows, jobs, pairs); 0 when there was nothing left to do.
pub(crate) type StepFuture<'c> = Pin<Box<dyn Future<Output = Res<u64>> + Send + 'c>>;

/// `clients` clients, each on a connection of its own, repeat `step` for `run_for` (a client stops
/// early when its step answers 0); units per second.
pub(crate) async fn timed_steps<DB, F>(pool: &Pool<DB>, clients: usize, run_for: Duration, step: F) -> Res<f64>
where
    DB: Database,
    F: for<'c> Fn(&'c mut DB::Connection) -> StepFuture<'c> + Clone + Send + 'static,
{
    timed(clients, run_for, |gate| {
        let (pool, step) = (pool.clone(), step.clone());
        async move {
            let conn = pool.acquire().await;
            let deadline = gate.start().await;
            let mut conn = conn?;
            let mut units = 0u64;
            while Instant::now() < deadline {
                let n = step(&mut conn).await?;
                if n == 0 {
                    // nothing left: what remains is held by the other clients
                    break;
                }
                units += n;
            }
            Ok::<_, BoxError>(units)
        }
    })
    .await
}

/// `clients` claimers repeat `claim` (one claim and its completion; answers the jobs done) while a
/// producer on another connection runs `produce` (answers the jobs it added) whenever fewer than
/// [`STEADY_MAX_BACKLOG`] jobs wait; completed jobs per second over `measure`, after `warmup`.
pub(crate) async fn steady_steps<DB, C, P>(
    pool: &Pool<DB>,
    clients: usize,
    warmup: Duration,
    measure: Duration,
    claim: C,
    produce: P,
) -> Res<f64>
where
    DB: Database,
    C: for<'c> Fn(&'c mut DB::Connection) -> StepFuture<'c> + Clone + Send + 'static,
    P: for<'c> Fn(&'c mut DB::Connection) -> StepFuture<'c>,
{
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let claimers: Vec<_> = (0..clients)
        .map(|_| {
            let (pool, done, stop, claim) = (pool.clone(), done.clone(), stop.clone(), claim.clone());
            tokio::spawn(async move {
                let mut conn = pool.acquire().await?;
                while !stop.load(Ordering::Relaxed) {
                    let n = claim(&mut conn).await?;
                    if n == 0 {
                        tokio::time::sleep(IDLE).await;
                    }
                    done.fetch_add(n, Ordering::Relaxed);
                }
                Ok::<_, BoxError>(())
            })
        })
        .collect();

    let produced = async {
        let mut conn = pool.acquire().await?;
        let mut clock = SteadyClock::new(warmup, measure);
        let mut added = 0u64;
        while clock.running(done.load(Ordering::Relaxed)) {
            if added.saturating_sub(done.load(Ordering::Relaxed)) < STEADY_MAX_BACKLOG {
                added += produce(&mut conn).await?;
            } else {
                tokio::time::sleep(IDLE).await;
            }
        }
        Ok::<_, BoxError>(clock.rate(done.load(Ordering::Relaxed)))
    }
    .await;
    stop.store(true, Ordering::Relaxed);
    for c in claimers {
        c.await??;
    }
    produced
}
