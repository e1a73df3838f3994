//! Worker-process mode: the environment of `leasehold_testkit::process::WorkerProcess` configures it.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;

use leasehold::postgres::PgStore;
use leasehold::sqlite::SqliteStore;
use leasehold::{BoxError, TaskStore, Worker};

use crate::shop::{Db, Order};

fn env(name: &str) -> Result<String, BoxError> {
    std::env::var(name).map_err(|_| format!("{name} is not set").into())
}

fn env_ms(name: &str) -> Result<Duration, BoxError> {
    Ok(Duration::from_millis(env(name)?.parse()?))
}

pub(crate) async fn run() -> Result<(), BoxError> {
    let url = env("LEASEHOLD_DATABASE_URL")?;
    if url.starts_with("sqlite:") {
        let store = SqliteStore::connect(&url).await?;
        serve(store.clone(), Db::Sqlite(store)).await
    } else {
        let pool = PgPoolOptions::new().max_connections(12).connect(&url).await?;
        serve(PgStore::from_pool(pool.clone()), Db::Pg(pool)).await
    }
}

async fn serve<S: TaskStore>(store: S, db: Db) -> Result<(), BoxError> {
    let worker = Worker::builder_with_state(store, db)
        .register::<Order>()
        .queues(["orders"])
        .worker_id(env("WORKER_NAME")?)
        .concurrency(env("CONCURRENCY")?.parse()?)
        .lease_ttl(env_ms("LEASE_MS")?)
        .heartbeat_interval(env_ms("HEARTBEAT_MS")?)
        .trust_margin(env_ms("MARGIN_MS")?)
        .cancel_grace(env_ms("GRACE_MS")?)
        .poll_interval(env_ms("POLL_MS")?)
        .shutdown_timeout(Duration::from_secs(5))
        .build()?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    worker.start().await;
    println!("ready");
    term.recv().await;
    worker.stop().await;
    println!("{:?}", worker.stats());
    Ok(())
}
