//! A worker process for crash and pause tests. Configured by environment variables (see
//! `leasehold_testkit::process`); prints `ready` once it runs, and its stats when stopped by SIGTERM.
//!
//! Its one job, `effect`, records an attempt, works for `work_ms` (or until cancelled), then, like a
//! zombie that ignores cancellation, still tries to record its effect and complete the task in one
//! fenced transaction, and records whether that was accepted.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use leasehold::postgres::PgStore;
use leasehold::{Job, JobContext, JobResult, Outcome, Worker};

struct State {
    pool: PgPool,
    name: String,
}

#[derive(Serialize, Deserialize)]
struct Effect {
    work_ms: u64,
}

impl Job for Effect {
    const KIND: &'static str = "effect";
    type State = State;

    async fn run(self, ctx: JobContext<State>) -> JobResult {
        let st = ctx.state();
        let lease = ctx.lease();
        sqlx::query("INSERT INTO attempts (task_id, fence, worker) VALUES ($1, $2, $3)")
            .bind(lease.task_id.0)
            .bind(lease.fence.0)
            .bind(&st.name)
            .execute(&st.pool)
            .await?;
        let cancelled = tokio::select! {
            _ = ctx.cancelled() => true,
            _ = tokio::time::sleep(Duration::from_millis(self.work_ms)) => false,
        };
        let done = leasehold_testkit::pg::complete_with_effect(&st.pool, lease, &st.name).await;
        let completion = match &done {
            Ok(()) => "completed",
            Err(e) if e.is_lease_lost() => "rejected",
            Err(_) => "error",
        };
        sqlx::query("UPDATE attempts SET cancelled = $3, completion = $4 WHERE task_id = $1 AND fence = $2")
            .bind(lease.task_id.0)
            .bind(lease.fence.0)
            .bind(cancelled)
            .bind(completion)
            .execute(&st.pool)
            .await?;
        done?;
        Ok(Outcome::Complete)
    }
}

fn env_ms(name: &str) -> Duration {
    let v = std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    Duration::from_millis(v.parse().unwrap_or_else(|_| panic!("{name}={v} is not a number of ms")))
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
    let pool = PgPoolOptions::new().max_connections(concurrency + 4).connect(&url).await.expect("connect");
    let store = PgStore::from_pool(pool.clone());
    let worker = Worker::builder_with_state(store, State { pool, name: name.clone() })
        .register::<Effect>()
        .worker_id(name)
        .concurrency(concurrency)
        .lease_ttl(env_ms("LEASE_MS"))
        .heartbeat_interval(env_ms("HEARTBEAT_MS"))
        .trust_margin(env_ms("MARGIN_MS"))
        .cancel_grace(env_ms("GRACE_MS"))
        .poll_interval(env_ms("POLL_MS"))
        .shutdown_timeout(Duration::from_secs(5))
        .build()
        .expect("worker configuration");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    worker.start().await;
    println!("ready");
    term.recv().await;
    worker.stop().await;
    println!("{:?}", worker.stats());
}
