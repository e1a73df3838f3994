//! Run with: cargo run -p example-observability
//!
//! A busy leasehold deployment in one process, for its metrics and dashboards: three workers contend
//! for one PostgreSQL queue, two schedulers contend for leadership (the leader steps down every few
//! seconds, so leadership changes hands), jobs bump a shared counter under optimistic version checks,
//! some fail and are retried or discarded, some keyed enqueues repeat, and some running tasks are
//! cancelled from outside so their holders lose the lease.
//!
//! The admin endpoints (`/metrics`, `/healthz`, `/readyz`) listen on `LEASEHOLD_ADMIN_ADDR`
//! (`127.0.0.1:9464` by default). `docker compose up -d` runs this example with Prometheus scraping it
//! and Grafana showing the dashboards of `dashboards/`. `DATABASE_URL` names the PostgreSQL database
//! (`postgres://postgres@127.0.0.1:5432/postgres` by default); `RUN_FOR_SECS` ends it after a while.

use std::net::SocketAddr;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

use leasehold::admin::AdminServer;
use leasehold::cron::{Schedule, Scheduler};
use leasehold::guard::{VersionRetry, expect_version, retry_on_conflict};
use leasehold::postgres::PgStore;
use leasehold::{Client, EnqueueOptions, Job, JobContext, JobOptions, JobResult, Outcome, Worker};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A unit of work: most complete, some fail once, some always fail.
#[derive(Serialize, Deserialize)]
struct Work {
    n: u64,
}

impl Job for Work {
    const KIND: &'static str = "work";
    type State = PgStore;
    fn options() -> JobOptions {
        JobOptions { max_attempts: Some(2), ..JobOptions::default() }
    }
    async fn run(self, ctx: JobContext<PgStore>) -> JobResult {
        tokio::time::sleep(Duration::from_millis(2 + self.n % 20)).await;
        match self.n % 10 {
            0 if ctx.attempt() == 1 => Err("upstream timed out".into()),
            7 => Err("malformed input".into()),
            _ => Ok(Outcome::Complete),
        }
    }
}

/// Adds one to a shared counter with a compare-and-set on its version; contention makes conflicts.
#[derive(Serialize, Deserialize)]
struct Bump;

impl Job for Bump {
    const KIND: &'static str = "bump";
    type State = PgStore;
    async fn run(self, ctx: JobContext<PgStore>) -> JobResult {
        let pool = ctx.state().pool().clone();
        let policy = VersionRetry { attempts: 50, ..VersionRetry::default() };
        retry_on_conflict(&policy, |_| {
            let pool = pool.clone();
            async move {
                let (value, version): (i64, i64) =
                    sqlx::query_as("SELECT value, version FROM observability_counter WHERE id = 1")
                        .fetch_one(&pool)
                        .await?;
                tokio::time::sleep(Duration::from_millis(3)).await;
                let done = sqlx::query(
                    "UPDATE observability_counter SET value = $1, version = version + 1 WHERE id = 1 AND version = $2",
                )
                .bind(value + 1)
                .bind(version)
                .execute(&pool)
                .await?;
                expect_version(done.rows_affected(), "observability_counter/1", version)?;
                Ok(())
            }
        })
        .await?;
        Ok(Outcome::Complete)
    }
}

/// A long job, some of which are cancelled while they run.
#[derive(Serialize, Deserialize)]
struct Long;

impl Job for Long {
    const KIND: &'static str = "long";
    type State = PgStore;
    async fn run(self, ctx: JobContext<PgStore>) -> JobResult {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3)) => Ok(Outcome::Complete),
            _ = ctx.cancelled() => Ok(Outcome::Complete),
        }
    }
}

/// The scheduled job: runs once a second, on one instance.
#[derive(Serialize, Deserialize)]
struct Tick;

impl Job for Tick {
    const KIND: &'static str = "tick";
    type State = PgStore;
    async fn run(self, _ctx: JobContext<PgStore>) -> JobResult {
        Ok(Outcome::Complete)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn,leasehold=info".into()),
        )
        .init();
    let handle = leasehold::telemetry::prometheus_builder().install_recorder()?;

    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.into());
    let store = PgStore::connect(&url).await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS observability_counter (id int PRIMARY KEY, value bigint NOT NULL, version bigint NOT NULL)",
    )
    .execute(store.pool())
    .await?;
    sqlx::query("INSERT INTO observability_counter VALUES (1, 0, 0) ON CONFLICT (id) DO NOTHING")
        .execute(store.pool())
        .await?;

    let mut workers = Vec::new();
    for i in 0..3 {
        let worker = Worker::builder_with_state(store.clone(), store.clone())
            .register::<Work>()
            .register::<Bump>()
            .register::<Long>()
            .register::<Tick>()
            .concurrency(4)
            .poll_interval(Duration::from_millis(200))
            .heartbeat_interval(Duration::from_millis(500))
            .depth_sample_interval(Some(Duration::from_secs(1)))
            .worker_id(format!("observability-{i}"))
            .build()?;
        workers.push(worker);
    }
    let every_second = || Schedule::builder("every-second", "* * * * * *").job(&Tick);
    let mut schedulers = Vec::new();
    for i in 0..2 {
        schedulers.push(
            Scheduler::builder(store.clone())
                .schedule(every_second()?)
                .lease(Duration::from_secs(3), Duration::from_millis(500), Duration::from_millis(800))
                .holder(format!("observability-{i}"))
                .build()?,
        );
    }

    let addr: SocketAddr = match std::env::var("LEASEHOLD_ADMIN_ADDR") {
        Ok(a) => a.parse()?,
        Err(_) => leasehold::admin::DEFAULT_ADDR,
    };
    let mut admin = AdminServer::builder().bind(addr).metrics(handle).store_check(store.clone());
    for w in &workers {
        admin = admin.worker_check(w.health());
    }
    let admin = admin.build();
    let addr = admin.start().await?;
    println!("admin listening on http://{addr} (/metrics, /healthz, /readyz)");

    for w in &workers {
        w.start().await;
    }
    for s in &schedulers {
        s.start().await;
    }

    let run_for = std::env::var("RUN_FOR_SECS").ok().and_then(|s| s.parse::<u64>().ok()).map(Duration::from_secs);
    let deadline = run_for.map(|d| tokio::time::Instant::now() + d);
    let client = Client::new(store.clone());
    let mut round: u64 = 0;
    loop {
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            break;
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            r = load(&client, round) => r?,
        }
        // every 8 s the leader steps down: leadership moves to the other scheduler
        if round % 40 == 39 {
            let s = &schedulers[((round / 40) % 2) as usize];
            s.stop().await;
            s.start().await;
        }
        round += 1;
    }

    for s in &schedulers {
        s.stop().await;
    }
    for w in &workers {
        w.stop().await;
    }
    admin.stop().await;
    Ok(())
}

/// One round of load, about 200 ms.
async fn load(client: &Client<PgStore>, round: u64) -> leasehold::Result<()> {
    let base = round * 20;
    client.enqueue_many((base..base + 20).map(|n| Work { n }), EnqueueOptions::default()).await?;
    client.enqueue_many((0..4).map(|_| Bump), EnqueueOptions::default()).await?;
    // keyed enqueues: the same key comes back every round (a hit); now and then with another payload
    let key = format!("work-{}", round % 5);
    let n = if round.is_multiple_of(7) { round } else { round % 5 };
    let _ = client.enqueue_idempotent(Work { n }, EnqueueOptions::default().idempotency_key(key)).await;
    if round.is_multiple_of(5) {
        let id = client.enqueue(Long).await?;
        // cancelled from outside while it runs: its holder finds the lease gone at the next renewal
        let delay = rand::rng().random_range(300..900);
        let client = client.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let _ = client.cancel(id).await;
        });
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}
