//! A worker process for crash and pause tests, on PostgreSQL (`postgres://`) or SQLite (`sqlite://`).
//! Configured by environment variables (see `leasehold_testkit::process`); prints `ready` once it runs,
//! and its stats when stopped by SIGTERM.
//!
//! With `SCHEDULE_EVERY_SECOND=1` it also runs a scheduler (its leader lease timed like the worker's
//! leases) with one schedule, `every-second`, that runs `effect` every second and catches up on every
//! tick a leader change made it miss.
//!
//! Its one job, `effect`, records an attempt, works for `work_ms` (or until cancelled), then, like a
//! zombie that ignores cancellation, still tries to record its effect and complete the task in one
//! fenced transaction, and records whether that was accepted.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use leasehold::cron::{MissedPolicy, OverlapPolicy, Schedule, Scheduler};
use leasehold::postgres::PgStore;
use leasehold::sqlite::SqliteStore;
use leasehold::{Job, JobContext, JobResult, Outcome, ScheduleStore, TaskLease, Worker};
use leasehold_core::Result;

enum Db {
    Pg(PgStore),
    Sqlite(SqliteStore),
}

struct State {
    db: Db,
    name: String,
    /// `LEASEHOLD_PLANTED_BUG=unfenced-completion`: completes by id, without the token, so that the
    /// fault checker's own test can show it catches the bug.
    planted_bug: bool,
}

/// The planted bug: the effect and a completion that ignores the token.
async fn complete_unfenced(pool: &sqlx::PgPool, lease: TaskLease, worker: &str) -> Result<()> {
    let db = leasehold_core::Error::database;
    let mut tx = pool.begin().await.map_err(db)?;
    sqlx::query("INSERT INTO effects (task_id, fence, worker) VALUES ($1, $2, $3)")
        .bind(lease.task_id.0)
        .bind(lease.fence.0)
        .bind(worker)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    let done = sqlx::query(
        "UPDATE leasehold.tasks SET state = 'completed', lease_expires_at = NULL, finalized_at = now()
          WHERE id = $1 AND state <> 'completed'",
    )
    .bind(lease.task_id.0)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    if done.rows_affected() == 0 {
        return Err(leasehold_core::Error::LeaseLost { task_id: lease.task_id, fence: lease.fence });
    }
    tx.commit().await.map_err(db)
}

impl State {
    async fn record_start(&self, lease: TaskLease) -> Result<()> {
        let (id, fence) = (lease.task_id.0, lease.fence.0);
        let done = match &self.db {
            Db::Pg(s) => sqlx::query("INSERT INTO attempts (task_id, fence, worker) VALUES ($1, $2, $3)")
                .bind(id)
                .bind(fence)
                .bind(&self.name)
                .execute(s.pool())
                .await
                .map(drop),
            Db::Sqlite(s) => sqlx::query("INSERT INTO attempts (task_id, fence, worker) VALUES (?1, ?2, ?3)")
                .bind(id.to_string())
                .bind(fence)
                .bind(&self.name)
                .execute(s.pool())
                .await
                .map(drop),
        };
        done.map_err(leasehold_core::Error::database)
    }

    /// `cancelled_ms`: when the job saw its cancellation, on this machine's clock (the store's, as the
    /// fault tests run the server on the same machine).
    async fn record_end(&self, lease: TaskLease, cancelled_ms: Option<i64>, completion: &str) -> Result<()> {
        let cancelled = cancelled_ms.is_some();
        let (id, fence) = (lease.task_id.0, lease.fence.0);
        let done = match &self.db {
            Db::Pg(s) => {
                sqlx::query(
                    "UPDATE attempts SET cancelled = $3, completion = $4, cancelled_ms = $5 WHERE task_id = $1 AND fence = $2",
                )
                    .bind(id)
                    .bind(fence)
                    .bind(cancelled)
                    .bind(completion)
                    .bind(cancelled_ms)
                    .execute(s.pool())
                    .await
                    .map(drop)
            }
            Db::Sqlite(s) => {
                sqlx::query(
                    "UPDATE attempts SET cancelled = ?3, completion = ?4, cancelled_ms = ?5 WHERE task_id = ?1 AND fence = ?2",
                )
                    .bind(id.to_string())
                    .bind(fence)
                    .bind(cancelled)
                    .bind(completion)
                    .bind(cancelled_ms)
                    .execute(s.pool())
                    .await
                    .map(drop)
            }
        };
        done.map_err(leasehold_core::Error::database)
    }

    async fn complete_with_effect(&self, lease: TaskLease) -> Result<()> {
        if let (Db::Pg(s), true) = (&self.db, self.planted_bug) {
            return complete_unfenced(s.pool(), lease, &self.name).await;
        }
        match &self.db {
            Db::Pg(s) => leasehold_testkit::pg::complete_with_effect(s.pool(), lease, &self.name).await,
            Db::Sqlite(s) => leasehold_testkit::sqlite::complete_with_effect(s, lease, &self.name).await,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Effect {
    work_ms: u64,
}

/// Runs `work` to its end, noting in `noted` the moment `watch` (the job's cancellation) resolves
/// meanwhile, unless an earlier moment is noted already.
async fn noting<T>(
    work: impl Future<Output = T>,
    mut watch: Pin<&mut impl Future<Output = i64>>,
    noted: &mut Option<i64>,
) -> T {
    tokio::pin!(work);
    tokio::select! {
        r = &mut work => r,
        at = &mut watch, if noted.is_none() => {
            *noted = Some(at);
            work.await
        }
    }
}

impl Job for Effect {
    const KIND: &'static str = "effect";
    type State = State;

    async fn run(self, ctx: JobContext<State>) -> JobResult {
        let st = ctx.state();
        let lease = ctx.lease();
        // the moment the cancellation arrives is noted even while the job waits on the database
        let watch = async {
            ctx.cancelled().await;
            now_ms()
        };
        tokio::pin!(watch);
        let mut cancelled_ms = None;
        noting(st.record_start(lease), watch.as_mut(), &mut cancelled_ms).await?;
        if cancelled_ms.is_none() {
            cancelled_ms = tokio::select! {
                at = &mut watch => Some(at),
                _ = tokio::time::sleep(Duration::from_millis(self.work_ms)) => None,
            };
        }
        // still noted while the completion waits on the database (a stalled session): the job goes on
        // like a zombie all the same
        let done = noting(st.complete_with_effect(lease), watch.as_mut(), &mut cancelled_ms).await;
        let completion = match &done {
            Ok(()) => "completed",
            Err(e) if e.is_lease_lost() => "rejected",
            Err(_) => "error",
        };
        st.record_end(lease, cancelled_ms, completion).await?;
        done?;
        Ok(Outcome::Complete)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn env_ms(name: &str) -> Duration {
    let v = std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    Duration::from_millis(v.parse().unwrap_or_else(|_| panic!("{name}={v} is not a number of ms")))
}

async fn run<S: ScheduleStore>(store: S, state: State, concurrency: u32) {
    let name = state.name.clone();
    let scheduler = std::env::var_os("SCHEDULE_EVERY_SECOND").map(|_| {
        let every_second = Schedule::builder("every-second", "* * * * * *")
            .missed(MissedPolicy::catch_up(Duration::from_secs(300), 1_000))
            .overlap(OverlapPolicy::Allow)
            .job(&Effect { work_ms: 20 })
            .expect("the schedule");
        Scheduler::builder(store.clone())
            .schedule(every_second)
            .holder(name.clone())
            .lease(env_ms("LEASE_MS"), env_ms("HEARTBEAT_MS"), env_ms("MARGIN_MS"))
            .build()
            .expect("scheduler configuration")
    });
    let worker = Worker::builder_with_state(store, state)
        .register::<Effect>()
        .worker_id(name)
        .concurrency(concurrency)
        .lease_ttl(env_ms("LEASE_MS"))
        .heartbeat_interval(env_ms("HEARTBEAT_MS"))
        .trust_margin(env_ms("MARGIN_MS"))
        .cancel_grace(env_ms("GRACE_MS"))
        .poll_interval(env_ms("POLL_MS"))
        .shutdown_timeout(Duration::from_secs(5))
        // short backoff: a task taken over many times must not wait minutes after an error
        .retry_policy(leasehold::RetryPolicy {
            base: Duration::from_millis(50),
            max: Duration::from_secs(1),
            ..Default::default()
        })
        .build()
        .expect("worker configuration");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    worker.start().await;
    if let Some(s) = &scheduler {
        s.start().await;
    }
    println!("ready");
    term.recv().await;
    if let Some(s) = &scheduler {
        s.stop().await;
    }
    worker.stop().await;
    println!("{:?}", worker.stats());
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("LEASEHOLD_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let url = std::env::var("LEASEHOLD_DATABASE_URL").expect("LEASEHOLD_DATABASE_URL is not set");
    let name = std::env::var("WORKER_NAME").expect("WORKER_NAME is not set");
    let concurrency: u32 = std::env::var("CONCURRENCY").expect("CONCURRENCY").parse().expect("CONCURRENCY");
    if url.starts_with("sqlite:") {
        let store = SqliteStore::connect(&url).await.expect("open the SQLite file");
        run(store.clone(), State { db: Db::Sqlite(store), name, planted_bug: false }, concurrency).await;
    } else {
        // named, so that a fault test can cut this process's connections
        let opts: PgConnectOptions = url.parse().expect("a PostgreSQL URL");
        let pool = PgPoolOptions::new()
            .max_connections(concurrency + 4)
            .connect_with(opts.application_name(&name))
            .await
            .expect("connect");
        let store = PgStore::from_pool(pool);
        let planted_bug = std::env::var("LEASEHOLD_PLANTED_BUG").is_ok_and(|b| b == "unfenced-completion");
        run(store.clone(), State { db: Db::Pg(store), name, planted_bug }, concurrency).await;
    }
}
