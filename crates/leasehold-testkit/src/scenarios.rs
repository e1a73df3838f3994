//! Fault scenarios with real worker processes, run on any [`ProcessDb`].

use std::collections::HashMap;
use std::time::Duration;

use leasehold::{Client, TaskState};
use leasehold_core::NewTask;

use crate::history::{AttemptRow, ProcessDb};
use crate::process::{ProcessOptions, WorkerProcess};
use crate::wait;

/// A small deterministic generator, so that a failing run can be replayed with its seed.
pub struct Rng(u64);

impl Rng {
    /// Seeded from `LEASEHOLD_TEST_SEED`, or from the clock (and printed, to replay).
    pub fn from_env() -> Self {
        let seed = std::env::var("LEASEHOLD_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            u64::from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos()) | 1
        });
        println!("seed {seed} (replay with LEASEHOLD_TEST_SEED={seed})");
        Self(seed)
    }

    /// A generator with a fixed seed; every seed gives its own sequence.
    pub fn new(seed: u64) -> Self {
        // splitmix64 of the seed: never zero for the xorshift below, and distinct seeds stay distinct
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Self((z ^ (z >> 31)) | 1)
    }

    /// A number below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// The size of a crash run.
#[derive(Clone, Debug)]
pub struct CrashRun {
    /// Tasks enqueued.
    pub tasks: usize,
    /// Worker processes running at once.
    pub processes: usize,
    /// SIGKILLs, each followed by a replacement process.
    pub kills: usize,
    /// Lease, heartbeat and the rest.
    pub opts: ProcessOptions,
    /// Added to `L + poll` for the claimer's own delay on a loaded machine.
    pub slack: Duration,
}

/// What a crash run measured.
#[derive(Clone, Debug)]
pub struct CrashReport {
    /// Takeover times of the attempts killed mid-task, sorted.
    pub takeovers: Vec<Duration>,
    /// Lease losses the store counted.
    pub lease_losses: i64,
}

/// Several processes work through the tasks while some are SIGKILLed mid-task. Checks: every task
/// completed; exactly one effect per task, under its final token; every takeover within
/// `L + poll + slack`.
pub async fn crash<D: ProcessDb>(db: &D, bin: &str, run: &CrashRun) -> CrashReport {
    let mut rng = Rng::from_env();
    let tasks: Vec<NewTask> =
        (0..run.tasks).map(|i| NewTask::new("effect", serde_json::json!({ "work_ms": 30 + (i % 7) * 20 }))).collect();
    Client::new(db.store()).enqueue_tasks(tasks).await.unwrap();
    let url = db.url();
    let mut procs: Vec<WorkerProcess> =
        (0..run.processes).map(|i| WorkerProcess::spawn(bin, &url, &format!("w{i}"), &run.opts)).collect();
    let mut kills: HashMap<String, i64> = HashMap::new();
    for k in 0..run.kills {
        // pace the faults by progress, not by the clock
        let target = (run.tasks * (k + 1) / (run.kills + 2)) as i64;
        wait::until("progress before the next kill", Duration::from_secs(90), || async {
            (db.effects().await.0 >= target).then_some(())
        })
        .await;
        // kill a process that is running something, so that the kill lands mid-task
        let busy = db.busy_workers().await;
        let candidates: Vec<usize> = (0..procs.len()).filter(|i| busy.contains(&procs[*i].name)).collect();
        let victim =
            if candidates.is_empty() { rng.below(procs.len()) } else { candidates[rng.below(candidates.len())] };
        let mut p = procs.swap_remove(victim);
        p.kill();
        kills.insert(p.name.clone(), db.now_ms().await);
        procs.push(WorkerProcess::spawn(bin, &url, &format!("w{}", run.processes + k), &run.opts));
    }
    wait::until("every task to complete", Duration::from_secs(180), || async {
        (db.unfinished().await == 0).then_some(())
    })
    .await;
    for p in procs {
        p.terminate();
    }

    let (effects, distinct, stale) = db.effects().await;
    assert_eq!((effects, distinct), (run.tasks as i64, run.tasks as i64), "lost or duplicate effects");
    assert_eq!(stale, 0, "an effect was written under a stale token");

    let mut by_task: HashMap<uuid::Uuid, Vec<AttemptRow>> = HashMap::new();
    for a in db.attempts().await {
        by_task.entry(a.task_id).or_default().push(a);
    }
    let mut takeovers = Vec::new();
    for attempts in by_task.values() {
        for pair in attempts.windows(2) {
            if let (Some(killed_at), None) = (kills.get(&pair[0].worker), &pair[0].completion) {
                takeovers.push(Duration::from_millis(u64::try_from(pair[1].started_ms - killed_at).unwrap_or(0)));
            }
        }
    }
    takeovers.sort();
    let report = CrashReport { takeovers, lease_losses: db.lease_losses().await };
    let budget = run.opts.lease + run.opts.poll + run.slack;
    println!(
        "tasks {}, kills {}, taken over {}, lease losses {}, takeover p50 {:?} p99 {:?} max {:?} (L {:?} + poll {:?})",
        run.tasks,
        run.kills,
        report.takeovers.len(),
        report.lease_losses,
        report.percentile(0.5),
        report.percentile(0.99),
        report.percentile(1.0),
        run.opts.lease,
        run.opts.poll
    );
    assert!(!report.takeovers.is_empty(), "no kill landed mid-task: the run proved nothing");
    assert!(report.lease_losses >= report.takeovers.len() as i64);
    assert!(report.percentile(1.0) <= budget, "takeover {:?} exceeded the budget {budget:?}", report.percentile(1.0));
    report
}

impl CrashReport {
    /// The `q` quantile of the takeover times (0.0 to 1.0).
    pub fn percentile(&self, q: f64) -> Duration {
        let n = self.takeovers.len();
        if n == 0 {
            return Duration::ZERO;
        }
        self.takeovers[((n as f64 - 1.0) * q).round() as usize]
    }
}

async fn attempt_of<D: ProcessDb>(db: &D, task: uuid::Uuid, worker: &str) -> Option<AttemptRow> {
    db.attempts().await.into_iter().find(|a| a.task_id == task && a.worker == worker)
}

/// A holder is SIGSTOPped for `3 L` while another process takes its task over; once resumed, its job
/// is cancelled and its late completion rejected, and the task's effect exists once, under the newer
/// token.
pub async fn pause<D: ProcessDb>(db: &D, bin: &str) {
    let opts = ProcessOptions { concurrency: 1, ..ProcessOptions::default() };
    let client = Client::new(db.store());
    let url = db.url();
    let a = WorkerProcess::spawn(bin, &url, "a", &opts);
    let task = NewTask::new("effect", serde_json::json!({ "work_ms": 8_000 }));
    let id = client.enqueue_tasks(vec![task]).await.unwrap()[0];
    let first = wait::until("worker a to start the job", Duration::from_secs(10), || attempt_of(db, id.0, "a")).await;

    a.pause();
    let paused_at = tokio::time::Instant::now();
    let b = WorkerProcess::spawn(bin, &url, "b", &opts);
    let second = wait::until("worker b to take over", Duration::from_secs(20), || attempt_of(db, id.0, "b")).await;
    let took = paused_at.elapsed();
    assert!(second.fence > first.fence, "takeover token {} not above {}", second.fence, first.fence);
    tokio::time::sleep_until(paused_at + opts.lease * 3).await; // the fault itself: a pause of 3 L
    a.resume();

    let resumed = wait::until("worker a to notice", Duration::from_secs(10), || async {
        attempt_of(db, id.0, "a").await.filter(|r| r.completion.is_some())
    })
    .await;
    assert_eq!(resumed.cancelled, Some(true), "the resumed holder's job was not cancelled");
    assert_eq!(resumed.completion.as_deref(), Some("rejected"), "the late completion was not rejected");

    let rec = wait::until("worker b to complete the task", Duration::from_secs(20), || async {
        let r = client.task(id).await.unwrap();
        (r.state == TaskState::Completed).then_some(r)
    })
    .await;
    assert_eq!(rec.fence.map(|f| f.0), Some(second.fence));
    assert_eq!(rec.lease_losses, 1);
    assert_eq!(db.effect_fences(id.0).await, vec![second.fence], "the effect must exist once, under the newer token");
    let stats_a = a.terminate();
    b.terminate();
    assert!(stats_a.contains("lease_lost: 1"), "{stats_a}");
    println!("takeover {took:?} after the pause began (L {:?}); paused for {:?}", opts.lease, opts.lease * 3);
}

/// What a scheduler chaos run measured.
#[derive(Clone, Debug)]
pub struct CronReport {
    /// Ticks checked.
    pub ticks: usize,
    /// Of which run late by the catch-up policy (a leader change fell on them).
    pub caught_up: usize,
    /// The longest time from a tick to the start of its run.
    pub max_start_delay: Duration,
}

/// Scheduler processes (each also a worker) run an every-second schedule while the current leader is
/// SIGKILLed or SIGSTOPped past its lease, `faults` times. Checks that every tick of the run was run
/// exactly once: one ledger row per second with no gap, none missed or skipped, one task each, one
/// effect each.
pub async fn cron_chaos<D: ProcessDb>(db: &D, bin: &str, faults: usize) -> CronReport {
    use leasehold_core::{ScheduleStore, TaskStore};
    const SCHEDULE: &str = "every-second";
    const LEASE_NAME: &str = "leasehold-scheduler";
    let mut rng = Rng::from_env();
    let opts = ProcessOptions { schedule_every_second: true, ..ProcessOptions::default() };
    let url = db.url();
    let store = db.store();
    let mut procs: Vec<WorkerProcess> =
        (0..3).map(|i| WorkerProcess::spawn(bin, &url, &format!("s{i}"), &opts)).collect();
    let ticks_at_least = |n: usize| async move {
        wait::until("ticks to be recorded", Duration::from_secs(30), || async {
            (db.ticks(SCHEDULE).await.len() >= n).then_some(())
        })
        .await
    };
    ticks_at_least(2).await;
    let (mut kills, mut pauses) = (0, 0);
    let mut longest_pause = Duration::ZERO;
    for f in 0..faults {
        let seen = db.ticks(SCHEDULE).await.len();
        ticks_at_least(seen + 2).await;
        let Some(leader) = store.leader_get(LEASE_NAME).await.unwrap() else { continue };
        // the holder is the process's name, '#', and a per-process nonce
        let Some(i) = procs.iter().position(|p| leader.holder.split('#').next() == Some(p.name.as_str())) else {
            continue;
        };
        if rng.below(2) == 0 {
            let mut p = procs.swap_remove(i);
            p.kill();
            kills += 1;
            procs.push(WorkerProcess::spawn(bin, &url, &format!("s{}", 3 + f), &opts));
        } else {
            procs[i].pause();
            let frozen = opts.lease.mul_f64(1.5 + rng.below(150) as f64 / 100.0);
            tokio::time::sleep(frozen).await; // the fault itself: a pause of 1.5 to 3 L
            procs[i].resume();
            pauses += 1;
            longest_pause = longest_pause.max(frozen);
        }
    }
    let end = db.now_ms().await;
    let ticks = wait::until("every tick up to the end to be run", Duration::from_secs(90), || async {
        let ticks = db.ticks(SCHEDULE).await;
        let covered = ticks.last().is_some_and(|t| t.0 >= end);
        (covered && db.unfinished().await == 0).then_some(ticks)
    })
    .await;
    for p in procs {
        p.terminate();
    }

    let effects = db.effect_counts().await;
    let attempts = db.attempts().await;
    let mut max_delay = 0i64;
    for pair in ticks.windows(2) {
        assert_eq!(pair[1].0 - pair[0].0, 1_000, "a gap in the ledger between ticks {} and {}", pair[0].0, pair[1].0);
    }
    let mut tasks = std::collections::HashSet::new();
    for (tick, outcome, task) in &ticks {
        assert!(outcome == "enqueued" || outcome == "caught_up", "tick {tick} was {outcome}");
        let task = task.unwrap_or_else(|| panic!("tick {tick} has no run"));
        assert!(tasks.insert(task), "two ticks share task {task}");
        assert_eq!(
            effects.get(&task).copied().unwrap_or(0),
            1,
            "tick {tick}: its run's effect is not there exactly once"
        );
        let started = attempts.iter().filter(|a| a.task_id == task).map(|a| a.started_ms).min().unwrap();
        max_delay = max_delay.max(started - tick);
    }
    let report = CronReport {
        ticks: ticks.len(),
        caught_up: ticks.iter().filter(|t| t.1 == "caught_up").count(),
        max_start_delay: Duration::from_millis(u64::try_from(max_delay).unwrap_or(0)),
    };
    println!(
        "ticks {} (every second, no gap, each run once), {kills} leader kills, {pauses} leader pauses, \
         {} caught up after a leader change, max start delay {:?} (L {:?}, longest pause {:?})",
        report.ticks, report.caught_up, report.max_start_delay, opts.lease, longest_pause
    );
    assert!(kills + pauses > 0, "no fault was injected");
    // A tick waits at most for the lease to expire, the next pass and a worker's claim (2 L). With
    // SQLite, a process stopped inside a write transaction (its claim, its pass) keeps the file's one
    // write lock for the whole pause, and no other process can enqueue, claim or take the lease until it
    // resumes: the tick may wait for the whole pause, then for all of that again. (A CI run measured
    // 10.3 s after a pause of about 3 L, over the earlier budget of 3 L + 3 s = 9 s.)
    let longest_stall = if store.backend_name() == "sqlite" { longest_pause + opts.lease * 2 } else { opts.lease * 2 };
    let budget = longest_stall + Duration::from_secs(3);
    assert!(report.max_start_delay <= budget, "start delay {:?} over the budget {budget:?}", report.max_start_delay);
    report
}
