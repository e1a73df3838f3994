//! The fault run: worker processes on a PostgreSQL cluster the harness owns, a stream of tasks, and a
//! seeded schedule of faults (SIGKILL, long and short SIGSTOP, `pg_terminate_backend`, a crash and
//! restart of the server, a long transaction pinning the MVCC horizon), bounded in operations and time.
//! When the faults are done and every task has settled, the history goes to the checker.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sqlx::PgPool;

use leasehold::Client;
use leasehold_core::NewTask;

use super::check::{Budget, Report, check};
use super::cluster::PgCluster;
use super::history::{self, Fault};
use super::kit;
use crate::pg::TestDb;
use crate::process::{ProcessOptions, WorkerProcess};
use crate::scenarios::Rng;

/// The size and mix of a fault run.
#[derive(Clone, Debug)]
pub struct Profile {
    /// Its name, for the report.
    pub name: &'static str,
    /// Seed of every random choice (fault order, targets, durations, task lengths).
    pub seed: u64,
    /// Worker processes.
    pub workers: usize,
    /// Tasks enqueued over the run.
    pub tasks: usize,
    /// SIGKILLs (each followed by a new process).
    pub kills: usize,
    /// SIGSTOPs of 1.5x to 5x `L`: the lease is taken over meanwhile.
    pub pauses: usize,
    /// SIGSTOPs of 0.2x to 0.8x `L`: nobody may take over.
    pub short_pauses: usize,
    /// `pg_terminate_backend` on every connection of a worker.
    pub terminations: usize,
    /// Every session of a worker frozen for 1.5x to 3x `L`: it cannot renew and must fence itself.
    pub stalls: usize,
    /// Crashes of the server (`pg_ctl stop -m immediate`) and restarts.
    pub restarts: usize,
    /// Long transactions pinning the MVCC horizon while the queue churns.
    pub pins: usize,
    /// Between the starts of two faults.
    pub fault_gap: Duration,
    /// How long a pin lasts.
    pub pin_for: Duration,
    /// The workers' protocol durations.
    pub opts: ProcessOptions,
    /// Task work time, ms, drawn in this range.
    pub work_ms: (u64, u64),
}

impl Profile {
    /// The CI profile: every fault kind, a few minutes at most.
    pub fn short(seed: u64) -> Self {
        Self {
            name: "short",
            seed,
            workers: 4,
            tasks: 600,
            kills: 12,
            pauses: 12,
            short_pauses: 10,
            terminations: 6,
            stalls: 6,
            restarts: 1,
            pins: 1,
            fault_gap: Duration::from_millis(350),
            pin_for: Duration::from_secs(3),
            opts: fast_leases(),
            work_ms: (50, 1_500),
        }
    }

    /// The long profile, on demand: at least 1,000 long pauses and 500 kills.
    pub fn long(seed: u64) -> Self {
        Self {
            name: "long",
            seed,
            workers: 8,
            tasks: 20_000,
            kills: 500,
            pauses: 1_000,
            short_pauses: 300,
            terminations: 100,
            stalls: 100,
            restarts: 5,
            pins: 5,
            fault_gap: Duration::from_millis(150),
            pin_for: Duration::from_secs(5),
            opts: fast_leases(),
            work_ms: (20, 400),
        }
    }

    fn budget(&self) -> Budget {
        let ms = |d: Duration| d.as_millis() as i64;
        Budget {
            lease_ms: ms(self.opts.lease),
            poll_ms: ms(self.opts.poll),
            heartbeat_ms: ms(self.opts.heartbeat),
            slack_ms: 1_500,
        }
    }
}

fn fast_leases() -> ProcessOptions {
    ProcessOptions {
        concurrency: 4,
        lease: Duration::from_secs(1),
        heartbeat: Duration::from_millis(200),
        margin: Duration::from_millis(400),
        grace: Duration::from_millis(150),
        poll: Duration::from_millis(100),
        ..ProcessOptions::default()
    }
}

/// The figures of a run and the checker's findings.
#[derive(Debug)]
pub struct RunReport {
    /// The profile.
    pub profile: Profile,
    /// What the checker found.
    pub check: Report,
    /// Completed tasks per second during each pin, as a ratio of the same span just before it.
    pub pin_ratios: Vec<f64>,
    /// Dead tuples in the task table at the end of each pin.
    pub pin_dead_tuples: Vec<i64>,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl RunReport {
    /// Whether the run found nothing wrong.
    pub fn clean(&self) -> bool {
        self.check.anomalies.is_empty()
    }

    /// The figures, one per line.
    pub fn summary(&self) -> String {
        let c = &self.check;
        let p = &self.profile;
        let mut faults: Vec<_> = c.faults.iter().collect();
        faults.sort();
        format!(
            "profile {} (seed {}), {:.0?}: L {:?}, H {:?}, M {:?}, poll {:?}\n\
             faults: {faults:?}\n\
             tasks {}, claims {} ({} of them hand-offs), renewals {}, effects {}\n\
             takeovers {}: p50 {} ms, p99 {} ms, max {} ms (budget {} ms, {} over)\n\
             zombie writes rejected by their token (an unfenced design would have accepted them): {}\n\
             restart to first claim: {:?} ms\n\
             self-fencing (cancelled with nobody taking over): {} jobs, p50 {} ms, p99 {} ms, max {} ms after the last renewal (L - M = {} ms); {} saw it after the lease expired\n\
             throughput while the MVCC horizon was pinned, as a ratio of just before: {:?}; dead tuples then: {:?}\n\
             anomalies: {}",
            p.name,
            p.seed,
            self.elapsed,
            p.opts.lease,
            p.opts.heartbeat,
            p.opts.margin,
            p.opts.poll,
            c.tasks,
            c.claims,
            c.handoffs,
            c.renewals,
            c.effects,
            c.takeovers_ms.len(),
            c.takeover_percentile(0.5),
            c.takeover_percentile(0.99),
            c.takeovers_ms.last().copied().unwrap_or(0),
            p.budget().takeover_ms(),
            c.takeovers_over_budget,
            c.zombie_writes_rejected,
            c.restart_to_claim_ms,
            c.self_fence_ms.len(),
            pct(&c.self_fence_ms, 0.5),
            pct(&c.self_fence_ms, 0.99),
            c.self_fence_ms.last().copied().unwrap_or(0),
            (p.opts.lease - p.opts.margin).as_millis(),
            c.self_fence_late,
            self.pin_ratios.iter().map(|r| (r * 100.0).round() / 100.0).collect::<Vec<_>>(),
            self.pin_dead_tuples,
            c.anomalies.len(),
        ) + &c.late_takeovers.iter().map(|l| format!("\nlate takeover: {l}")).collect::<String>()
    }
}

fn pct(sorted: &[i64], q: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Kill,
    Pause,
    ShortPause,
    Terminate,
    Stall,
    Restart,
    Pin,
}

/// Runs `profile` with the worker binary `bin`; `planted_bug` makes the workers complete without
/// their token (the checker must then report stale writes).
pub async fn run(profile: &Profile, bin: &str, planted_bug: bool) -> RunReport {
    let started = Instant::now();
    let cluster = PgCluster::start_new();
    let db = TestDb::create_on(&cluster.url()).await;
    history::install(db.pool()).await;
    let mut rng = Rng::new(profile.seed);
    let opts = ProcessOptions { planted_bug, ..profile.opts.clone() };

    let mut generation = 0;
    let mut spawn = |slot: usize| {
        generation += 1;
        WorkerProcess::spawn(bin, db.url(), &format!("w{slot}-{generation}"), &opts)
    };
    let mut workers: Vec<WorkerProcess> = (0..profile.workers).map(&mut spawn).collect();
    let mut paused_until: Vec<Instant> = vec![Instant::now(); profile.workers];

    let mut schedule: Vec<Kind> = Vec::new();
    for (kind, n) in [
        (Kind::Kill, profile.kills),
        (Kind::Pause, profile.pauses),
        (Kind::ShortPause, profile.short_pauses),
        (Kind::Terminate, profile.terminations),
        (Kind::Stall, profile.stalls),
        (Kind::Restart, profile.restarts),
        (Kind::Pin, profile.pins),
    ] {
        schedule.extend(std::iter::repeat_n(kind, n));
    }
    for i in (1..schedule.len()).rev() {
        schedule.swap(i, rng.below(i + 1));
    }

    let client = Client::new(db.store());
    let per_fault = profile.tasks.div_ceil(schedule.len().max(1));
    let mut enqueued = 0;
    let mut faults: Vec<Fault> = Vec::new();
    let (mut pin_ratios, mut pin_dead) = (Vec::new(), Vec::new());
    let lease_ms = profile.opts.lease.as_millis() as u64;

    for kind in schedule {
        let batch: Vec<NewTask> = (0..per_fault.min(profile.tasks.saturating_sub(enqueued)))
            .map(|_| {
                let work = profile.work_ms.0 + rng.below((profile.work_ms.1 - profile.work_ms.0) as usize) as u64;
                NewTask { max_attempts: 10_000, ..NewTask::new("effect", serde_json::json!({ "work_ms": work })) }
            })
            .collect();
        enqueued += batch.len();
        // a few one at a time, which an idle worker's offer may take (a hand-off), the rest in a batch
        let (single, batch) = batch.split_at(batch.len().min(SINGLE_ENQUEUES));
        for t in single {
            retry(|| leasehold_core::TaskStore::task_insert(client.store(), t.clone())).await;
        }
        if !batch.is_empty() {
            retry(|| client.enqueue_tasks(batch.to_vec())).await;
        }
        tokio::time::sleep(profile.fault_gap).await;

        // a target: a worker not paused now, preferably one holding tasks
        let soonest = paused_until.iter().min().copied().unwrap_or_else(Instant::now);
        tokio::time::sleep(soonest.saturating_duration_since(Instant::now())).await;
        let now = Instant::now();
        let free: Vec<usize> = (0..workers.len()).filter(|i| paused_until[*i] <= now).collect();
        let busy = busy_workers(db.pool()).await;
        let preferred: Vec<usize> = free.iter().copied().filter(|i| busy.contains(&workers[*i].name)).collect();
        let pool = if preferred.is_empty() { &free } else { &preferred };
        let target = pool[rng.below(pool.len())];
        let at_ms = now_ms();
        match kind {
            Kind::Kill => {
                let name = workers[target].name.clone();
                workers[target].kill();
                faults.push(Fault { at_ms, kind: "kill", worker: Some(name), duration_ms: 0 });
                workers[target] = spawn(target);
            }
            Kind::Pause | Kind::ShortPause => {
                let (lo, hi, label) = if kind == Kind::Pause { (15, 50, "pause") } else { (2, 8, "short_pause") };
                let ms = lease_ms * (lo + rng.below((hi - lo) as usize) as u64) / 10;
                let d = Duration::from_millis(ms);
                kit::pause_for(&workers[target], d);
                paused_until[target] = Instant::now() + d + Duration::from_millis(50);
                let worker = Some(workers[target].name.clone());
                faults.push(Fault { at_ms, kind: label, worker, duration_ms: ms as i64 });
            }
            Kind::Terminate => {
                // counted only when it cut something
                let n = kit::drop_connections(db.pool(), &workers[target].name).await.unwrap_or(0);
                if n > 0 {
                    let worker = Some(workers[target].name.clone());
                    faults.push(Fault { at_ms, kind: "terminate", worker, duration_ms: 0 });
                }
            }
            Kind::Stall => {
                let ms = lease_ms * (15 + rng.below(15) as u64) / 10;
                let d = Duration::from_millis(ms);
                let n = kit::stall_sessions(db.pool(), &workers[target].name, d).await.unwrap_or(0);
                // no other fault on this worker until its sessions run again
                paused_until[target] = Instant::now() + d + Duration::from_millis(50);
                if n > 0 {
                    let worker = Some(workers[target].name.clone());
                    faults.push(Fault { at_ms, kind: "stall", worker, duration_ms: ms as i64 });
                }
            }
            Kind::Restart => {
                // every pause ends first, so that the server's crash is the only fault in flight
                let wait = paused_until.iter().max().copied().unwrap_or(now).saturating_duration_since(Instant::now());
                tokio::time::sleep(wait).await;
                let at_ms = now_ms();
                let t0 = Instant::now();
                tokio::task::block_in_place(|| cluster.crash_and_restart(Duration::from_millis(500)));
                let duration_ms = t0.elapsed().as_millis() as i64;
                faults.push(Fault { at_ms, kind: "restart", worker: None, duration_ms });
            }
            Kind::Pin => {
                // the queue churns through both spans: a steady trickle of short tasks
                let churn = tokio::spawn({
                    let client = client.clone();
                    let span = profile.pin_for * 2 + Duration::from_millis(500);
                    async move {
                        let end = Instant::now() + span;
                        while Instant::now() < end {
                            let batch: Vec<NewTask> = (0..10)
                                .map(|_| NewTask {
                                    max_attempts: 10_000,
                                    ..NewTask::new("effect", serde_json::json!({ "work_ms": 5 }))
                                })
                                .collect();
                            let _ = client.enqueue_tasks(batch).await;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                });
                let (ratio, dead) = pin(db.pool(), profile.pin_for).await;
                let _ = churn.await;
                pin_ratios.push(ratio);
                pin_dead.push(dead);
                faults.push(Fault {
                    at_ms,
                    kind: "pin",
                    worker: None,
                    duration_ms: profile.pin_for.as_millis() as i64,
                });
            }
        }
    }
    let planned = profile.tasks;
    if enqueued < planned {
        let rest: Vec<NewTask> = (enqueued..planned)
            .map(|_| NewTask { max_attempts: 10_000, ..NewTask::new("effect", serde_json::json!({ "work_ms": 20 })) })
            .collect();
        retry(|| client.enqueue_tasks(rest.clone())).await;
    }

    // settle: every pause over, every task finished (bounded)
    let deadline = Instant::now() + Duration::from_secs(120) + profile.opts.lease * 10;
    while unfinished(db.pool()).await > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(
        paused_until.iter().max().copied().unwrap_or_else(Instant::now).saturating_duration_since(Instant::now()),
    )
    .await;
    for w in workers {
        w.terminate();
    }
    let h = history::load(db.pool(), faults).await;
    let check = check(&h, profile.budget());
    drop(db);
    drop(cluster);
    RunReport { profile: profile.clone(), check, pin_ratios, pin_dead_tuples: pin_dead, elapsed: started.elapsed() }
}

/// Holds a REPEATABLE READ transaction open for `d` while the queue churns; answers the completion
/// rate meanwhile as a ratio of the rate over the same span just before, and the dead tuples then.
async fn pin(pool: &PgPool, d: Duration) -> (f64, i64) {
    let before_start = completed(pool).await;
    tokio::time::sleep(d).await;
    let before = completed(pool).await - before_start;
    let mut tx = pool.begin().await.expect("a connection for the pin");
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(&mut *tx).await.unwrap();
    sqlx::query("SELECT count(*) FROM leasehold.tasks").execute(&mut *tx).await.unwrap();
    let during_start = completed(pool).await;
    tokio::time::sleep(d).await;
    let during = completed(pool).await - during_start;
    let dead: i64 = sqlx::query_scalar(
        "SELECT coalesce(n_dead_tup, 0) FROM pg_stat_user_tables WHERE schemaname = 'leasehold' AND relname = 'tasks'",
    )
    .fetch_optional(pool)
    .await
    .ok()
    .flatten()
    .unwrap_or(0);
    let _ = tx.rollback().await;
    (during as f64 / (before as f64).max(1.0), dead)
}

async fn completed(pool: &PgPool) -> i64 {
    retry(|| {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM leasehold.tasks WHERE state = 'completed'").fetch_one(pool)
    })
    .await
}

async fn unfinished(pool: &PgPool) -> i64 {
    retry(|| {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM leasehold.tasks WHERE state NOT IN ('completed')")
            .fetch_one(pool)
    })
    .await
}

async fn busy_workers(pool: &PgPool) -> Vec<String> {
    retry(|| {
        sqlx::query_scalar::<_, String>(
            "SELECT DISTINCT claimed_by FROM leasehold.tasks WHERE state = 'running' AND claimed_by IS NOT NULL",
        )
        .fetch_all(pool)
    })
    .await
}

/// Tasks enqueued one at a time before each fault's batch.
const SINGLE_ENQUEUES: usize = 4;

/// Retries a harness query through a server restart.
async fn retry<T, E: std::fmt::Display, F: Future<Output = Result<T, E>>>(mut op: impl FnMut() -> F) -> T {
    let mut last = String::new();
    for _ in 0..100 {
        match op().await {
            Ok(v) => return v,
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the harness's query kept failing: {last}");
}

/// The store's clock: the server runs on this machine, so its clock is this one.
fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}
