//! The narrow store trait: every backend implements it, and the conformance suite holds each to it.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::error::Result;
use crate::params::*;
use crate::schedule::*;
use crate::task::{TaskId, TaskLease, TaskRecord, TaskState};

/// A task store. Methods are named noun + verb and take one params struct.
///
/// Every write that a lease holder makes carries its [`TaskLease`] and changes nothing unless the
/// task still holds that fencing token; such a write answers [`crate::Error::LeaseLost`] otherwise.
pub trait TaskStore: Clone + Send + Sync + 'static {
    /// A short name for logs and metrics (`"postgres"`, `"sqlite"`).
    fn backend_name(&self) -> &'static str;

    /// Inserts one task; returns its id.
    fn task_insert(&self, task: NewTask) -> impl Future<Output = Result<TaskId>> + Send;

    /// Inserts a task that carries an idempotency key, at most once per key: answers the new task, or
    /// the existing one (with its result) when the key is held by a task with the same kind and payload;
    /// [`crate::Error::IdempotencyConflict`] when it is held by a different one. One atomic upsert on a
    /// unique index decides; never check-then-insert.
    fn task_insert_idempotent(&self, task: NewTask) -> impl Future<Output = Result<Enqueued>> + Send;

    /// Inserts many tasks in one statement; returns their ids in order. Tasks with idempotency keys
    /// are refused here ([`crate::Error::InvalidInput`]): enqueue them one by one.
    fn task_insert_many(&self, tasks: Vec<NewTask>) -> impl Future<Output = Result<Vec<TaskId>>> + Send;

    /// Claims due tasks and tasks whose lease expired, each with a new fencing token. An expired task
    /// that has no attempt left is discarded instead, with [`crate::LEASE_LOST_ON_LAST_ATTEMPT`] recorded,
    /// and so is a claimed task whose payload does not parse as JSON (the store's own table may hold
    /// JSON that serde_json cannot read), with why, fenced by its new token: neither is among the tasks
    /// answered; both are listed in [`crate::ClaimBatch::discarded`], which the worker counts.
    fn task_claim(&self, params: TaskClaimParams) -> impl Future<Output = Result<ClaimBatch>> + Send;

    /// Extends the leases that still carry their token. A lease neither renewed nor busy is lost.
    fn lease_renew(&self, params: LeaseRenewParams) -> impl Future<Output = Result<LeaseRenewal>> + Send;

    /// Completes tasks, each fenced by its token; answers one status per task, in order.
    fn task_complete_many(
        &self,
        params: TaskCompleteParams,
    ) -> impl Future<Output = Result<Vec<CompletionStatus>>> + Send;

    /// Records a failed attempt and schedules the retry, or discards the task.
    fn task_retry(&self, params: TaskRetryParams) -> impl Future<Output = Result<TaskState>> + Send;

    /// Puts the task back to sleep without counting the attempt.
    fn task_snooze(&self, params: TaskSnoozeParams) -> impl Future<Output = Result<()>> + Send;

    /// Finishes the task as cancelled or discarded on the holder's word.
    fn task_finish(&self, params: TaskFinishParams) -> impl Future<Output = Result<()>> + Send;

    /// Makes held tasks available again at once; returns the ones released.
    fn task_release(&self, params: TaskReleaseParams) -> impl Future<Output = Result<Vec<TaskLease>>> + Send;

    /// Cancels a task that has not finished; returns its state afterwards.
    fn task_cancel(&self, params: TaskCancelParams) -> impl Future<Output = Result<TaskState>> + Send;

    /// Reads one task.
    fn task_get(&self, id: TaskId) -> impl Future<Output = Result<TaskRecord>> + Send;

    /// Whether any task of `queues` is claimable now: due and available, or running with an expired
    /// lease. A read that takes no lock; the worker asks it after an empty claim, to tell an idle queue
    /// from one whose due tasks other claimers hold locked (contention).
    fn task_due_exists(&self, queues: Vec<String>) -> impl Future<Output = Result<bool>> + Send;

    /// Deletes up to `limit` tasks that finished more than `older_than` ago (retention); a task whose
    /// idempotency key is still remembered stays until the key's retention ends. Answers how many went.
    fn task_prune(&self, params: TaskPruneParams) -> impl Future<Output = Result<u64>> + Send;

    /// How many tasks each queue has in the states available and running (sampled for metrics).
    fn task_depth(&self) -> impl Future<Output = Result<Vec<QueueDepth>>> + Send;

    /// Subscribes to wake-up hints for newly available tasks.
    fn wakeup_subscribe(&self) -> impl Future<Output = Result<Box<dyn Wakeup>>> + Send;
}

/// Singleton scheduled jobs: a leader lease, the schedules, and the per-tick ledger.
pub trait ScheduleStore: TaskStore {
    /// Takes or extends a leader lease; answers the term's token when `holder` leads.
    fn leader_acquire(
        &self,
        params: LeaderAcquireParams,
    ) -> impl Future<Output = Result<Option<crate::FencingToken>>> + Send;

    /// Ends a term at once (graceful shutdown), if it is still current.
    fn leader_release(&self, leader: LeaderToken) -> impl Future<Output = Result<()>> + Send;

    /// Reads a leader lease.
    fn leader_get(&self, name: &str) -> impl Future<Output = Result<Option<LeaderRecord>>> + Send;

    /// Writes a definition in `leader`'s term (a new schedule starts from the store's `now`; a changed one
    /// keeps its progress) and answers the stored schedule. [`crate::Error::LeadershipLost`] when the term
    /// is over by the time the write would commit: nothing is written.
    fn schedule_upsert(
        &self,
        leader: LeaderToken,
        def: ScheduleDef,
    ) -> impl Future<Output = Result<ScheduleRecord>> + Send;

    /// Marks every schedule not in `keep` as removed (it stops firing) and the others as present, in
    /// `leader`'s term, as [`ScheduleStore::schedule_upsert`] does.
    fn schedule_retire(&self, leader: LeaderToken, keep: Vec<String>) -> impl Future<Output = Result<()>> + Send;

    /// Every schedule.
    fn schedule_list(&self) -> impl Future<Output = Result<Vec<ScheduleRecord>>> + Send;

    /// Pauses, resumes or triggers a schedule.
    fn schedule_control(
        &self,
        name: &str,
        action: ScheduleAction,
    ) -> impl Future<Output = Result<ScheduleRecord>> + Send;

    /// Records one tick (see [`ScheduleTickParams`]); answers whether this call wrote its ledger row
    /// (false: the tick was recorded already, by this or an overlapping leader).
    /// [`crate::Error::LeadershipLost`] when the term is over.
    fn schedule_tick_record(&self, params: ScheduleTickParams) -> impl Future<Output = Result<bool>> + Send;
}

/// A capability: the store's wake-up hints reach workers in every process that uses it (PostgreSQL's
/// LISTEN/NOTIFY). A store without it (SQLite) wakes only the workers of the process that enqueued;
/// workers elsewhere find new tasks at their next poll, so a latency-sensitive deployment of several
/// processes can require this bound.
pub trait CrossProcessWakeups: TaskStore {}

/// A stream of hints that tasks became available in a queue. A hint may be lost or spurious: the
/// table is the truth and workers keep polling.
pub trait Wakeup: Send {
    /// Waits for the next hint, or a task handed to this subscriber. An error means the channel broke
    /// (the caller falls back to polling and calls again later, which reconnects).
    fn recv(&mut self) -> Pin<Box<dyn Future<Output = Result<Hint>> + Send + '_>>;

    /// Says that this subscriber is about to wait for hints on `queues` for up to `ttl`. A store that
    /// sends hints only while someone waits for them (PostgreSQL, whose NOTIFY serializes commits) sends
    /// them from now until `ttl` has passed on its clock; the caller checks for work once more after
    /// announcing, then waits, and announces again before `ttl` runs out. By default the store always
    /// sends hints and this only checks the names ([`crate::check_names`]), as every store does.
    ///
    /// With an `offer`, the subscriber also offers to take one task of each of `queues` as it is enqueued
    /// (a hand-off, see [`Handoff`]); the offer replaces any earlier one of this subscriber and lasts, on
    /// each queue, until a task of it is handed over, the offer is older than its `max_age`, the
    /// announcement runs out, or the subscriber withdraws. A store may ignore offers (SQLite
    /// does: its wake-ups are in-process and cost a claim nothing to wait for).
    fn announce<'a>(
        &'a mut self,
        queues: &'a [String],
        ttl: Duration,
        offer: Option<&'a HandoffOffer>,
    ) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>> {
        let _ = (ttl, offer);
        let checked = crate::check_names("queue name", queues);
        Box::pin(async move { checked })
    }

    /// Whether the store takes the offers of [`Wakeup::announce`] (PostgreSQL does). A subscriber of a
    /// store that does not never receives a [`Hint::Handoff`].
    fn takes_offers(&self) -> bool {
        false
    }

    /// Says that this subscriber no longer waits for hints (its worker stops): the store may stop
    /// sending them at once instead of when the announcement runs out.
    fn withdraw(&mut self) -> Pin<Box<dyn Future<Output = Result<()>> + Send + '_>> {
        Box::pin(async { Ok(()) })
    }
}

/// What a [`Wakeup`] subscription receives.
#[derive(Debug)]
pub enum Hint {
    /// Tasks may have become available in this queue: claim.
    Available(String),
    /// A task was claimed for this subscriber as it was enqueued.
    Handoff(Box<Handoff>),
}

/// An idle subscriber's offer to take one task of each of its queues as it is enqueued: the enqueue claims the
/// task in its own statement, with a new fencing token and a lease of the task's duration (or
/// `lease_ttl`) measured on the store's clock from no earlier than the store received the offer, and
/// sends it to the subscriber, which then holds it as if it had claimed it. This saves an idle worker
/// the claim's round trip between an enqueue and the job's start.
///
/// The holder's trust window (see `docs/lease-protocol.md`) starts when the offer was sent: the store
/// received it after that, and the lease it grants starts no earlier than that receipt. So `number`
/// names the offer, and the hand-off carries it back, for the holder to find when it sent that offer;
/// and the store takes an offer only while it is younger than `max_age` (in proportion for a task whose
/// lease differs from `lease_ttl`), so that a task handed over still has most of its trust window left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandoffOffer {
    /// Increases with each offer of one subscriber.
    pub number: u64,
    /// Written as the claimer of a task handed over (as a claim's `worker_id`).
    pub worker_id: String,
    /// The lease of a task handed over that names none of its own.
    pub lease_ttl: Duration,
    /// How long after it was made the offer may be taken, for a lease of `lease_ttl`.
    pub max_age: Duration,
}

/// A task claimed for a subscriber by its enqueue (see [`HandoffOffer`]).
#[derive(Debug)]
pub struct Handoff {
    /// The offer this hand-off took.
    pub offer: u64,
    /// The task, as a claim would have answered it.
    pub task: crate::task::ClaimedTask,
}
