//! Run with: cargo run -p example-quickstart
//!
//! The quickstart: starts a worker with a few job kinds and a scheduler with a singleton job, enqueues
//! work (some of which fails once and is retried, and one report submitted twice that runs once), shows
//! live progress, and ends with a summary. With no configuration it runs on a new SQLite
//! file, `quickstart.sqlite` in the current folder; with `DATABASE_URL=postgres://...` it runs the same
//! on PostgreSQL (or `DATABASE_URL=sqlite://path` on another file).

use std::io::Write;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use leasehold::cron::{OverlapPolicy, Schedule, Scheduler};
use leasehold::postgres::PgStore;
use leasehold::sqlite::SqliteStore;
use leasehold::{Client, EnqueueOptions, Job, JobContext, JobResult, Outcome, RetryPolicy, ScheduleStore, Worker};

const DEFAULT_FILE: &str = "quickstart.sqlite";
const GREETINGS: u32 = 120;
const THUMBNAILS: u32 = 60;
const REPORTS: u32 = 20;
/// How many runs of the scheduled job the quickstart waits for.
const SCHEDULED_RUNS: u64 = 2;

/// Says hello.
#[derive(Serialize, Deserialize)]
struct Greet {
    name: String,
}

impl Job for Greet {
    const KIND: &'static str = "greet";
    type State = ();
    async fn run(self, _ctx: JobContext<()>) -> JobResult {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok(Outcome::Complete)
    }
}

/// Makes a thumbnail; every third one fails on its first attempt, as a flaky network would.
#[derive(Serialize, Deserialize)]
struct Thumbnail {
    image: u32,
}

impl Job for Thumbnail {
    const KIND: &'static str = "thumbnail";
    type State = ();
    async fn run(self, ctx: JobContext<()>) -> JobResult {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if self.image.is_multiple_of(3) && ctx.attempt() == 1 {
            return Err(format!("image {}: storage timed out", self.image).into());
        }
        Ok(Outcome::Complete)
    }
}

/// Sums a range and stores the total as the task's result.
#[derive(Serialize, Deserialize)]
struct Report {
    upto: u64,
}

impl Job for Report {
    const KIND: &'static str = "report";
    type State = ();
    async fn run(self, ctx: JobContext<()>) -> JobResult {
        let total: u64 = (1..=self.upto).sum();
        tracing::debug!(fence = %ctx.fence(), total, "report ready");
        Ok(Outcome::CompleteWith(serde_json::json!({ "total": total })))
    }
}

/// A singleton scheduled job: every instance defines it, the leader enqueues each tick once.
#[derive(Serialize, Deserialize)]
struct Heartbeat;

impl Job for Heartbeat {
    const KIND: &'static str = "heartbeat";
    type State = ();
    async fn run(self, _ctx: JobContext<()>) -> JobResult {
        Ok(Outcome::Complete)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => {
            println!("leasehold quickstart on PostgreSQL ({})", redact(&url));
            run(PgStore::connect(&url).await?).await
        }
        Ok(url) => {
            println!("leasehold quickstart on SQLite ({url})");
            run(SqliteStore::connect(&url).await?).await
        }
        Err(_) => {
            // a fresh file each run, so the summary counts this run's tasks only
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{DEFAULT_FILE}{suffix}"));
            }
            println!("leasehold quickstart on SQLite ({DEFAULT_FILE}; set DATABASE_URL=postgres://... for PostgreSQL)");
            run(SqliteStore::open(DEFAULT_FILE).await?).await
        }
    }
}

async fn run<S: ScheduleStore>(store: S) -> Result<(), Box<dyn std::error::Error>> {
    let heartbeat = Schedule::builder("heartbeat", "* * * * * *").overlap(OverlapPolicy::Skip).job(&Heartbeat)?;
    let scheduler = Scheduler::builder(store.clone()).schedule(heartbeat).build()?;
    let worker = Worker::builder(store.clone())
        .register::<Greet>()
        .register::<Thumbnail>()
        .register::<Report>()
        .register::<Heartbeat>()
        .concurrency(8)
        .retry_policy(RetryPolicy { base: Duration::from_millis(300), ..RetryPolicy::default() })
        .build()?;
    worker.start().await;
    scheduler.start().await;

    let started = Instant::now();
    let client = Client::new(store);
    let opts = EnqueueOptions::default;
    client.enqueue_many((0..GREETINGS).map(|i| Greet { name: format!("user-{i}") }), opts()).await?;
    client.enqueue_many((0..THUMBNAILS).map(|image| Thumbnail { image }), opts().priority(-1)).await?;
    let mut reports = Vec::new();
    for i in 1..=REPORTS {
        reports.push(client.enqueue(Report { upto: u64::from(i) * 1000 }).await?);
    }
    // run-once: the monthly report is submitted with an idempotency key; a second submission below
    // returns this task and its result instead of running again
    let monthly = EnqueueOptions::default().idempotency_key("report-2026-11");
    let first = client.enqueue_idempotent(Report { upto: 1_000_000 }, monthly.clone()).await?;
    let total = u64::from(GREETINGS + THUMBNAILS + REPORTS) + 1;
    println!("enqueued {total} tasks; a worker with 8 slots runs them");

    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tick.tick().await;
        let s = worker.stats();
        print!(
            "\r  done {:>4}/{total}  running {:>2}  retries {:>3}  leases lost {}   ",
            s.completed,
            worker.running_tasks().await,
            s.retried,
            s.lease_lost
        );
        std::io::stdout().flush()?;
        // the batch is done, and the scheduled job has run a couple of times
        if s.completed + s.discarded >= total + SCHEDULED_RUNS {
            break;
        }
    }
    scheduler.stop().await;
    worker.stop().await;
    let ticks = scheduler.stats();
    let s = worker.stats();
    let last = client.task(*reports.last().expect("reports were enqueued")).await?;
    let again = client.enqueue_idempotent(Report { upto: 1_000_000 }, monthly).await?;
    assert!(again.existing && again.id == first.id, "the idempotency key holds");
    println!();
    println!("summary");
    println!("  tasks done      {}", s.completed);
    println!("  retries         {}", s.retried);
    println!("  discarded       {}", s.discarded);
    println!("  leases lost     {}", s.lease_lost);
    println!("  last report     {}", last.result.unwrap_or_default());
    println!(
        "  run once        the monthly report submitted twice ran once (second submission: existing {}, result {})",
        again.existing,
        again.result.unwrap_or_default()
    );
    println!(
        "  scheduled       {} on-time runs of \"heartbeat\" (every second; the one leader enqueued each tick once)",
        ticks.enqueued
    );
    println!("  time taken      {:.2?}", started.elapsed());
    Ok(())
}

/// The URL without its password, for printing.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => match url[s + 3..at].find(':') {
            Some(c) => format!("{}:***{}", &url[..s + 3 + c], &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}
