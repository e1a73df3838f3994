//! The fault kit: what a test of your own handlers needs to hurt a worker the way production will.
//!
//! - [`WorkerProcess`](crate::process::WorkerProcess) runs a worker binary as a real process;
//!   `kill()` is a crash, `pause()`/`resume()` a GC or VM stop, and [`pause_for`] stops it past its
//!   lease and resumes it later without blocking the test;
//! - [`drop_connections`] cuts every PostgreSQL connection of a worker (by `application_name`), as a
//!   network failure or a failover would; [`stall_sessions`] freezes them for a while instead, as a
//!   partition would, so the worker has to fence itself;
//! - [`PgCluster`](super::PgCluster) is a server of the test's own that can crash and restart;
//! - [`StoreClock`] moves time forward on the store's clock for one task (its lease expires now), the
//!   clock that leases are measured on; inside one process, `tokio::time::pause()` and `advance()`
//!   move the worker's own monotonic clock, the one its trust window runs on.
//!
//! The `fault-kit` example shows them on a handler of its own.

use std::time::Duration;

use sqlx::PgPool;

use leasehold_core::TaskId;

use crate::process::WorkerProcess;

/// `SIGSTOP` now, `SIGCONT` after `d`, from a thread of its own: the test goes on meanwhile.
pub fn pause_for(worker: &WorkerProcess, d: Duration) {
    worker.pause();
    let pid = worker.pid();
    std::thread::spawn(move || {
        std::thread::sleep(d);
        let _ = std::process::Command::new("kill").arg("-CONT").arg(pid.to_string()).status();
    });
}

/// Terminates every server connection whose `application_name` is `name` (workers started by
/// [`WorkerProcess`] use their name); answers how many were cut.
pub async fn drop_connections(pool: &PgPool, name: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
          WHERE application_name = $1 AND pid <> pg_backend_pid()",
    )
    .bind(name)
    .fetch_one(pool)
    .await
}

/// Freezes every server session of the worker `name` (`SIGSTOP` on their backend processes, found by
/// `application_name`) for `d`, as a network partition between the worker and its database would:
/// its renewals hang, so it must fence itself. A session the worker opens meanwhile is frozen as soon
/// as it shows (the sessions are looked for every 20 ms), as a partition would hang a new connection
/// too: the worker's renewals run on a connection of their own, opened again after a cut, which a
/// freeze of the sessions of one moment would otherwise miss. Needs the right to signal the server's
/// processes (the cluster of [`super::PgCluster`], or root). Answers how many sessions were frozen at
/// once.
pub async fn stall_sessions(pool: &PgPool, name: &str, d: Duration) -> Result<usize, sqlx::Error> {
    let first = sessions_of(pool, name).await?;
    signal("STOP", &first);
    let n = first.len();
    let (opts, name) = ((*pool.connect_options()).clone(), name.to_owned());
    // a thread with a runtime of its own, so that the sessions run again even if the caller's runtime
    // ends first
    std::thread::spawn(move || {
        let until = std::time::Instant::now() + d;
        let mut frozen = first;
        {
            let watch = async {
                let Ok(mut conn) = sqlx::ConnectOptions::connect(&opts).await else { return };
                while std::time::Instant::now() < until {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    if let Ok(now) = sessions_of(&mut conn, &name).await {
                        let new: Vec<i32> = now.into_iter().filter(|pid| !frozen.contains(pid)).collect();
                        signal("STOP", &new);
                        frozen.extend(new);
                    }
                }
            };
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                rt.block_on(watch);
            }
        }
        std::thread::sleep(until.saturating_duration_since(std::time::Instant::now()));
        signal("CONT", &frozen);
    });
    Ok(n)
}

/// The backend processes of the sessions of the worker `name`.
async fn sessions_of<'e>(db: impl sqlx::PgExecutor<'e>, name: &str) -> Result<Vec<i32>, sqlx::Error> {
    sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()")
        .bind(name)
        .fetch_all(db)
        .await
}

/// Sends the signal `sig` (`STOP`, `CONT`) to each process of `pids`.
fn signal(sig: &str, pids: &[i32]) {
    for pid in pids {
        let _ = std::process::Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
    }
}

/// The store's clock, as far as one task's lease is concerned.
pub struct StoreClock<'a>(pub &'a PgPool);

impl StoreClock<'_> {
    /// Moves the task's lease expiry into the past on the store's clock, as if its holder had been
    /// silent for the whole lease: the next claim takes it over, and the holder's writes are refused.
    pub async fn expire_lease(&self, task: TaskId) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE leasehold.tasks SET lease_expires_at = now() - interval '1 millisecond'
              WHERE id = $1 AND state = 'running'",
        )
        .bind(task.0)
        .execute(self.0)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}
