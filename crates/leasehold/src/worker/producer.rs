//! The claim loop: claims up to the free capacity, then waits for a wake-up hint, a poll tick or
//! freed capacity. Before it waits for a hint it tells the store so ([`Wakeup::announce`]) and claims
//! once more: a store that notifies only waiting workers then wakes it for every task enqueued after.
//! The announcement also offers to take one task of each queue as it is enqueued ([`HandoffOffer`]): a
//! store that hands tasks over (PostgreSQL) then claims the task for this worker in the enqueue's own
//! statement, and the loop starts it as it would a claimed one, its trust window counted from when the
//! offer was sent.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use leasehold_core::{
    ClaimedTask, Handoff, HandoffOffer, Hint, Result, TaskClaimParams, TaskLease, TaskReleaseParams, TaskStore, Wakeup,
};

use super::Shared;
use super::executor::execute;
use super::lease::LeaseEntry;
use crate::telemetry::record::{ClaimOutcome, KindMetrics};

pub(crate) async fn run<S: TaskStore, St: Send + Sync + 'static>(
    shared: Arc<Shared<S, St>>,
    tracker: TaskTracker,
    stop: CancellationToken,
) {
    let mut wakeup: Option<Box<dyn Wakeup>> = None;
    let mut offers = Offers::default();
    claim_loop(&shared, &tracker, &stop, &mut wakeup, &mut offers).await;
    if let Some(w) = wakeup.as_mut() {
        if let Err(e) = w.withdraw().await {
            tracing::debug!(error = %e, "withdrawing the wait for wake-ups failed; it runs out by itself");
        }
        if offers.open {
            give_back_late_handoffs(&shared, w.as_mut()).await;
        }
    }
}

/// After the withdrawal: tasks handed over before it took effect, which this stopping worker will not
/// run, go back at once (a hand-off whose notification comes later still is taken over when its lease
/// expires).
async fn give_back_late_handoffs<S: TaskStore, St>(shared: &Shared<S, St>, w: &mut dyn Wakeup) {
    let mut leases = Vec::new();
    while let Ok(Ok(hint)) = tokio::time::timeout(LATE_HANDOFF_WAIT, w.recv()).await {
        if let Hint::Handoff(h) = hint {
            leases.push(h.task.lease);
        }
    }
    release(shared, leases).await;
}

/// How long a stopping worker that had an offer open waits for hand-offs still on their way.
const LATE_HANDOFF_WAIT: Duration = Duration::from_millis(50);

/// Hands tasks this worker will not run back to the store at once (fenced, the attempt not counted).
async fn release<S: TaskStore, St>(shared: &Shared<S, St>, leases: Vec<TaskLease>) {
    if leases.is_empty() {
        return;
    }
    let n = leases.len();
    match shared.store.task_release(TaskReleaseParams { leases, lease_lost: false }).await {
        Ok(released) => tracing::debug!(released = released.len(), of = n, "handed-over tasks given back"),
        Err(e) => tracing::warn!(error = %e, "giving back handed-over tasks failed; their leases expire"),
    }
}

async fn claim_loop<S: TaskStore, St: Send + Sync + 'static>(
    shared: &Arc<Shared<S, St>>,
    tracker: &TaskTracker,
    stop: &CancellationToken,
    wakeup: &mut Option<Box<dyn Wakeup>>,
    offers: &mut Offers,
) {
    let cfg = &shared.config;
    let mut subscribe_at = Instant::now();
    // until when the store sends this worker's queues wake-ups (as far as this clock can tell)
    let mut announced_until = Instant::now();
    // when to look for work again after the latest announcement, for enqueues that raced it
    let mut settle_checks = SettleChecks::default();
    // a task was just handed over: offer again before the next look for work (which then also covers
    // the enqueues that raced the new offer), so that the next enqueue finds the offer sooner
    let mut handed_over = false;
    while !stop.is_cancelled() {
        if wakeup.is_none() && Instant::now() >= subscribe_at {
            match shared.store.wakeup_subscribe().await {
                Ok(w) => {
                    *wakeup = Some(w);
                    announced_until = Instant::now();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "wake-up subscription failed; polling meanwhile");
                    subscribe_at = Instant::now() + cfg.poll_interval * 5;
                }
            }
        }
        if !std::mem::take(&mut handed_over) {
            gather(shared, stop).await;
            if stop.is_cancelled() {
                return;
            }
            let full_batch = claim_once(shared, tracker).await;
            if full_batch && shared.capacity.available_permits() > 0 {
                continue;
            }
        }
        let at_capacity = shared.capacity.available_permits() == 0;
        if let Some(w) = wakeup.as_mut().filter(|_| !at_capacity) {
            // about to wait for a hint: make sure the store sends them, then look for work once more,
            // since a task enqueued before the announcement took effect sent none
            let now = Instant::now();
            if announced_until <= now + cfg.poll_interval || !offers.open {
                let ttl = cfg.poll_interval * ANNOUNCE_POLLS;
                let offer = offers.make(&shared.worker_id, cfg.lease_ttl);
                match w.announce(&cfg.queues, ttl, Some(&offer)).await {
                    Ok(()) => {
                        announced_until = now + ttl;
                        settle_checks = SettleChecks::after(Instant::now());
                        continue;
                    }
                    Err(e) => tracing::warn!(error = %e, "announcing a wait for wake-ups failed; polling meanwhile"),
                }
            }
        }
        let poll = shared.next_claim_at();
        let next_claim = settle_checks.next().map_or(poll, |at| at.min(poll));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(next_claim) => settle_checks.passed(Instant::now()),
            _ = shared.rescheduled.notified() => {}
            _ = shared.capacity_freed.notified(), if at_capacity => {}
            r = hint(wakeup, &cfg.queues, at_capacity) => match r {
                Ok(None) => {}
                Ok(Some(handoff)) => {
                    // the offer is spent: the next wait makes a new one
                    offers.open = false;
                    take_handoff(shared, tracker, *handoff, offers).await;
                    handed_over = true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "wake-up channel broke; polling meanwhile");
                    *wakeup = None;
                    // a new subscription's first announcement closes the offers of this one
                    offers.open = false;
                    subscribe_at = Instant::now() + cfg.poll_interval;
                }
            }
        }
    }
}

/// An idle worker's announcement that it waits for wake-ups lasts this many poll intervals; it is
/// renewed once less than one is left.
const ANNOUNCE_POLLS: u32 = 4;

/// The hand-off offers this worker's announcements made, with the time each was sent.
#[derive(Default)]
struct Offers {
    last: u64,
    /// The latest offers (a hand-off names the one it took), oldest first.
    sent: VecDeque<(u64, Instant)>,
    /// Whether the latest announcement's offer may still be open: no hand-off took it since.
    open: bool,
}

/// How many offers [`Offers`] remembers: a hand-off always takes the latest but one at most (an
/// announcement that renewed the offer while an enqueue was taking it).
const OFFERS_KEPT: usize = 8;

impl Offers {
    /// A new offer, sent now.
    fn make(&mut self, worker_id: &str, lease_ttl: Duration) -> HandoffOffer {
        self.last += 1;
        if self.sent.len() == OFFERS_KEPT {
            self.sent.pop_front();
        }
        self.sent.push_back((self.last, Instant::now()));
        self.open = true;
        HandoffOffer { number: self.last, worker_id: worker_id.to_owned(), lease_ttl }
    }

    /// When the offer `number` was sent, if it is one of the latest.
    fn sent_at(&self, number: u64) -> Option<Instant> {
        self.sent.iter().find(|(n, _)| *n == number).map(|(_, at)| *at)
    }
}

/// Starts a task handed to this worker, counting its trust window from when the offer it took was
/// sent (the store received the offer after that, and started the lease no earlier than that receipt);
/// gives it back when no slot is free (the worker filled up after it offered) or the offer is unknown.
async fn take_handoff<S: TaskStore, St: Send + Sync + 'static>(
    shared: &Arc<Shared<S, St>>,
    tracker: &TaskTracker,
    handoff: Handoff,
    offers: &Offers,
) {
    let permit = shared.capacity.clone().try_acquire_owned().ok();
    match (offers.sent_at(handoff.offer), permit) {
        (Some(t0), Some(permit)) => {
            shared.stats.claimed.inc();
            shared.stats.handed_over.inc();
            shared.metrics.claim(ClaimOutcome::Handoff, Duration::ZERO, 1);
            start(shared, tracker, handoff.task, t0, permit, &mut None);
        }
        _ => release(shared, vec![handoff.task.lease]).await,
    }
}

/// After announcing a wait, the claim loop looks for work at once and again this long after the
/// announcement: an enqueue whose statement began before the announcement took effect saw no waiter,
/// sent no wake-up, and may commit only after the first look (its own run and commit, longer on a
/// loaded server). The later looks find it then rather than at the next poll.
const SETTLE_CHECKS: [Duration; 2] = [Duration::from_millis(100), Duration::from_secs(1)];

/// The looks for work still due after the latest announcement.
#[derive(Default)]
struct SettleChecks {
    announced: Option<Instant>,
    done: usize,
}

impl SettleChecks {
    fn after(announced: Instant) -> Self {
        Self { announced: Some(announced), done: 0 }
    }

    /// When the next look is due, if one is.
    fn next(&self) -> Option<Instant> {
        Some(self.announced? + *SETTLE_CHECKS.get(self.done)?)
    }

    /// Marks the looks due by `now` as taken (the loop claims next).
    fn passed(&mut self, now: Instant) {
        while self.next().is_some_and(|at| at <= now) {
            self.done += 1;
        }
    }
}

/// How long the claim loop waits for more running tasks to finish when only a few slots are free.
const LINGER: Duration = Duration::from_millis(5);

/// When a few slots are free but most are busy, waits up to [`LINGER`] for a quarter of the capacity
/// to be free, so that one claim takes a batch rather than one task per finished task. An idle worker
/// (every slot free) claims at once.
async fn gather<S, St>(shared: &Shared<S, St>, stop: &CancellationToken) {
    let batch = (shared.config.concurrency as usize).div_ceil(4);
    let deadline = Instant::now() + LINGER;
    loop {
        let free = shared.capacity.available_permits();
        if free == 0 || free >= batch {
            return;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(deadline) => return,
            _ = shared.capacity_freed.notified() => {}
        }
    }
}

/// Claims up to the free capacity and starts the tasks; answers whether the claim reached its limit.
pub(crate) async fn claim_once<S: TaskStore, St: Send + Sync + 'static>(
    shared: &Arc<Shared<S, St>>,
    tracker: &TaskTracker,
) -> bool {
    let free = shared.capacity.available_permits();
    if free == 0 {
        return false;
    }
    let asked = claim_size(free);
    let params = TaskClaimParams {
        queues: shared.config.queues.clone(),
        limit: u32::try_from(asked).unwrap_or(u32::MAX),
        default_lease_ttl: shared.config.lease_ttl,
        worker_id: shared.worker_id.clone(),
    };
    let t0 = Instant::now();
    let batch = match shared.store.task_claim(params).await {
        Ok(batch) => batch,
        Err(e) => {
            shared.stats.claim_errors.inc();
            shared.metrics.claim(ClaimOutcome::Error, t0.elapsed(), 0);
            tracing::warn!(error = %e, "claiming failed");
            return false;
        }
    };
    let took = t0.elapsed();
    shared.health.store_ok();
    let outcome = if batch.contended {
        ClaimOutcome::Contended
    } else if batch.tasks.is_empty() {
        ClaimOutcome::Empty
    } else {
        ClaimOutcome::Claimed
    };
    let tasks = batch.tasks;
    shared.metrics.claim(outcome, took, tasks.len());
    // tasks discarded or left alone by the claim count towards its limit: more may be due
    let full = batch.reached_limit || tasks.len() == asked;
    // the metric handles of the previous task: a batch mostly holds one kind of one queue
    let mut km: Option<Arc<KindMetrics>> = None;
    for task in tasks {
        let Ok(permit) = shared.capacity.clone().try_acquire_owned() else {
            unreachable!("only the claim loop takes permits, and it claimed no more than were free");
        };
        shared.stats.claimed.inc();
        start(shared, tracker, task, t0, permit, &mut km);
    }
    full
}

/// Runs a task claimed by a request sent at `t0`, under its lease; `km` holds the metric handles of the
/// previous task started.
fn start<S: TaskStore, St: Send + Sync + 'static>(
    shared: &Arc<Shared<S, St>>,
    tracker: &TaskTracker,
    task: ClaimedTask,
    t0: Instant,
    permit: OwnedSemaphorePermit,
    km: &mut Option<Arc<KindMetrics>>,
) {
    {
        let scaled = shared.config.scaled(task.lease_ttl);
        let entry = Arc::new(LeaseEntry::new(task.lease, task.lease_ttl, scaled.margin, scaled.grace, t0));
        if Instant::now() >= entry.trusted_until() {
            // the answer came too late (the store stalled): the lease may already have expired, so the
            // job is not started; the task goes to the next claim after its lease ends
            shared.stats.lease_lost.inc();
            shared.kind_metrics(&task).lease_lost("trust_expired");
            tracing::warn!(task_id = %task.lease.task_id, "claim answered after its trust window: not run");
            drop(permit);
            return;
        }
        shared.active.insert(entry.clone(), task.lease_ttl < shared.config.lease_ttl);
        let metrics = match km {
            Some(m) if m.labels(&task.queue, &task.kind) => m.clone(),
            _ => km.insert(shared.kind_metrics(&task)).clone(),
        };
        tracker.spawn(execute(shared.clone(), task, entry, permit, metrics));
    }
}

/// The size of a claim when `free` slots are free: the largest power of two, or one and a half times
/// one, that fits (1, 2, 3, 4, 6, 8, 12, 16, 24, ...). A full claim is followed by one for the slots still
/// free, so no slot waits for long; a store that keeps a plan per claim size (PostgreSQL, one for each
/// size class of its table) then needs only two per doubling of the concurrency.
fn claim_size(free: usize) -> usize {
    let pow = 1 << free.ilog2();
    if pow >= 2 && free >= pow + pow / 2 { pow + pow / 2 } else { pow }
}

/// The next hint for one of `queues` (`None`; skipped while the worker is `at_capacity`) or the next
/// task handed over; never resolves without a subscription.
async fn hint(
    wakeup: &mut Option<Box<dyn Wakeup>>,
    queues: &[String],
    at_capacity: bool,
) -> Result<Option<Box<Handoff>>> {
    let Some(w) = wakeup else {
        return std::future::pending().await;
    };
    loop {
        match w.recv().await? {
            Hint::Available(queue) => {
                if !at_capacity && queues.contains(&queue) {
                    return Ok(None);
                }
            }
            Hint::Handoff(h) => return Ok(Some(h)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::{SETTLE_CHECKS, SettleChecks, claim_size};

    #[test]
    fn settle_checks_follow_an_announcement_at_their_delays_then_stop() {
        assert_eq!(SettleChecks::default().next(), None);
        let t0 = Instant::now();
        let mut checks = SettleChecks::after(t0);
        assert_eq!(checks.next(), Some(t0 + SETTLE_CHECKS[0]));
        checks.passed(t0 + SETTLE_CHECKS[0] - Duration::from_millis(1));
        assert_eq!(checks.next(), Some(t0 + SETTLE_CHECKS[0]), "not due yet");
        checks.passed(t0 + SETTLE_CHECKS[0]);
        assert_eq!(checks.next(), Some(t0 + SETTLE_CHECKS[1]));
        checks.passed(t0 + SETTLE_CHECKS[1] + Duration::from_secs(60));
        assert_eq!(checks.next(), None);
    }

    #[test]
    fn claim_sizes_are_powers_of_two_and_halfway_between() {
        let sizes: Vec<usize> = [1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 100, 144, 400, 1000].map(claim_size).to_vec();
        assert_eq!(sizes, vec![1, 2, 3, 4, 4, 6, 6, 8, 8, 12, 96, 128, 384, 768]);
        for free in 1..5000 {
            let n = claim_size(free);
            assert!(n <= free && n * 4 > free * 2, "{free} -> {n}");
        }
    }
}
