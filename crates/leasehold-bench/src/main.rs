//! leasehold-bench: leasehold's throughput and latency next to the raw SQL limit of the same database,
//! measured in the same run, as ratios.
//!
//! ```text
//! cargo run --release -p leasehold-bench -- [--quick] [--growth] [--backlog N]... [--pin-secs N] [--sqlite-only] [--pg-only]
//! ```
//!
//! `DATABASE_URL` names the PostgreSQL server and a database to administer it from (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). The program creates a fresh database
//! `leasehold_bench` there, measures inside it and drops it at the end, so no other data is touched.
//! SQLite runs on temporary files that are removed afterwards.
//!
//! Every figure is measured in interleaved passes (the raw limit, then leasehold, step by step, the
//! whole sequence repeated); the report shows the median of each figure over the passes, and each
//! ratio as the median of the per-pass ratios, so a ratio only ever compares figures measured minutes
//! apart on the same server. The last line of the output is one JSON object prefixed `BENCH_JSON `.
//!
//! # Layout
//! - `raw.rs`: the raw SQL limit on PostgreSQL, a minimal jobs table driven directly through sqlx.
//! - `framework.rs`: the same figures through leasehold's client, worker and store (generic over the
//!   store, so SQLite is measured by the same code).
//! - `sqlite.rs`: leasehold on SQLite beside SQLite's own limit; `sqlite_limit.rs`: that limit, a minimal
//!   jobs table and a lease table driven directly through sqlx.
//! - `growth.rs`: how cost grows with the backlog and with a pinned MVCC horizon (`--growth`);
//!   `sqlite_growth.rs`: the same on SQLite, with a long read transaction in the horizon's place.
//! - `jobs.rs`: the no-op job and the probe job.
//! - `timing.rs`: client loops that start together, rates, percentiles, medians.
//! - `db.rs`: the benchmark database.
//! - `report.rs`: the figures' names, the tables and the `BENCH_JSON` line.

/// Runs a step of the raw limit and the same step of leasehold's in an order that alternates with the
/// pass (raw first in odd passes), so that neither side always runs first.
macro_rules! both {
    ($pass:expr, $raw:block, $ours:block) => {
        if $pass % 2 == 1 {
            $raw
            $ours
        } else {
            $ours
            $raw
        }
    };
}

mod allocs;
mod cpu;
mod db;
mod framework;
mod growth;
mod jobs;
mod loops;
mod raw;
mod report;
mod sqlite;
mod sqlite_growth;
mod sqlite_limit;
mod timing;

use std::time::{Duration, Instant};

use sqlx::PgPool;

use leasehold::postgres::PgStore;

use crate::allocs::AllocMark;
use crate::cpu::CpuMark;
use crate::db::BenchDb;
use crate::framework::Finished;
use crate::raw::Claim;
use crate::report::{Figures, key};

/// Errors of the benchmark: anything, reported once at the end.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Results of the benchmark's steps.
pub(crate) type Res<T> = Result<T, BoxError>;

/// How long and how much each measurement runs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Profile {
    /// Its name, as printed.
    pub(crate) name: &'static str,
    /// Interleaved passes; every figure is the median over them.
    pub(crate) passes: usize,
    /// How long each timed phase runs: single inserts and enqueues, claims of 1 and 10, lease pairs.
    pub(crate) phase: Duration,
    /// Tasks enqueued in chunks of 1,000 and then drained, per pass (PostgreSQL, raw and leasehold).
    pub(crate) drain_tasks: u64,
    /// Rows put in the raw jobs table before the claim-1 and claim-10 phases (more than they can take).
    pub(crate) claim_fill: u64,
    /// Rows put in the raw jobs table before the claim-100 phase on a full queue (more than it takes).
    pub(crate) full_fill: u64,
    /// Steady phases (a producer enqueues while the queue drains): not counted at first...
    pub(crate) steady_warmup: Duration,
    /// ...then measured for this long.
    pub(crate) steady: Duration,
    /// Idle enqueue-to-start latency samples (and LISTEN/NOTIFY floor samples), per pass.
    pub(crate) latency_samples: usize,
    /// Tasks enqueued and drained per pass on SQLite.
    pub(crate) sqlite_drain_tasks: u64,
    /// `--growth`: single claims of 10 timed per backlog.
    pub(crate) growth_claim_samples: usize,
    /// `--growth`: how long the worker drains each backlog (less if it empties first).
    pub(crate) growth_drain: Duration,
    /// `--growth`: how long each steady phase runs, with and without a pinned MVCC horizon.
    pub(crate) growth_pinned: Duration,
    /// `--growth`: the large backlog, unless `--backlog N` names one.
    pub(crate) growth_backlog: u64,
    /// `--growth`: each long steady run, with and without retention.
    pub(crate) growth_long: Duration,
}

/// The default profile: a few minutes on two cores.
pub(crate) const DEFAULT_PROFILE: Profile = Profile {
    name: "default",
    passes: 3,
    phase: Duration::from_secs(2),
    drain_tasks: 100_000,
    claim_fill: 100_000,
    full_fill: 400_000,
    steady_warmup: Duration::from_secs(1),
    steady: Duration::from_secs(5),
    latency_samples: 200,
    sqlite_drain_tasks: 50_000,
    growth_claim_samples: 300,
    growth_drain: Duration::from_secs(10),
    growth_pinned: Duration::from_secs(20),
    growth_backlog: 1_000_000,
    growth_long: Duration::from_secs(60),
};

/// `--quick`: about a minute, to smoke-run the program; its figures are noisier.
const QUICK_PROFILE: Profile = Profile {
    name: "quick",
    passes: 3,
    phase: Duration::from_millis(500),
    drain_tasks: 20_000,
    claim_fill: 20_000,
    full_fill: 100_000,
    steady_warmup: Duration::from_millis(300),
    steady: Duration::from_millis(1_500),
    latency_samples: 50,
    sqlite_drain_tasks: 10_000,
    growth_claim_samples: 100,
    growth_drain: Duration::from_secs(2),
    growth_pinned: Duration::from_secs(3),
    growth_backlog: 100_000,
    growth_long: Duration::from_secs(8),
};

/// Clients of the N-client figures, and claimers of the raw claim limit: the drain target compares the
/// worker with the claim-100 limit at 8 clients, the concurrency where that limit is highest on two
/// cores; leasehold's default pool (10 connections) serves 8 clients at once.
pub(crate) const CLIENTS: usize = 8;
/// The worker's concurrency (tasks at once) in drain and steady phases: as many tasks in flight as the
/// limit's [`CLIENTS`] claimers of 100 hold. With 400 the worker's claims were smaller and the database's
/// cores idler (`--drain-only 50000` rounds of 2026-12-06: 52-60k jobs/s with the cores 72-74% busy,
/// against 65-72k and 75-85% with 800, the limit at 84-106k).
pub(crate) const WORKER_CONCURRENCY: u32 = 800;
/// Rows per statement of every batch enqueue, raw (`INSERT ... SELECT`) and leasehold (`enqueue_many`).
pub(crate) const CHUNK: u64 = 1_000;
/// Steady phases: the producer adds a chunk only while fewer than this many tasks wait.
pub(crate) const STEADY_MAX_BACKLOG: u64 = 10_000;
/// Pause after each latency sample, so the next one finds an idle worker.
pub(crate) const LATENCY_GAP: Duration = Duration::from_millis(5);
/// Latency samples taken first and dropped (fresh connections, cold caches).
pub(crate) const LATENCY_WARMUP: usize = 5;
/// The longest one latency sample may take before the run fails.
pub(crate) const SAMPLE_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a drain may take before the run fails.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(600);
/// Lease names are drawn at random from this many (as the limit's lease script does), so two clients
/// almost never want the same lease.
pub(crate) const LEASE_KEYS: u64 = 10_000_000;
/// Claimers of SQLite's own limit: SQLite has one writer at a time, so more only wait on its lock.
pub(crate) const SQLITE_CLIENTS: usize = 1;
/// `--growth`: the small backlog every larger one is compared with.
pub(crate) const GROWTH_BASE_BACKLOG: u64 = 10_000;

const USAGE: &str =
    "usage: leasehold-bench [--quick] [--growth] [--backlog N]... [--pin-secs N] [--sqlite-only] [--pg-only]

  --quick           short phases (about a minute in all), to smoke-run the program
  --growth          also measure how cost grows: a backlog of 10k and of a large one, and a pinned MVCC horizon
                    (on SQLite, a long read transaction)
  --backlog N       a large backlog of --growth (default 1,000,000; 100,000 with --quick); implies --growth;
                    give it more than once to measure several (--backlog 1000000 --backlog 10000000)
  --pin-secs N      how long --growth pins the MVCC horizon (on SQLite, holds the read transaction), and runs
                    its baseline (default 20; 3 with --quick); implies --growth
  --pg-only         PostgreSQL only
  --sqlite-only     SQLite only
  --drain-only N    leasehold's PostgreSQL drain of N tasks and the raw drain of as many, five times, with
                    the CPU each took, nothing else (for profiling); with --sqlite-only, the same on SQLite
  --latency-only N  the LISTEN/NOTIFY floor and leasehold's idle latency, N rounds in alternating order,
                    nothing else (for profiling); with --sqlite-only, the in-process wake-up floor and
                    leasehold's idle latency on SQLite
  --enqueue-only N  the raw single-row INSERT and leasehold's single enqueue, one client, N rounds of 3 s
                    in alternating order, nothing else (for profiling)
  --limit-sweep N   the raw claim 100 + complete on a full queue of N jobs with 1 to 32 clients, twice,
                    nothing else (where the raw limit peaks on this machine)

DATABASE_URL names the PostgreSQL server (default postgres://postgres@127.0.0.1:5432/postgres); a fresh
database leasehold_bench is created there and dropped at the end.";

/// The command line.
#[derive(Debug)]
struct Options {
    quick: bool,
    growth: bool,
    backlogs: Vec<u64>,
    pin_secs: Option<u64>,
    drain_only: Option<u64>,
    latency_only: Option<u64>,
    enqueue_only: Option<u64>,
    limit_sweep: Option<u64>,
    postgres: bool,
    sqlite: bool,
}

impl Options {
    /// Parses the arguments; `None` when help was asked for.
    fn parse(mut args: impl Iterator<Item = String>) -> Res<Option<Self>> {
        let mut o = Self {
            quick: false,
            growth: false,
            backlogs: Vec::new(),
            pin_secs: None,
            drain_only: None,
            latency_only: None,
            enqueue_only: None,
            limit_sweep: None,
            postgres: true,
            sqlite: true,
        };
        let (mut pg_only, mut sqlite_only) = (false, false);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => o.quick = true,
                "--growth" => o.growth = true,
                "--backlog" => {
                    let n = args.next().ok_or("--backlog needs a number of tasks")?;
                    o.backlogs.push(parse_count(&n)?);
                }
                "--pin-secs" => {
                    let n = args.next().ok_or("--pin-secs needs a number of seconds")?;
                    o.pin_secs = Some(parse_count(&n)?);
                }
                "--pg-only" => pg_only = true,
                "--drain-only" => {
                    let n = args.next().ok_or("--drain-only needs a number of tasks")?;
                    o.drain_only = Some(parse_count(&n)?);
                }
                "--latency-only" => {
                    let n = args.next().ok_or("--latency-only needs a number of rounds")?;
                    o.latency_only = Some(parse_count(&n)?);
                }
                "--enqueue-only" => {
                    let n = args.next().ok_or("--enqueue-only needs a number of rounds")?;
                    o.enqueue_only = Some(parse_count(&n)?);
                }
                "--limit-sweep" => {
                    let n = args.next().ok_or("--limit-sweep needs a number of tasks")?;
                    o.limit_sweep = Some(parse_count(&n)?);
                }
                "--sqlite-only" => sqlite_only = true,
                "-h" | "--help" => return Ok(None),
                other => match other.strip_prefix("--backlog=") {
                    Some(n) => o.backlogs.push(parse_count(n)?),
                    None => return Err(format!("unknown argument {other:?}\n\n{USAGE}").into()),
                },
            }
        }
        if pg_only && sqlite_only {
            return Err("--pg-only and --sqlite-only exclude each other".into());
        }
        if let Some(n) = o.backlogs.iter().find(|n| **n < GROWTH_BASE_BACKLOG) {
            return Err(format!(
                "--backlog {n} is below the {GROWTH_BASE_BACKLOG} tasks every backlog is compared with"
            )
            .into());
        }
        o.growth |= !o.backlogs.is_empty() || o.pin_secs.is_some();
        o.postgres = !sqlite_only;
        o.sqlite = !pg_only;
        Ok(Some(o))
    }

    /// With `--growth`, the backlogs to measure, smallest first: the 10k baseline, then each one named
    /// by `--backlog` (or `default`) once.
    fn growth_backlogs(&self, default: u64) -> Option<Vec<u64>> {
        self.growth.then(|| {
            let mut sizes = if self.backlogs.is_empty() { vec![default] } else { self.backlogs.clone() };
            sizes.push(GROWTH_BASE_BACKLOG);
            sizes.sort_unstable();
            sizes.dedup();
            sizes
        })
    }
}

/// A count such as `10000000`, `10_000_000` or `10,000,000`.
fn parse_count(s: &str) -> Res<u64> {
    let digits = s.replace(['_', ','], "");
    let n: u64 = digits.parse().map_err(|e| format!("not a count: {s:?} ({e})"))?;
    if n == 0 {
        return Err(format!("{s:?}: a count must be at least 1").into());
    }
    Ok(n)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run().await {
        eprintln!("leasehold-bench: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Res<()> {
    let Some(opts) = Options::parse(std::env::args().skip(1))? else {
        println!("{USAGE}");
        return Ok(());
    };
    if let Some(n) = opts.drain_only {
        if !opts.postgres {
            return sqlite::drain_only(n).await;
        }
        return drain_only(n).await;
    }
    if let Some(n) = opts.latency_only {
        if !opts.postgres {
            return sqlite::latency_only(n).await;
        }
        return latency_only(n).await;
    }
    if let Some(n) = opts.enqueue_only {
        if !opts.postgres {
            return Err("--enqueue-only measures PostgreSQL only".into());
        }
        return enqueue_only(n).await;
    }
    if let Some(n) = opts.limit_sweep {
        return limit_sweep(n).await;
    }
    let mut profile = if opts.quick { QUICK_PROFILE } else { DEFAULT_PROFILE };
    if let Some(secs) = opts.pin_secs {
        profile.growth_pinned = Duration::from_secs(secs);
    }
    let backlogs = opts.growth_backlogs(profile.growth_backlog);
    let started = Instant::now();
    let mut figs = Figures::default();
    let mut notes = vec![format!(
        "this machine: {} cores, load generator and database on the same cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    )];
    let mut sections = Vec::new();

    if opts.postgres {
        let bench_db = BenchDb::create(&pg_url()?).await?;
        let outcome = postgres(&bench_db, &profile, backlogs.as_deref(), &mut figs, &mut notes).await;
        let dropped = bench_db.drop_database().await;
        outcome?;
        dropped?;
        sections.push(report::postgres_section(&profile));
        if let Some(b) = &backlogs {
            sections.push(growth::section(b));
        }
    }
    if opts.sqlite {
        notes.push(sqlite::run(&profile, &mut figs).await?);
        sections.push(report::sqlite_section(&profile));
        if let Some(b) = &backlogs {
            notes.push(sqlite_growth::run(&profile, b, &mut figs).await?);
            sections.push(sqlite_growth::section(b));
        }
    }

    notes.push(format!("the run took {:.0?}", started.elapsed()));
    report::print(&profile, &sections, &figs, &notes);
    Ok(())
}

/// The PostgreSQL server `DATABASE_URL` names, or the default one.
fn pg_url() -> Res<String> {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| db::DEFAULT_URL.to_owned());
    if !url.starts_with("postgres") {
        return Err(format!("DATABASE_URL must name a PostgreSQL server, got {url:?}").into());
    }
    Ok(url)
}

/// Both sides on the benchmark database: the raw limit's pool, its schema set up, and leasehold's
/// store, migrated.
struct Sides {
    raw_pool: PgPool,
    store: PgStore,
}

impl Sides {
    async fn open(bench_db: &BenchDb) -> Res<Self> {
        // the raw clients, the steady producer, the listener: CLIENTS + 2 connections at most
        let raw_pool = bench_db.pool(CLIENTS as u32 + 2, "leasehold-bench-raw").await?;
        raw::setup(&raw_pool).await?;
        // leasehold gets the pool PgStore::connect would open: its options, its application name
        let store = PgStore::from_pool(bench_db.store_pool().await?);
        store.migrate().await?;
        Ok(Self { raw_pool, store })
    }

    async fn close(self) {
        self.store.close().await;
        self.raw_pool.close().await;
    }
}

/// One phase alone (`--drain-only`, `--latency-only`) on a fresh benchmark database, dropped afterwards
/// whatever the phase answered.
async fn alone<F>(phase: F) -> Res<()>
where
    F: AsyncFnOnce(&Sides) -> Res<()>,
{
    let bench_db = BenchDb::create(&pg_url()?).await?;
    let sides = Sides::open(&bench_db).await?;
    let outcome = phase(&sides).await;
    sides.close().await;
    bench_db.drop_database().await?;
    outcome
}

/// `--drain-only N`: five rounds of two drains of `N` no-op tasks on PostgreSQL, for a profiler to watch (a
/// worker that keeps the tasks it completes, then one that deletes them), each round followed by the raw
/// limit's drain of as many jobs (a full, vacuumed queue), with the CPU both took.
async fn drain_only(n: u64) -> Res<()> {
    alone(async |Sides { raw_pool, store }: &Sides| {
        for round in 1..=5 {
            clean(raw_pool, store).await?;
            for finished in [Finished::Kept, Finished::Deleted] {
                enqueue_for_drain(raw_pool, store, n).await?;
                let (ours, cpu) = with_cpu(n, framework::drain(store, n, finished)).await?;
                println!("drain {round}, completed tasks {finished:?}: {ours:.0} jobs/s{cpu}");
                clean(raw_pool, store).await?;
            }
            raw::fill_vacuumed(raw_pool, n).await?;
            let (limit, cpu) = with_cpu(n, raw::claim(raw_pool, Claim::Hundred, CLIENTS, TIMEOUT)).await?;
            println!("  raw claim 100 + complete of as many, {CLIENTS} clients: {limit:.0} jobs/s{cpu}");
        }
        Ok(())
    })
    .await
}

/// `--limit-sweep N`: the raw limit's claim 100 + complete on a full, vacuumed queue of `N` jobs with 1,
/// 2, 4, 8, 16 and 32 clients, in two rounds, so that the client count of the drain's limit (8) can be
/// checked against this machine's best.
async fn limit_sweep(n: u64) -> Res<()> {
    const SWEEP: [usize; 6] = [1, 2, 4, 8, 16, 32];
    let bench_db = BenchDb::create(&pg_url()?).await?;
    let outcome = async {
        let pool = bench_db.pool(SWEEP[SWEEP.len() - 1] as u32 + 2, "leasehold-bench-raw").await?;
        raw::setup(&pool).await?;
        for round in 1..=2 {
            for clients in SWEEP {
                sqlx::query("TRUNCATE bench_raw.jobs").execute(&pool).await?;
                raw::fill_vacuumed(&pool, n).await?;
                let rate = raw::claim(&pool, Claim::Hundred, clients, TIMEOUT).await?;
                println!("round {round}: claim 100 + complete, {clients:>2} clients: {rate:.0} jobs/s");
            }
        }
        pool.close().await;
        Ok::<_, BoxError>(())
    }
    .await;
    bench_db.drop_database().await?;
    outcome
}

/// Runs a phase of `tasks` tasks; answers its figure and, where `/proc` tells, the CPU it took.
pub(crate) async fn with_cpu(tasks: u64, phase: impl Future<Output = Res<f64>>) -> Res<(f64, String)> {
    let mark = CpuMark::take();
    let figure = phase.await?;
    Ok((figure, CpuMark::note(mark, tasks)))
}

/// `--latency-only N`: `N` rounds of the LISTEN/NOTIFY floor and leasehold's idle latency on PostgreSQL,
/// in alternating order, with the default profile's samples; the medians of the rounds' p50s.
async fn latency_only(rounds: u64) -> Res<()> {
    alone(async |Sides { raw_pool, store }: &Sides| {
        let samples = DEFAULT_PROFILE.latency_samples;
        let (mut floor, mut ours) = (Vec::new(), Vec::new());
        for round in 1..=rounds {
            both!(round, { floor.push(raw::notify_floor(raw_pool, samples).await?.p50) }, {
                ours.push(framework::idle_latency(store, samples).await?.p50)
            });
            clean(raw_pool, store).await?;
            let (f, o) = (floor[floor.len() - 1], ours[ours.len() - 1]);
            println!("round {round}: floor p50 {f:.3} ms, leasehold p50 {o:.3} ms, {:.2}x", o / f);
        }
        let (f, o) = (timing::median(&floor), timing::median(&ours));
        println!("medians: floor p50 {f:.3} ms, leasehold p50 {o:.3} ms, {:.2}x", o / f);
        Ok(())
    })
    .await
}

/// `--enqueue-only N`: `N` rounds of the raw single-row INSERT and leasehold's `Client::enqueue` on
/// PostgreSQL, one client, [`ENQUEUE_ONLY_PHASE`] each, in alternating order, with the CPU each took per
/// row; the median of the rounds' ratios. Both tables are emptied after every round.
async fn enqueue_only(rounds: u64) -> Res<()> {
    alone(async |Sides { raw_pool, store }: &Sides| {
        let mut ratios = Vec::new();
        for round in 1..=rounds {
            let (limit, ours);
            both!(
                round,
                {
                    let phase = raw::insert_single(raw_pool, 1, ENQUEUE_ONLY_PHASE);
                    let (rate, cpu) = with_cpu_per_row(raw_pool, raw::JOBS, phase).await?;
                    println!("round {round}: raw INSERT {rate:.0} rows/s{cpu}");
                    limit = rate;
                },
                {
                    let phase = framework::single_enqueue(store, 1, ENQUEUE_ONLY_PHASE);
                    let (rate, cpu) = with_cpu_per_row(raw_pool, db::TASKS, phase).await?;
                    println!("round {round}: leasehold Client::enqueue {rate:.0} rows/s{cpu}");
                    ours = rate;
                }
            );
            clean(raw_pool, store).await?;
            ratios.push(ours / limit);
        }
        println!("median of the rounds' ratios: {:.2}x", timing::median(&ratios));
        Ok(())
    })
    .await
}

/// How long each side runs in a round of `--enqueue-only`.
const ENQUEUE_ONLY_PHASE: Duration = Duration::from_secs(3);

/// Runs a phase that fills `table` with one row per operation; answers its figure and, where `/proc`
/// tells, the CPU it took per row in the table afterwards.
async fn with_cpu_per_row(pool: &PgPool, table: &str, phase: impl Future<Output = Res<f64>>) -> Res<(f64, String)> {
    let mark = CpuMark::take();
    let figure = phase.await?;
    let rows = db::rows(pool, table).await?;
    Ok((figure, CpuMark::note(mark, rows)))
}

async fn postgres(
    bench_db: &BenchDb,
    p: &Profile,
    backlogs: Option<&[u64]>,
    figs: &mut Figures,
    notes: &mut Vec<String>,
) -> Res<()> {
    let sides = Sides::open(bench_db).await?;
    let Sides { raw_pool, store } = &sides;
    notes.push(db::describe(raw_pool).await?);
    let checkpoints = match db::checkpoint(raw_pool).await {
        Ok(()) => true,
        Err(e) => {
            notes.push(format!("CHECKPOINT refused ({e}): the batch enqueue's rounds ran without it"));
            false
        }
    };

    for pass in 1..=p.passes {
        pg_pass(raw_pool, store, p, figs, pass, checkpoints).await?;
    }
    if let Some(backlogs) = backlogs {
        notes.push(growth::run(raw_pool, store, p, backlogs, figs).await?);
    }
    sides.close().await;
    Ok(())
}

/// One interleaved pass on PostgreSQL: each figure of the raw limit and leasehold's, step by step.
/// Both tables are emptied before and after every step, so no step pays for another's dead rows.
async fn pg_pass(
    raw_pool: &PgPool,
    store: &PgStore,
    p: &Profile,
    figs: &mut Figures,
    pass: usize,
    checkpoints: bool,
) -> Res<()> {
    let step = |what: &str| eprintln!("[postgres pass {pass}/{}] {what}", p.passes);
    clean(raw_pool, store).await?;

    step("batch enqueue: INSERT of 1,000 rows per statement and enqueue_many of 1,000, alternating rounds");
    let (raw_batch, ours_batch) = batch_rounds(raw_pool, store, p, pass, checkpoints).await?;
    figs.put(key::RAW_BATCH, raw_batch);
    figs.put(key::LH_BATCH, ours_batch);

    both!(
        pass,
        {
            step("raw: INSERT of 1,000 rows per statement, then claim 100 + complete until empty");
            raw::insert_batches(raw_pool, p.drain_tasks).await?;
            db::analyze(raw_pool, raw::JOBS).await?;
            let drain = raw::claim(raw_pool, Claim::Hundred, CLIENTS, TIMEOUT);
            measured_drain(raw_pool, figs, p.drain_tasks, RAW_DRAIN_KEYS, drain).await?;
            clean(raw_pool, store).await?;
        },
        {
            step("leasehold: enqueue_many in chunks of 1,000, then a worker drains them");
            enqueue_for_drain(raw_pool, store, p.drain_tasks).await?;
            let drain = framework::drain(store, p.drain_tasks, Finished::Kept);
            measured_drain(raw_pool, figs, p.drain_tasks, LH_DRAIN_KEYS, drain).await?;
            clean(raw_pool, store).await?;
            step("leasehold: the same with a worker that deletes the tasks it completes");
            enqueue_for_drain(raw_pool, store, p.drain_tasks).await?;
            let drain = framework::drain(store, p.drain_tasks, Finished::Deleted);
            measured_drain(raw_pool, figs, p.drain_tasks, LH_DRAIN_DELETING_KEYS, drain).await?;
            clean(raw_pool, store).await?;
        }
    );

    step("raw: claim 100 + complete on a full queue (prefilled and vacuumed, never drained)");
    raw::fill_vacuumed(raw_pool, p.full_fill).await?;
    figs.put(key::RAW_FULL, raw::claim(raw_pool, Claim::Hundred, CLIENTS, p.phase).await?);
    clean(raw_pool, store).await?;

    both!(
        pass,
        {
            step("raw: single-row INSERT, 1 client and 8 clients");
            let allocs = AllocMark::take();
            figs.put(key::RAW_INSERT_1, raw::insert_single(raw_pool, 1, p.phase).await?);
            figs.put(key::RAW_INSERT_ALLOCS, allocs.per_task(db::rows(raw_pool, raw::JOBS).await?));
            figs.put(key::RAW_INSERT_N, raw::insert_single(raw_pool, CLIENTS, p.phase).await?);
            clean(raw_pool, store).await?;
        },
        {
            step("leasehold: Client::enqueue, 1 client and 8 clients; then 1 client while a worker waits");
            let allocs = AllocMark::take();
            figs.put(key::LH_ENQUEUE_1, framework::single_enqueue(store, 1, p.phase).await?);
            figs.put(key::LH_ENQUEUE_ALLOCS, allocs.per_task(db::rows(raw_pool, db::TASKS).await?));
            figs.put(key::LH_ENQUEUE_N, framework::single_enqueue(store, CLIENTS, p.phase).await?);
            db::announce_waiting(store.pool(), true).await?;
            figs.put(key::LH_ENQUEUE_1_NOTIFY, framework::single_enqueue(store, 1, p.phase).await?);
            db::announce_waiting(store.pool(), false).await?;
            clean(raw_pool, store).await?;
        }
    );

    both!(
        pass,
        {
            step("raw: steady claim 100 + complete with a producer running");
            figs.put(key::RAW_STEADY, raw::steady(raw_pool, CLIENTS, p.steady_warmup, p.steady).await?);
            clean(raw_pool, store).await?;
        },
        {
            step("leasehold: steady worker with a producer running");
            figs.put(key::LH_STEADY, framework::steady(store, p.steady_warmup, p.steady).await?);
            clean(raw_pool, store).await?;
        }
    );

    both!(
        pass,
        {
            step("raw: LISTEN/NOTIFY floor");
            figs.put_latency(key::RAW_NOTIFY, raw::notify_floor(raw_pool, p.latency_samples).await?);
            clean(raw_pool, store).await?;
        },
        {
            step("leasehold: idle enqueue-to-start latency");
            figs.put_latency(key::LH_LATENCY, framework::idle_latency(store, p.latency_samples).await?);
            clean(raw_pool, store).await?;
        }
    );

    both!(
        pass,
        {
            step("raw: lease row acquire + release, 1 client and 8 clients");
            figs.put(key::RAW_LEASE_1, raw::lease_pairs(raw_pool, 1, p.phase).await?);
            figs.put(key::RAW_LEASE_N, raw::lease_pairs(raw_pool, CLIENTS, p.phase).await?);
        },
        {
            step("leasehold: leader_acquire + leader_release, 1 client and 8 clients");
            figs.put(key::LH_LEASE_1, framework::lease_pairs(store, 1, p.phase).await?);
            figs.put(key::LH_LEASE_N, framework::lease_pairs(store, CLIENTS, p.phase).await?);
        }
    );

    step("raw: claim 10 + complete and claim 1 + complete (the limit alone)");
    raw::fill(raw_pool, p.claim_fill).await?;
    figs.put(key::RAW_CLAIM10, raw::claim(raw_pool, Claim::Ten, CLIENTS, p.phase).await?);
    raw::reset(raw_pool).await?;
    raw::fill(raw_pool, p.claim_fill).await?;
    figs.put(key::RAW_CLAIM1, raw::claim(raw_pool, Claim::One, CLIENTS, p.phase).await?);
    clean(raw_pool, store).await?;
    Ok(())
}

/// Where one side's drain figures go: its rate, and per task its allocations, WAL bytes and writing
/// transactions.
struct DrainKeys {
    rate: &'static str,
    allocations: &'static str,
    wal_bytes: &'static str,
    transactions: &'static str,
}

const RAW_DRAIN_KEYS: DrainKeys = DrainKeys {
    rate: key::RAW_DRAIN,
    allocations: key::RAW_DRAIN_ALLOCS,
    wal_bytes: key::RAW_DRAIN_WAL,
    transactions: key::RAW_DRAIN_XACTS,
};

const LH_DRAIN_KEYS: DrainKeys = DrainKeys {
    rate: key::LH_DRAIN,
    allocations: key::LH_DRAIN_ALLOCS,
    wal_bytes: key::LH_DRAIN_WAL,
    transactions: key::LH_DRAIN_XACTS,
};

const LH_DRAIN_DELETING_KEYS: DrainKeys = DrainKeys {
    rate: key::LH_DRAIN_DELETING,
    allocations: key::LH_DRAIN_DELETING_ALLOCS,
    wal_bytes: key::LH_DRAIN_DELETING_WAL,
    transactions: key::LH_DRAIN_DELETING_XACTS,
};

/// Runs `drain` (of `tasks` tasks, on either side) and records its rate and what it cost per task: heap
/// allocations in this program, WAL written and writing transactions on the server.
async fn measured_drain(
    raw_pool: &PgPool,
    figs: &mut Figures,
    tasks: u64,
    keys: DrainKeys,
    drain: impl Future<Output = Res<f64>>,
) -> Res<()> {
    let wal = db::WalMark::take(raw_pool).await?;
    let allocs = AllocMark::take();
    figs.put(keys.rate, drain.await?);
    figs.put(keys.allocations, allocs.per_task(tasks));
    let cost = wal.since(raw_pool, tasks).await?;
    figs.put(keys.wal_bytes, cost.wal_bytes);
    figs.put(keys.transactions, cost.transactions_per_100);
    Ok(())
}

/// Rounds of the batch enqueue on each side: even, so that each side goes first as often as the other.
pub(crate) const BATCH_ROUNDS: u64 = 6;

/// The rows of one round of the batch enqueue: a fifth of the profile's drain, in whole statements of
/// [`CHUNK`] rows (20,000 in the default profile, the peers' batch).
pub(crate) fn batch_round_rows(p: &Profile) -> u64 {
    (p.drain_tasks / 5).div_ceil(CHUNK).max(1) * CHUNK
}

/// The batch enqueue on each side, in [`BATCH_ROUNDS`] rounds of [`batch_round_rows`] whose order
/// alternates, each into empty tables right after a checkpoint (when the server allows the benchmark's
/// role one); answers each side's rows/s over all its rounds (raw, leasehold). A batch of 100,000 rows
/// on one side once ran right after the other side's drain, with its dead rows being vacuumed and its
/// WAL being checkpointed, and the ratio moved from 0.36x to 0.75x between passes.
async fn batch_rounds(
    raw_pool: &PgPool,
    store: &PgStore,
    p: &Profile,
    pass: usize,
    checkpoints: bool,
) -> Res<(f64, f64)> {
    let rows = batch_round_rows(p);
    let fresh = || async {
        clean(raw_pool, store).await?;
        if checkpoints {
            db::checkpoint(raw_pool).await?;
        }
        Ok::<_, BoxError>(Instant::now())
    };
    let (mut raw_time, mut ours_time) = (Duration::ZERO, Duration::ZERO);
    for round in 0..BATCH_ROUNDS as usize {
        both!(
            pass + round,
            {
                let started = fresh().await?;
                raw::insert_batches(raw_pool, rows).await?;
                raw_time += started.elapsed();
            },
            {
                let started = fresh().await?;
                framework::batch_enqueue(store, rows).await?;
                ours_time += started.elapsed();
            }
        );
    }
    clean(raw_pool, store).await?;
    let all = rows * BATCH_ROUNDS;
    Ok((timing::rate(all, raw_time), timing::rate(all, ours_time)))
}

/// The set-up of one of leasehold's drains, untimed: `n` tasks enqueued as the batch enqueue does, and
/// the table analyzed, as the limit's table is before its drain (see [`db::analyze`]).
async fn enqueue_for_drain(raw_pool: &PgPool, store: &PgStore, n: u64) -> Res<()> {
    framework::batch_enqueue(store, n).await?;
    db::analyze(raw_pool, db::TASKS).await
}

/// Empties the raw jobs table and leasehold's task table.
async fn clean(raw_pool: &PgPool, store: &PgStore) -> Res<()> {
    raw::reset(raw_pool).await?;
    db::truncate_tasks(store.pool()).await
}

#[cfg(test)]
mod tests {
    use super::{GROWTH_BASE_BACKLOG, Options};

    fn parse(args: &[&str]) -> Result<Options, String> {
        Options::parse(args.iter().map(|a| (*a).to_owned()))
            .map(|o| o.expect("not a help request"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn each_backlog_named_is_measured_once_after_the_baseline() {
        let o =
            parse(&["--pg-only", "--backlog", "10,000,000", "--backlog=1_000_000", "--backlog", "1000000"]).unwrap();
        assert_eq!(o.growth_backlogs(5), Some(vec![GROWTH_BASE_BACKLOG, 1_000_000, 10_000_000]));
        let o = parse(&["--growth"]).unwrap();
        assert_eq!(o.growth_backlogs(1_000_000), Some(vec![GROWTH_BASE_BACKLOG, 1_000_000]));
        assert_eq!(parse(&[]).unwrap().growth_backlogs(1_000_000), None);
    }

    #[test]
    fn a_backlog_below_the_baseline_is_refused() {
        let e = parse(&["--backlog", "5000"]).unwrap_err();
        assert!(e.contains("below the 10000 tasks"), "{e}");
        assert!(parse(&["--backlog", "0"]).is_err());
    }

    #[test]
    fn a_pin_length_implies_growth() {
        let o = parse(&["--pin-secs", "60"]).unwrap();
        assert_eq!((o.pin_secs, o.growth_backlogs(1_000_000).is_some()), (Some(60), true));
        assert_eq!(parse(&["--growth"]).unwrap().pin_secs, None);
        assert!(parse(&["--pin-secs", "0"]).unwrap_err().contains("at least 1"));
        assert!(parse(&["--pin-secs"]).unwrap_err().contains("needs a number of seconds"));
    }

    #[test]
    fn the_single_enqueue_alone_takes_a_number_of_rounds() {
        assert_eq!(parse(&["--enqueue-only", "6"]).unwrap().enqueue_only, Some(6));
        assert_eq!(parse(&[]).unwrap().enqueue_only, None);
        assert!(parse(&["--enqueue-only"]).unwrap_err().contains("needs a number of rounds"));
        assert!(parse(&["--enqueue-only", "0"]).is_err());
    }
}
