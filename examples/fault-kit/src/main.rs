//! A worker of your own under the fault kit: `tests/faults.rs` starts this binary as real processes,
//! pauses one past its lease, kills one, cuts another's connections, and checks that every invoice was
//! sent exactly once.
//!
//! The handler is the pattern to copy: its write and the task's completion commit in one transaction,
//! fenced by the claim's token ([`leasehold::postgres::complete_in`]), so a holder that was paused or
//! cut off past its lease rolls back instead of sending twice.
//!
//! It follows the protocol of `leasehold_testkit::process::WorkerProcess`: configured by environment
//! variables (`LEASEHOLD_DATABASE_URL`, `WORKER_NAME`, `CONCURRENCY`, `LEASE_MS`, `HEARTBEAT_MS`,
//! `MARGIN_MS`, `GRACE_MS`, `POLL_MS`), it prints `ready` once it runs and stops on SIGTERM.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use leasehold::postgres::{PgStore, complete_in};
use leasehold::{Job, JobContext, JobResult, Outcome, Worker};

/// Sends one invoice.
#[derive(Serialize, Deserialize)]
pub struct SendInvoice {
    /// The invoice.
    pub invoice: i64,
    /// How long sending takes, ms.
    pub work_ms: u64,
}

impl Job for SendInvoice {
    const KIND: &'static str = "send-invoice";
    type State = PgPool;

    async fn run(self, ctx: JobContext<PgPool>) -> JobResult {
        tokio::time::sleep(Duration::from_millis(self.work_ms)).await;
        let mut tx = ctx.state().begin().await?;
        sqlx::query("INSERT INTO sent_invoices (invoice, fence) VALUES ($1, $2)")
            .bind(self.invoice)
            .bind(ctx.lease().fence.0)
            .execute(&mut *tx)
            .await?;
        // fenced: refused (and the insert rolled back) if another worker holds the task now
        complete_in(&mut tx, ctx.lease(), None).await?;
        tx.commit().await?;
        Ok(Outcome::Complete)
    }
}

fn env_ms(name: &str) -> Duration {
    Duration::from_millis(std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(1_000))
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let url = std::env::var("LEASEHOLD_DATABASE_URL").expect("LEASEHOLD_DATABASE_URL");
    let name = std::env::var("WORKER_NAME").expect("WORKER_NAME");
    let opts: PgConnectOptions = url.parse().expect("a PostgreSQL URL");
    // named, so that the fault kit can find and cut this process's connections
    let pool =
        PgPoolOptions::new().max_connections(8).connect_with(opts.application_name(&name)).await.expect("connect");
    let store = PgStore::from_pool(pool.clone());
    sqlx::query("CREATE TABLE IF NOT EXISTS sent_invoices (invoice bigint NOT NULL, fence bigint NOT NULL)")
        .execute(&pool)
        .await
        .expect("the invoices table");
    let worker = Worker::builder_with_state(store, pool)
        .register::<SendInvoice>()
        .worker_id(name)
        .concurrency(std::env::var("CONCURRENCY").ok().and_then(|c| c.parse().ok()).unwrap_or(4))
        .lease_ttl(env_ms("LEASE_MS"))
        .heartbeat_interval(env_ms("HEARTBEAT_MS"))
        .trust_margin(env_ms("MARGIN_MS"))
        .cancel_grace(env_ms("GRACE_MS"))
        .poll_interval(env_ms("POLL_MS"))
        .build()
        .expect("worker configuration");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM");
    worker.start().await;
    println!("ready");
    term.recv().await;
    worker.stop().await;
    println!("{:?}", worker.stats());
}
