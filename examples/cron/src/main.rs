//! Run with: cargo run -p example-cron
//!
//! One singleton scheduled job, defined in code by three instances of a service that run at once: a
//! "digest" every two seconds. The instances elect a leader through a lease; the leader enqueues each
//! tick once (a ledger with a unique key per schedule and tick), and any instance's worker runs it.
//! Halfway through, this program SIGKILLs the leader; another instance takes over within the lease and
//! catches up the ticks it missed. At the end it prints, for every tick, who ran it, and checks that
//! each ran exactly once.
//!
//! With no configuration it uses a new SQLite file, `cron.sqlite`; `DATABASE_URL=postgres://...` runs it
//! on PostgreSQL.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPoolOptions;

use leasehold::cron::{MissedPolicy, OverlapPolicy, Schedule, Scheduler};
use leasehold::postgres::PgStore;
use leasehold::sqlite::SqliteStore;
use leasehold::{BoxError, Job, JobContext, JobResult, Outcome, ScheduleStore, Worker};
use leasehold_testkit::process::{ProcessOptions, WorkerProcess};

const DEFAULT_FILE: &str = "cron.sqlite";
const INSTANCES: usize = 3;
const RUN_FOR: Duration = Duration::from_secs(12);

/// The scheduled job: prints which instance ran which tick.
#[derive(Serialize, Deserialize)]
struct Digest;

impl Job for Digest {
    const KIND: &'static str = "digest";
    type State = String;
    async fn run(self, ctx: JobContext<String>) -> JobResult {
        Ok(Outcome::CompleteWith(serde_json::json!({ "ran_on": ctx.state() })))
    }
}

fn schedule() -> Result<Schedule, leasehold::Error> {
    Schedule::builder("digest", "*/2 * * * * *")
        .time_zone("Europe/Berlin")
        .missed(MissedPolicy::catch_up(Duration::from_secs(60), 30))
        .overlap(OverlapPolicy::Skip)
        .job(&Digest)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt().with_env_filter("error").with_writer(std::io::stderr).init();
    let outcome = match std::env::var("WORKER_NAME") {
        Ok(name) => instance(name).await,
        Err(_) => orchestrate().await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One instance of the service: a scheduler and a worker, like every replica of a real deployment.
async fn instance(name: String) -> Result<(), BoxError> {
    let url = std::env::var("LEASEHOLD_DATABASE_URL")?;
    if url.starts_with("sqlite:") {
        serve(SqliteStore::connect(&url).await?, name).await
    } else {
        serve(PgStore::from_pool(PgPoolOptions::new().connect(&url).await?), name).await
    }
}

async fn serve<S: ScheduleStore>(store: S, name: String) -> Result<(), BoxError> {
    let (lease, heartbeat, margin) = (Duration::from_secs(2), Duration::from_millis(500), Duration::from_millis(700));
    let scheduler = Scheduler::builder(store.clone())
        .schedule(schedule()?)
        .holder(name.clone())
        .lease(lease, heartbeat, margin)
        .build()?;
    // the same lease for the runs: one the killed instance had claimed but not finished is taken over
    // within the program's window (the default lease of 30 s would leave it running past the report)
    let worker = Worker::builder_with_state(store, name)
        .register::<Digest>()
        .lease_ttl(lease)
        .heartbeat_interval(heartbeat)
        .trust_margin(margin)
        .cancel_grace(Duration::from_millis(300))
        .poll_interval(Duration::from_millis(200))
        .build()?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    worker.start().await;
    scheduler.start().await;
    println!("ready");
    term.recv().await;
    scheduler.stop().await;
    worker.stop().await;
    Ok(())
}

async fn orchestrate() -> Result<(), BoxError> {
    let (url, tables) = match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => {
            PgStore::connect(&url).await?;
            (url, ("leasehold.schedule_ticks", "leasehold.tasks"))
        }
        Ok(url) => {
            SqliteStore::connect(&url).await?;
            (url, ("leasehold_schedule_ticks", "leasehold_tasks"))
        }
        Err(_) => {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{DEFAULT_FILE}{suffix}"));
            }
            SqliteStore::open(DEFAULT_FILE).await?;
            (format!("sqlite://{DEFAULT_FILE}"), ("leasehold_schedule_ticks", "leasehold_tasks"))
        }
    };
    let s = schedule()?;
    println!(
        "cron: {INSTANCES} instances define schedule {:?} ({:?} in {}), for {RUN_FOR:?}",
        s.name(),
        s.def().expression,
        s.def().time_zone
    );
    let bin = std::env::current_exe()?;
    let bin = bin.to_str().ok_or("the program's path is not UTF-8")?;
    let opts = ProcessOptions::default();
    let mut instances: Vec<WorkerProcess> =
        (0..INSTANCES).map(|i| WorkerProcess::spawn(bin, &url, &format!("instance-{i}"), &opts)).collect();

    tokio::time::sleep(RUN_FOR / 2).await;
    let leader = leader_of(&url).await?;
    if let Some(i) = instances.iter().position(|p| Some(&p.name) == leader.as_ref()) {
        println!("  killing the leader, {} (SIGKILL)", instances[i].name);
        instances.swap_remove(i).kill();
    }
    tokio::time::sleep(RUN_FOR / 2).await;
    println!("  the leader now: {}", leader_of(&url).await?.unwrap_or_else(|| "none".into()));
    // let the last runs finish, then stop every instance gracefully
    tokio::time::sleep(Duration::from_secs(2)).await;
    for p in instances {
        p.terminate();
    }
    report(&url, tables).await
}

async fn leader_of(url: &str) -> Result<Option<String>, BoxError> {
    let leader = if url.starts_with("postgres") {
        PgStore::from_pool(PgPoolOptions::new().connect(url).await?).leader_get("leasehold-scheduler").await?
    } else {
        SqliteStore::connect(url).await?.leader_get("leasehold-scheduler").await?
    };
    // the holder is the instance's name, '#', and a per-process nonce
    Ok(leader.and_then(|l| l.holder.split('#').next().map(str::to_owned)))
}

/// Every tick of the ledger with its outcome and the instance that ran it.
async fn report(url: &str, (ticks, tasks): (&str, &str)) -> Result<(), BoxError> {
    let tick_text = if url.starts_with("postgres") {
        "to_char(k.tick, 'HH24:MI:SS')"
    } else {
        "strftime('%H:%M:%S', k.tick / 1000, 'unixepoch')"
    };
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {tick_text}, k.outcome, t.state, CAST(t.result ->> 'ran_on' AS TEXT)
           FROM {ticks} k LEFT JOIN {tasks} t ON t.id = k.task_id
          WHERE k.schedule = 'digest' ORDER BY k.tick"
    ));
    let rows: Vec<(String, String, Option<String>, Option<String>)> = if url.starts_with("postgres") {
        sqlx::query_as(sql).fetch_all(&PgPoolOptions::new().connect(url).await?).await?
    } else {
        sqlx::query_as(sql).fetch_all(SqliteStore::connect(url).await?.pool()).await?
    };
    let mut per_instance: BTreeMap<String, usize> = BTreeMap::new();
    let mut problems = 0;
    println!("  tick (UTC)  outcome     ran on");
    for (tick, outcome, state, ran_on) in &rows {
        let ran_on = ran_on.clone().unwrap_or_else(|| "-".into());
        println!("  {tick}    {outcome:<10}  {ran_on}");
        match (outcome.as_str(), state.as_deref()) {
            (_, Some("completed")) => *per_instance.entry(ran_on).or_default() += 1,
            // enqueued while the instances were stopping: it runs at the next start
            (_, Some("available")) => {}
            ("missed" | "skipped" | "buffered", None) => {}
            _ => problems += 1,
        }
    }
    println!("summary: {} ticks, each recorded once; runs per instance {per_instance:?}", rows.len());
    if problems > 0 {
        return Err(format!("{problems} ticks did not complete").into());
    }
    Ok(())
}
