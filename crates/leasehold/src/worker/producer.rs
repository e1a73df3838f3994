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

use super::executor::execute;
use super::lease::LeaseEntry;
use super::{STOP_WRITE_TIMEOUT, Shared};
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
        match tokio::time::timeout(STOP_WRITE_TIMEOUT, w.withdraw()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "withdrawing the wait for wake-ups failed; it runs out by itself")
            }
            Err(_) => tracing::debug!("withdrawing the wait for wake-ups timed out; it runs out by itself"),
        }
        if offers.made {
            give_back_late_handoffs(&shared, w.as_mut()).await;
        }
    }
}

/// After the withdrawal: tasks handed over before it took effect, which this stopping worker will not
/// run, go back at once. The notification of a hand-off committed before the withdrawal comes before
/// the withdrawal's answer or right after it; one that comes later still (a stalled server) is taken
/// over when its lease expires.
async fn give_back_late_handoffs<S: TaskStore, St>(shared: &Shared<S, St>, w: &mut dyn Wakeup) {
    let deadline = Instant::now() + LATE_HANDOFF_WAIT;
    let mut leases = Vec::new();
    // hints of other queues and workers keep coming on a shared channel: the wait has one deadline
    while let Ok(Ok(hint)) = tokio::time::timeout_at(deadline, w.recv()).await {
        if let Hint::Handoff(h) = hint {
            leases.push(h.task.lease);
        }
    }
    release(shared, leases).await;
}

/// How long a stopping worker that made offers waits for hand-offs still on their way.
const LATE_HANDOFF_WAIT: Duration = Duration::from_millis(50);

/// Hands tasks this worker will not run back to the store at once (fenced, the attempt not counted).
async fn release<S: TaskStore, St>(shared: &Shared<S, St>, leases: Vec<TaskLease>) {
    if leases.is_empty() {
        return;
    }
    let n = leases.len();
    let give_back = shared.store.task_release(TaskReleaseParams { leases, lease_lost: false });
    match tokio::time::timeout(STOP_WRITE_TIMEOUT, give_back).await {
        Ok(Ok(released)) => tracing::debug!(released = released.len(), of = n, "tasks given back unstarted"),
        Ok(Err(e)) => tracing::warn!(error = %e, "giving back unstarted tasks failed; their leases expire"),
        Err(_) => tracing::warn!("giving back unstarted tasks timed out; their leases expire"),
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
    // the loop woke to offer again, after a hand-off or to renew an offer about to age out: it offers
    // without a look for work first (its announcement stayed in effect, so enqueues kept notifying)
    let mut offer_only = false;
    // when the loop last looked for work: an offer-only wake does not put off the next poll
    let mut looked_at = Instant::now();
    while !stop.is_cancelled() {
        if wakeup.is_none() && Instant::now() >= subscribe_at {
            // a stop does not wait for a store that does not answer (nor does the announcement below)
            let subscribed = tokio::select! {
                r = shared.store.wakeup_subscribe() => r,
                _ = stop.cancelled() => return,
            };
            match subscribed {
                Ok(w) => {
                    *wakeup = Some(w);
                    announced_until = Instant::now();
                    offers.resubscribed();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "wake-up subscription failed; polling meanwhile");
                    subscribe_at = Instant::now() + cfg.poll_interval * 5;
                }
            }
        }
        if !std::mem::take(&mut offer_only) {
            gather(shared, stop).await;
            if stop.is_cancelled() {
                return;
            }
            looked_at = Instant::now();
            let full_batch = claim_once(shared, tracker, stop).await;
            if full_batch && shared.capacity.available_permits() > 0 {
                continue;
            }
        }
        let at_capacity = shared.capacity.available_permits() == 0;
        if let Some(w) = wakeup.as_mut().filter(|_| !at_capacity) {
            // about to wait for a hint: make sure the store sends them, then look for work once more,
            // since a task enqueued before the announcement took effect sent none
            let now = Instant::now();
            let offering = w.takes_offers() && offer_max_age(cfg) >= MIN_OFFER_AGE;
            let offer_due = offering && offers.renew_at(cfg).is_none_or(|at| at <= now);
            if announced_until <= now + cfg.poll_interval || offer_due {
                // an announcement still in effect is only renewed: enqueues kept notifying meanwhile, so
                // no task slipped past it and there is nothing to look for
                let renewal = announced_until > now;
                let ttl = cfg.poll_interval * ANNOUNCE_POLLS;
                let offer = offering.then(|| offers.make(&shared.worker_id, cfg));
                let announced = tokio::select! {
                    r = w.announce(&cfg.queues, ttl, offer.as_ref()) => r,
                    _ = stop.cancelled() => return,
                };
                match announced {
                    Ok(()) => {
                        announced_until = now + ttl;
                        if !renewal {
                            settle_checks = SettleChecks::after(Instant::now());
                            continue;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "announcing a wait for wake-ups failed; polling meanwhile"),
                }
            }
        }
        let poll = shared.next_claim_at().min(looked_at + cfg.poll_interval);
        let look_at = settle_checks.next().map_or(poll, |at| at.min(poll));
        let renew_at = offers.renew_at(cfg).filter(|_| wakeup.is_some() && !at_capacity);
        let wake_at = renew_at.map_or(look_at, |at| at.min(look_at));
        tokio::select! {
            // a stop comes first, before a hand-off ready at the same time
            biased;
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(wake_at) => {
                let now = Instant::now();
                settle_checks.passed(now);
                offer_only = now < look_at;
            }
            _ = shared.rescheduled.notified() => {}
            _ = shared.capacity_freed.notified(), if at_capacity => {}
            r = hint(wakeup, &cfg.queues, at_capacity) => match r {
                Ok(None) => {}
                Ok(Some(handoff)) => {
                    // the latest offer is spent: the next wait makes a new one
                    if handoff.offer == offers.last {
                        offers.open = false;
                    }
                    take_handoff(shared, tracker, *handoff, offers).await;
                    offer_only = true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "wake-up channel broke; subscribing again");
                    *wakeup = None;
                    offers.resubscribed();
                    subscribe_at = Instant::now();
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
    /// Whether this subscription made any offer (a worker of several queues offers on each of them, so
    /// hand-offs may still come after one took the latest offer).
    made: bool,
}

/// How many offers [`Offers`] remembers. A hand-off takes the latest offer, or an earlier one when
/// newer announcements were sent while it was on its way: one for each hand-off of the same offer the
/// worker took before it (one per queue), so a few would do.
const OFFERS_KEPT: usize = 64;

impl Offers {
    /// A new offer, sent now.
    fn make(&mut self, worker_id: &str, cfg: &crate::config::WorkerConfig) -> HandoffOffer {
        self.last += 1;
        if self.sent.len() == OFFERS_KEPT {
            self.sent.pop_front();
        }
        self.sent.push_back((self.last, Instant::now()));
        (self.open, self.made) = (true, true);
        let max_age = offer_max_age(cfg);
        HandoffOffer { number: self.last, worker_id: worker_id.to_owned(), lease_ttl: cfg.lease_ttl, max_age }
    }

    /// When the offer `number` was sent, if it is one of the latest.
    fn sent_at(&self, number: u64) -> Option<Instant> {
        self.sent.iter().find(|(n, _)| *n == number).map(|(_, at)| *at)
    }

    /// When the open offer should be made again, half its age limit after it was sent: the store stops
    /// taking it at the limit.
    fn renew_at(&self, cfg: &crate::config::WorkerConfig) -> Option<Instant> {
        let (_, sent) = self.sent.back().filter(|_| self.open)?;
        Some(*sent + offer_max_age(cfg) / 2)
    }

    /// A new subscription: the old one's offers are closed by its first announcement.
    fn resubscribed(&mut self) {
        (self.open, self.made) = (false, false);
    }
}

/// How long after it was sent an offer may still be taken: half of what is left of the lease once the
/// margin and one heartbeat interval are taken off (the worker's configuration checks that something is),
/// so that a task handed over at the last moment still has half that left of its trust window when its
/// first renewal is due, the heartbeat renewing a lease it was just given at its next round.
fn offer_max_age(cfg: &crate::config::WorkerConfig) -> Duration {
    cfg.lease_ttl.saturating_sub(cfg.trust_margin).saturating_sub(cfg.heartbeat_interval) / 2
}

/// A worker whose offers could be taken for less than this long makes none: it would announce again
/// every few milliseconds to keep one open.
const MIN_OFFER_AGE: Duration = Duration::from_millis(200);

/// Starts a task handed to this worker, counting its trust window from when the offer it took was
/// sent (the store received the offer after that, and started the lease no earlier than that receipt).
/// Gives it back at once (fenced, the attempt not counted) when no slot is free (the worker filled up
/// by claiming after it offered), the offer is not one of the latest, or the lease would not be trusted
/// until the heartbeat's first renewal.
async fn take_handoff<S: TaskStore, St: Send + Sync + 'static>(
    shared: &Arc<Shared<S, St>>,
    tracker: &TaskTracker,
    handoff: Handoff,
    offers: &Offers,
) {
    let task = handoff.task;
    let scaled = shared.config.scaled(task.lease_ttl);
    // trusted until the heartbeat's first renewal at least
    let trusted = |t0: Instant| Instant::now() + scaled.heartbeat < t0 + task.lease_ttl.saturating_sub(scaled.margin);
    let t0 = offers.sent_at(handoff.offer).filter(|t0| trusted(*t0));
    let permit = shared.capacity.clone().try_acquire_owned().ok();
    match (t0, permit) {
        (Some(t0), Some(permit)) => {
            shared.stats.claimed.inc();
            shared.stats.handed_over.inc();
            shared.metrics.claim(ClaimOutcome::Handoff, Duration::ZERO, 1);
            start(shared, tracker, task, t0, permit, true, &mut None);
        }
        (t0, permit) => {
            tracing::debug!(
                task_id = %task.lease.task_id,
                trusted = t0.is_some(),
                slot = permit.is_some(),
                "a task handed over is given back"
            );
            release(shared, vec![task.lease]).await;
        }
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
///
/// A stop while the claim is in flight gives it [`STOP_WRITE_TIMEOUT`] to answer, and hands back what it
/// claimed rather than starting it; a claim that answers after that is dropped (what it claimed, if
/// anything, is taken over once the leases expire), so that a store that does not answer cannot hold up
/// the stop.
pub(crate) async fn claim_once<S: TaskStore, St: Send + Sync + 'static>(
    shared: &Arc<Shared<S, St>>,
    tracker: &TaskTracker,
    stop: &CancellationToken,
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
    let claim = shared.store.task_claim(params);
    tokio::pin!(claim);
    let answer = tokio::select! {
        r = &mut claim => r,
        _ = stop.cancelled() => match tokio::time::timeout(STOP_WRITE_TIMEOUT, claim).await {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!("a claim in flight did not answer the stopping worker; it is dropped");
                return false;
            }
        },
    };
    // the claim wrote these as discarded, whether or not the worker is stopping: no attempt of it ran
    for d in answer.iter().flat_map(|batch| &batch.discarded) {
        shared.stats.discarded.inc();
        shared.kind_metrics_of(&d.queue, &d.kind).settled_unrun("discarded");
    }
    let batch = match answer {
        Ok(batch) if stop.is_cancelled() => {
            release(shared, batch.tasks.iter().map(|t| t.lease).collect()).await;
            return false;
        }
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
        start(shared, tracker, task, t0, permit, false, &mut km);
    }
    full
}

/// Runs a task claimed by a request sent at `t0` (`handed_over`: the offer an enqueue took), under its
/// lease; `km` holds the metric handles of the previous task started.
fn start<S: TaskStore, St: Send + Sync + 'static>(
    shared: &Arc<Shared<S, St>>,
    tracker: &TaskTracker,
    task: ClaimedTask,
    t0: Instant,
    permit: OwnedSemaphorePermit,
    handed_over: bool,
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
        shared.active.insert(entry.clone(), handed_over || task.lease_ttl < shared.config.lease_ttl);
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

    use super::{OFFERS_KEPT, Offers, SETTLE_CHECKS, SettleChecks, claim_size, offer_max_age};
    use crate::config::WorkerConfig;

    #[test]
    fn offers_remember_when_each_was_sent_and_are_renewed_halfway_to_their_age_limit() {
        let cfg = WorkerConfig::default();
        // 30 s, less the margin of 5 and a heartbeat interval of 10, halved
        assert_eq!(offer_max_age(&cfg), Duration::from_millis(7_500));
        let mut offers = Offers::default();
        assert_eq!(offers.renew_at(&cfg), None);
        let before = Instant::now();
        let first = offers.make("w", &cfg);
        let after = Instant::now();
        assert_eq!((first.number, first.worker_id.as_str(), first.lease_ttl), (1, "w", cfg.lease_ttl));
        assert_eq!(first.max_age, offer_max_age(&cfg));
        let sent = offers.sent_at(1).unwrap();
        assert!(before <= sent && sent <= after);
        assert_eq!(offers.renew_at(&cfg), Some(sent + Duration::from_millis(3_750)));
        // a hand-off took it: nothing to renew, a new offer is due
        offers.open = false;
        assert_eq!(offers.renew_at(&cfg), None);
        let numbers: Vec<u64> = (0..OFFERS_KEPT).map(|_| offers.make("w", &cfg).number).collect();
        assert_eq!(numbers, (2..2 + OFFERS_KEPT as u64).collect::<Vec<_>>());
        assert_eq!(offers.sent_at(1), None, "the oldest is forgotten");
        assert!(offers.sent_at(2).is_some() && offers.sent_at(1 + OFFERS_KEPT as u64).is_some());
        assert!(offers.made);
        offers.resubscribed();
        assert!(!offers.made && offers.renew_at(&cfg).is_none());
    }

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
