//! The offline checker: reads a [`History`] and reports every violation of the guarantees, and the
//! figures of the run. Safety findings are hard zeros; takeover latency is a budget.
//!
//! - **double hold**: a task claimed again while the previous token's lease was still valid and had
//!   not ended, on the store's clock;
//! - **token regression**: a task's tokens not strictly increasing, a token issued twice, or a token
//!   after a store restart not above every token before it;
//! - **stale write accepted**: an effect that committed under a token other than the one its task was
//!   completed with (the completion was not fenced, or a zombie's write got through);
//! - **duplicate effect**: more than one effect for a task;
//! - **lost effect**: a completed task without an effect, or an attempt its worker saw committed
//!   whose effect is missing (a lost acknowledgement);
//! - **unfinished task**: a task not completed once the run has settled.

use std::collections::{BTreeMap, HashMap, HashSet};

use uuid::Uuid;

use super::history::{EventKind, History};

/// The run's protocol durations, for the takeover budget.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Lease `L`, ms.
    pub lease_ms: i64,
    /// Poll interval, ms.
    pub poll_ms: i64,
    /// Heartbeat `H`, ms.
    pub heartbeat_ms: i64,
    /// Allowance for a loaded machine, ms.
    pub slack_ms: i64,
}

impl Budget {
    /// The longest a takeover may take: the lease, a heartbeat before it, a poll after it, and slack.
    pub fn takeover_ms(&self) -> i64 {
        self.lease_ms + self.heartbeat_ms + self.poll_ms + self.slack_ms
    }
}

/// What the checker found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Every violation, described; empty for a clean run.
    pub anomalies: Vec<String>,
    /// Tasks in the history.
    pub tasks: usize,
    /// Claims (tokens issued).
    pub claims: usize,
    /// Of those, hand-offs: claims made by an enqueue for a waiting worker.
    pub handoffs: usize,
    /// Renewals.
    pub renewals: usize,
    /// Effects committed.
    pub effects: usize,
    /// Takeover latencies (ms), from the previous holder's last renewal to the new claim, sorted;
    /// takeovers across a store restart are left out (they wait for the store).
    pub takeovers_ms: Vec<i64>,
    /// Takeovers over the budget.
    pub takeovers_over_budget: usize,
    /// The longest takeovers over the budget, described with what happened while each waited (the
    /// workers' claims of other tasks meanwhile, the faults around it), longest first.
    pub late_takeovers: Vec<String>,
    /// Writes by a holder whose lease had been taken over, refused by their token: each one a write
    /// that a design without fencing would have accepted.
    pub zombie_writes_rejected: usize,
    /// Time from each store restart to the first claim after it, ms.
    pub restart_to_claim_ms: Vec<i64>,
    /// Self-fencing: for each job cancelled by a worker that was not paused (it could not renew:
    /// sessions cut or frozen, the server down), the time from its lease's last renewal to the job
    /// seeing the cancellation, ms, sorted. Workers paused at the time are left out (they see it on
    /// waking, which is what fencing by token is for).
    pub self_fence_ms: Vec<i64>,
    /// Of those, the ones that saw it only after the lease had expired on the store's clock.
    pub self_fence_late: usize,
    /// Faults injected, by kind.
    pub faults: HashMap<&'static str, usize>,
}

impl Report {
    /// A percentile of the takeover latencies, ms.
    pub fn takeover_percentile(&self, q: f64) -> i64 {
        if self.takeovers_ms.is_empty() {
            return 0;
        }
        let i = ((self.takeovers_ms.len() - 1) as f64 * q).round() as usize;
        self.takeovers_ms[i]
    }
}

/// The worker that held `task` under `fence`, as it recorded the attempt.
fn worker_of(h: &History, task: Uuid, fence: i64) -> Option<&str> {
    h.attempts.iter().find(|a| a.task_id == task && a.fence == fence).map(|a| a.worker.as_str())
}

/// Checks `h` against the guarantees.
pub fn check(h: &History, budget: Budget) -> Report {
    let mut r = Report { tasks: h.tasks.len(), effects: h.effects.len(), handoffs: h.handoffs, ..Report::default() };
    for f in &h.faults {
        *r.faults.entry(f.kind).or_default() += 1;
    }
    let restarts: Vec<(i64, i64)> =
        h.faults.iter().filter(|f| f.kind == "restart").map(|f| (f.at_ms, f.at_ms + f.duration_ms)).collect();

    // per task, its events in logging order
    let mut by_task: HashMap<Uuid, Vec<&super::history::Event>> = HashMap::new();
    for e in &h.events {
        by_task.entry(e.task).or_default().push(e);
    }
    let mut issued: HashSet<i64> = HashSet::new();
    // every claim: its time, token and task
    let mut claims_at: Vec<(i64, i64, Uuid)> = Vec::new();
    let mut completed_with: HashMap<Uuid, i64> = HashMap::new();
    let mut late: Vec<Late> = Vec::new();
    for (task, events) in &by_task {
        // (fence, last seen ms, expiry ms, ended, handed over)
        let mut holder: Option<(i64, i64, i64, bool, bool)> = None;
        for e in events {
            match e.kind {
                EventKind::Claim => {
                    r.claims += 1;
                    claims_at.push((e.at_ms, e.fence, *task));
                    if !issued.insert(e.fence) {
                        r.anomalies.push(format!("token regression: token {} issued twice (task {task})", e.fence));
                    }
                    if let Some((prev, last_ms, expiry_ms, ended, handed)) = holder {
                        if e.fence <= prev {
                            r.anomalies.push(format!(
                                "token regression: task {task} claimed with token {} after token {prev}",
                                e.fence
                            ));
                        }
                        if !ended {
                            if expiry_ms > e.at_ms {
                                r.anomalies.push(format!(
                                    "double hold: task {task} claimed with token {} at {} while token {prev} held it until {expiry_ms}",
                                    e.fence, e.at_ms
                                ));
                            }
                            let across_restart = restarts.iter().any(|(down, up)| *down < e.at_ms && *up > last_ms);
                            if !across_restart {
                                r.takeovers_ms.push(e.at_ms - last_ms);
                                // (a claim before the expiry is a double hold, reported above)
                                if e.at_ms - last_ms > budget.takeover_ms() && e.at_ms >= expiry_ms {
                                    late.push(Late {
                                        task: *task,
                                        prev,
                                        handed,
                                        last_ms,
                                        expiry_ms,
                                        at_ms: e.at_ms,
                                        fence: e.fence,
                                    });
                                }
                            }
                        }
                    }
                    holder = Some((e.fence, e.at_ms, e.expires_ms.unwrap_or(e.at_ms), false, e.handoff));
                }
                EventKind::Renew => {
                    r.renewals += 1;
                    match holder.as_mut() {
                        Some(h) if h.0 == e.fence && !h.3 => {
                            h.1 = e.at_ms;
                            h.2 = h.2.max(e.expires_ms.unwrap_or(h.2));
                        }
                        _ => r.anomalies.push(format!(
                            "stale write accepted: task {task} renewed under token {} that no longer held it",
                            e.fence
                        )),
                    }
                }
                EventKind::End => {
                    if let Some(h) = holder.as_mut().filter(|h| h.0 == e.fence) {
                        h.3 = true;
                    }
                    if e.state == "completed" {
                        completed_with.insert(*task, e.fence);
                    }
                }
            }
        }
    }

    // tokens across store restarts
    for (down, up) in &restarts {
        let before = claims_at.iter().filter(|(at, _, _)| at < down).map(|(_, f, _)| *f).max();
        let mut after: Vec<(i64, i64)> =
            claims_at.iter().filter(|(at, _, _)| at >= up).map(|(at, f, _)| (*at, *f)).collect();
        after.sort();
        if let (Some(before), Some(low)) = (before, after.iter().map(|(_, f)| *f).min())
            && low <= before
        {
            r.anomalies.push(format!("token regression: token {low} issued after a restart, below {before}"));
        }
        if let Some((first, _)) = after.first() {
            r.restart_to_claim_ms.push(first - up);
        }
    }

    // effects against completions
    let mut per_task: HashMap<Uuid, Vec<i64>> = HashMap::new();
    for e in &h.effects {
        per_task.entry(e.task).or_default().push(e.fence);
    }
    for (task, fences) in &per_task {
        if fences.len() > 1 {
            r.anomalies.push(format!("duplicate effect: task {task} has {} effects (tokens {fences:?})", fences.len()));
        }
        for f in fences {
            match completed_with.get(task) {
                Some(done) if done == f => {}
                Some(done) => r.anomalies.push(format!(
                    "stale write accepted: task {task} has an effect under token {f} but was completed under token {done}"
                )),
                None => r.anomalies.push(format!(
                    "stale write accepted: task {task} has an effect under token {f} but no completion"
                )),
            }
        }
    }
    for (task, state) in &h.tasks {
        if state == "completed" && !per_task.contains_key(task) {
            r.anomalies.push(format!("lost effect: task {task} completed without its effect"));
        } else if state != "completed" {
            r.anomalies.push(format!("unfinished task: {task} ended the run {state}"));
        }
    }
    for a in &h.attempts {
        match a.completion.as_deref() {
            Some("completed") if !per_task.get(&a.task_id).is_some_and(|f| f.contains(&a.fence)) => {
                r.anomalies.push(format!(
                    "lost effect: worker {} saw task {} committed under token {}, but the effect is missing",
                    a.worker, a.task_id, a.fence
                ));
            }
            Some("rejected") => {
                r.zombie_writes_rejected += 1;
                // a job that never saw a cancellation yet lost its lease: fine if its process was
                // stopped or its sessions cut or frozen, or the server was down, around the attempt;
                // otherwise the worker let it run past its lease without noticing
                let window = (a.started_ms - 1_000, a.started_ms + 15_000);
                let excused = h.faults.iter().any(|f| {
                    let hits_worker = f.worker.is_none() || f.worker.as_deref() == Some(a.worker.as_str());
                    hits_worker && f.at_ms <= window.1 && f.at_ms + f.duration_ms >= window.0
                });
                if a.cancelled != Some(true) && !excused {
                    r.anomalies.push(format!(
                        "unnoticed lease loss: worker {} kept task {} under token {} past its lease with no fault to explain it",
                        a.worker, a.task_id, a.fence
                    ));
                }
            }
            _ => {}
        }
    }

    // self-fencing: every cancellation a running (not paused) worker saw must come before its lease
    // expired on the store's clock, whether or not someone took the task over meanwhile
    for (task, fence, at) in &h.cancellations {
        let Some(events) = by_task.get(task) else { continue };
        let last = events
            .iter()
            .filter(|e| e.fence == *fence && e.kind != EventKind::End && e.at_ms <= *at)
            .map(|e| (e.at_ms, e.expires_ms.unwrap_or(e.at_ms)))
            .max();
        let Some((last_ms, expires_ms)) = last else { continue };
        let paused = h.faults.iter().any(|f| {
            f.kind.contains("pause")
                && f.worker.as_deref().is_some_and(|w| worker_of(h, *task, *fence) == Some(w))
                && f.at_ms <= *at
                && f.at_ms + f.duration_ms >= last_ms
        });
        if paused {
            continue;
        }
        r.self_fence_ms.push(at - last_ms);
        if *at > expires_ms {
            r.self_fence_late += 1;
            let worker = worker_of(h, *task, *fence).unwrap_or("?");
            let near: Vec<String> = h
                .faults
                .iter()
                .filter(|f| f.at_ms <= *at && f.at_ms + f.duration_ms + 5_000 >= last_ms)
                .map(|f| format!("{} {:?} at {} for {} ms", f.kind, f.worker, f.at_ms, f.duration_ms))
                .collect();
            r.anomalies.push(format!(
                "late self-fence: the job of task {task} under token {fence} on worker {worker} saw its cancellation at {at}, after its lease expired at {expires_ms} (last renewal {last_ms}); faults around: {near:?}"
            ));
        }
    }
    r.self_fence_ms.sort_unstable();
    r.takeovers_ms.sort_unstable();
    r.takeovers_over_budget = r.takeovers_ms.iter().filter(|t| **t > budget.takeover_ms()).count();
    claims_at.sort_unstable();
    late.sort_by_key(|l| std::cmp::Reverse(l.at_ms - l.expiry_ms));
    r.late_takeovers = late.iter().take(LATE_TAKEOVERS_SHOWN).map(|l| l.describe(h, &claims_at)).collect();
    r
}

/// How many of the takeovers over the budget the report describes.
const LATE_TAKEOVERS_SHOWN: usize = 8;

/// A takeover over the budget.
struct Late {
    task: Uuid,
    /// The token it was taken from, and whether that claim was a hand-off.
    prev: i64,
    handed: bool,
    /// The previous holder's last claim or renewal, and its lease's expiry.
    last_ms: i64,
    expiry_ms: i64,
    /// The claim that took it over.
    at_ms: i64,
    fence: i64,
}

impl Late {
    /// `claims` sorted by time.
    fn describe(&self, h: &History, claims: &[(i64, i64, Uuid)]) -> String {
        let from = |t: i64| claims.partition_point(|(at, _, _)| *at < t);
        let meanwhile = &claims[from(self.expiry_ms)..from(self.at_ms)];
        // task ids are v7 UUIDs, made at enqueue: the order of ids is the order of enqueues
        let older = meanwhile.iter().filter(|(_, _, t)| *t < self.task).count();
        // the faults in flight around its expiry, and how many of each kind began while it waited
        let faults: Vec<String> = h
            .faults
            .iter()
            .filter(|f| f.at_ms <= self.expiry_ms + 2_000 && f.at_ms + f.duration_ms + 2_000 >= self.last_ms)
            .map(|f| format!("{} {:?} at +{} ms for {} ms", f.kind, f.worker, f.at_ms - self.last_ms, f.duration_ms))
            .collect();
        let mut waited: BTreeMap<&str, usize> = BTreeMap::new();
        for f in h.faults.iter().filter(|f| f.at_ms > self.expiry_ms && f.at_ms <= self.at_ms) {
            *waited.entry(f.kind).or_default() += 1;
        }
        format!(
            "task {} (token {}{}, held by {}) last renewed at {}, expired {} ms later, taken over {} ms after that by {} (token {}); {} claims of other tasks meanwhile, {} of them of tasks enqueued before it; faults around its expiry: {:?}; faults begun while it waited: {:?}",
            self.task,
            self.prev,
            if self.handed { ", handed over" } else { "" },
            worker_of(h, self.task, self.prev).unwrap_or("?"),
            self.last_ms,
            self.expiry_ms - self.last_ms,
            self.at_ms - self.expiry_ms,
            worker_of(h, self.task, self.fence).unwrap_or("?"),
            self.fence,
            meanwhile.len(),
            older,
            faults,
            waited,
        )
    }
}
