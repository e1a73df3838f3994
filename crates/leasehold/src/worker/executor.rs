//! Runs one claimed task and writes its outcome, fenced by the claim's token.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::Utc;
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::Instant;
use tracing::Instrument;

use leasehold_core::*;

use super::completer::{CompleteRequest, Settle};
use super::lease::{CancelReason, LeaseEntry};
use super::registry::Prepared;
use super::tries::{Tries, attempt};
use super::{STOP_WRITE_TIMEOUT, Shared};
use crate::job::{JobContext, JobResult, Outcome};
use crate::telemetry::record::{self, KindMetrics};

/// Added to a retry's or snooze's delay before claiming again: the store measured the delay from its own
/// `now` when it received the write, a little after this worker sent it.
const DUE_ALLOWANCE: Duration = Duration::from_millis(20);

/// How an attempt ended, before its outcome is written.
enum Ran {
    Returned(JobResult),
    Panicked(String),
    /// Cancelled, and still running when the grace period ended: its future was dropped.
    Abandoned,
    UnknownKind,
    Undecodable(String),
}

/// Starts a claimed task: decodes its payload and builds its job (user code, so panics are caught),
/// and answers the future that runs the job and writes its outcome. The preparation runs here, before
/// the future exists, so that the claimed task's fields are not part of the future the worker spawns.
pub(crate) fn execute<S: TaskStore, St: Send + Sync + 'static>(
    shared: Arc<Shared<S, St>>,
    task: ClaimedTask,
    entry: Arc<LeaseEntry>,
    permit: OwnedSemaphorePermit,
    km: Arc<KindMetrics>,
) -> impl Future<Output = ()> + Send + 'static {
    let span = tracing::info_span!(
        "leasehold.job",
        task_id = %task.lease.task_id,
        kind = %task.kind,
        queue = %task.queue,
        attempt = task.attempt,
        fence = %task.lease.fence,
        outcome = tracing::field::Empty,
        error = tracing::field::Empty,
    );
    // a takeover keeps the task's run_at: its wait would include the previous holder's run
    if !task.taken_over {
        km.started((Utc::now() - task.run_at).to_std().unwrap_or_default());
    }
    shared.metrics.in_flight(1.0);
    let (attempt, max_attempts) = (task.attempt, task.max_attempts);
    let job = span.in_scope(|| prepare(&shared, task, &entry));
    // whatever happens below, even a panic, the lease leaves the active set and the slot frees
    let mut done = Done { shared, entry, permit: Some(permit), settling: None };
    async move {
        let started = Instant::now();
        let ran = match job {
            Ok(job) => run_job(&done.entry, job).await,
            Err(ran) => ran,
        };
        done.entry.finishing.store(true, Ordering::Release);
        // the handler is done: its slot takes the next task while the outcome is written, within a
        // second allowance of `concurrency` outcomes in flight, so claims never outrun the store's answers
        let settling = match done.shared.settling.clone().try_acquire_owned() {
            Ok(permit) => Ok(permit),
            Err(_) => Box::pin(done.shared.settling.clone().acquire_owned()).await,
        };
        if let Ok(settling) = settling {
            done.settling = Some(settling);
            done.free_slot();
        }
        // A handler that completed completes, whatever happened meanwhile: the fence decides.
        let result = match ran {
            Ran::Returned(Ok(Outcome::Complete)) => None,
            Ran::Returned(Ok(Outcome::CompleteWith(v))) if !json_holds_nul(&v) => Some(v),
            // Every other outcome writes through the store itself. Those futures are large (the store's
            // own statement futures) and rare, so they are boxed rather than inlined into every task's
            // future, which the worker moves into each task it spawns.
            ran => {
                let outcome =
                    Box::pin(settle_otherwise(&done.shared, &km, &done.entry, attempt, max_attempts, ran)).await;
                settled(&km, outcome, started);
                return;
            }
        };
        // the completer settles the task when the store answers; the task's own future ends here
        let lease = done.entry.lease;
        let shared = done.shared.clone();
        let then = Completing { done: Some(done), km, started, span: tracing::Span::current() };
        // queued at once unless the completer is a full batch behind; the wait, when there is one, is
        // boxed, which keeps it out of every task's future
        let refused = match shared.completer.try_send(CompleteRequest { lease, result, then }) {
            Ok(()) => return,
            Err(TrySendError::Full(request)) => match Box::pin(shared.completer.send(request)).await {
                Ok(()) => return,
                Err(refused) => refused.0,
            },
            Err(TrySendError::Closed(request)) => request,
        };
        refused.then.settle(Err(Error::database("the worker's completer has stopped")));
    }
    .instrument(span)
}

/// Records how a task's attempt ended, in its metrics and its span.
fn settled(km: &KindMetrics, outcome: &'static str, started: Instant) {
    km.settled(outcome, started.elapsed());
    tracing::Span::current().record("outcome", outcome);
    tracing::debug!(outcome, "task settled");
}

/// Removes a settled (or abandoned) lease from the active set and frees its slot.
struct Done<S, St> {
    shared: Arc<Shared<S, St>>,
    entry: Arc<LeaseEntry>,
    /// The running slot, freed once the handler returned.
    permit: Option<OwnedSemaphorePermit>,
    /// The place among the outcomes being written, held from the handler's return to the end.
    settling: Option<OwnedSemaphorePermit>,
}

impl<S, St> Done<S, St> {
    fn free_slot(&mut self) {
        if let Some(permit) = self.permit.take() {
            drop(permit);
            self.shared.capacity_freed.notify_one();
        }
    }
}

impl<S, St> Drop for Done<S, St> {
    fn drop(&mut self) {
        self.shared.active.remove(self.entry.lease);
        self.shared.metrics.in_flight(-1.0);
        self.free_slot();
        drop(self.settling.take());
    }
}

/// A completed task waiting for the store's answer to its completion, which the completer hands to
/// [`Settle::settle`]. Its lease stays in the active set (and renewed) until then. Dropped unanswered
/// (the completer stopped first), it counts as a failed write: the task runs again after its lease
/// expires.
pub(crate) struct Completing<S, St> {
    done: Option<Done<S, St>>,
    km: Arc<KindMetrics>,
    started: Instant,
    span: tracing::Span,
}

impl<S, St> Completing<S, St> {
    /// Counts and records the store's answer, then lets the task go: dropping `done` takes the lease out
    /// of the active set and frees the task's last slot. Only the first answer counts.
    fn finish(&mut self, status: Result<CompletionStatus>) {
        let Some(done) = self.done.take() else { return };
        let _in_span = self.span.enter();
        let stats = &done.shared.stats;
        let outcome = match status {
            Ok(CompletionStatus::Completed | CompletionStatus::AlreadyCompleted) => {
                stats.completed.inc();
                "completed"
            }
            Ok(CompletionStatus::LeaseLost) => {
                stats.lease_lost.inc();
                self.km.lease_lost("fenced");
                record::stale_write("complete");
                tracing::warn!("completion rejected: the lease was lost before it");
                "lease_lost"
            }
            Err(e) => {
                stats.write_errors.inc();
                tracing::warn!(error = %e, "completion failed; the task runs again after its lease expires");
                "write_failed"
            }
        };
        settled(&self.km, outcome, self.started);
    }
}

impl<S: Send + Sync + 'static, St: Send + Sync + 'static> Settle for Completing<S, St> {
    fn settle(mut self, status: Result<CompletionStatus>) {
        self.finish(status);
    }

    fn trusted_until(&self) -> Instant {
        self.done.as_ref().map_or_else(Instant::now, |d| d.entry.trusted_until())
    }
}

impl<S, St> Drop for Completing<S, St> {
    fn drop(&mut self) {
        // answered already in nearly every case: the error (two allocations) is made only when not
        if self.done.is_some() {
            self.finish(Err(Error::database("the worker's completer stopped before the store answered")));
        }
    }
}

/// The job's future, or why there is none.
fn prepare<S, St: Send + Sync + 'static>(
    shared: &Shared<S, St>,
    task: ClaimedTask,
    entry: &Arc<LeaseEntry>,
) -> std::result::Result<BoxFuture<'static, JobResult>, Ran> {
    let Some((kind, handler)) = shared.registry.get_with_kind(&task.kind) else {
        return Err(Ran::UnknownKind);
    };
    let ctx = JobContext {
        kind,
        queue: task.queue,
        attempt: task.attempt,
        max_attempts: task.max_attempts,
        entry: entry.clone(),
        child: OnceLock::new(),
        state: shared.state.clone(),
    };
    // decoding the payload and building the job's future run user code too: catch its panics
    match std::panic::catch_unwind(AssertUnwindSafe(|| handler.prepare(task.payload, ctx))) {
        Ok(Prepared::Run(fut)) => Ok(fut),
        Ok(Prepared::Undecodable(msg)) => Err(Ran::Undecodable(msg)),
        Err(panic) => {
            Err(Ran::Panicked(format!("while decoding the payload or starting the job: {}", panic_message(&*panic))))
        }
    }
}

/// Runs the job until it returns, or until its lease is lost or the worker stops and then for the
/// grace period at most.
async fn run_job(entry: &LeaseEntry, fut: BoxFuture<'static, JobResult>) -> Ran {
    let mut fut = AssertUnwindSafe(fut).catch_unwind();
    let stop = async {
        tokio::select! {
            _ = entry.cancel.cancelled() => {}
            _ = entry.trust_expired() => {}
        }
    };
    tokio::select! {
        r = &mut fut => return caught(r),
        _ = stop => {}
    }
    // cancelled: the grace period is rare, so its timer is boxed rather than part of every task's future
    Box::pin(async move {
        match tokio::time::timeout(entry.grace, fut).await {
            Ok(r) => caught(r),
            Err(_) => Ran::Abandoned,
        }
    })
    .await
}

fn caught(r: std::thread::Result<JobResult>) -> Ran {
    match r {
        Ok(res) => Ran::Returned(res),
        Err(panic) => Ran::Panicked(panic_message(&*panic)),
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic payload".to_owned())
}

/// Writes every outcome but a completion, through the store; answers its name for the span and logs.
async fn settle_otherwise<S: TaskStore, St>(
    shared: &Shared<S, St>,
    km: &KindMetrics,
    entry: &LeaseEntry,
    attempt: i32,
    max_attempts: i32,
    ran: Ran,
) -> &'static str {
    let lease = entry.lease;
    let stats = &shared.stats;
    match entry.reason() {
        Some(CancelReason::LeaseGone) => {
            stats.lease_lost.inc();
            km.lease_lost("gone");
            return "lease_lost";
        }
        Some(CancelReason::TrustExpired) => {
            // counted once, as trust expired, whatever the release finds
            stats.lease_lost.inc();
            km.lease_lost("trust_expired");
            match shared.store.task_release(TaskReleaseParams { leases: vec![lease], lease_lost: true }).await {
                Ok(released) if !released.contains(&lease) => record::stale_write("release"),
                Ok(_) => {}
                Err(e) if e.is_lease_lost() => record::stale_write("release"),
                Err(e) => tracing::warn!(error = %e, "release failed; the task runs again after its lease expires"),
            }
            return "self_fenced";
        }
        Some(CancelReason::Shutdown) => {
            // the worker is stopping: a store that does not answer must not hold it (the lease expires)
            let released = shared.store.task_release(TaskReleaseParams { leases: vec![lease], lease_lost: false });
            let released = tokio::time::timeout(STOP_WRITE_TIMEOUT, released)
                .await
                .unwrap_or_else(|_| Err(Error::Unavailable("the release timed out while the worker stopped".into())));
            return match released {
                Ok(released) if released.contains(&lease) => {
                    stats.released.inc();
                    "released"
                }
                Ok(_) => named(fenced(shared, km, "release"), "released"),
                Err(e) => named(failed_write(shared, km, "release", &e), "released"),
            };
        }
        None => {}
    }
    let retry = |error: String, delay: Option<Duration>| {
        let retry_in = if attempt >= max_attempts {
            None
        } else {
            Some(delay.unwrap_or_else(|| shared.config.retry.delay(attempt)))
        };
        let error = storable(error);
        tracing::Span::current().record("error", error.as_str());
        async move {
            let written =
                persist(entry, || shared.store.task_retry(TaskRetryParams { lease, error: error.clone(), retry_in }))
                    .await;
            if let (Ok(TaskState::Available), Some(d)) = (&written, retry_in) {
                shared.due_in(d + DUE_ALLOWANCE);
            }
            written
        }
    };
    match ran {
        Ran::Returned(Ok(Outcome::CompleteWith(_))) => {
            // the only completion execute does not hand to the completer: a result no store keeps, which
            // another attempt would most likely return again (and repeat the job's effects to get there)
            discard(shared, km, entry, UNSTORABLE_RESULT.to_owned()).await
        }
        Ran::Returned(Ok(Outcome::Complete)) => unreachable!("execute hands completions to the completer"),
        Ran::Returned(Ok(Outcome::RetryAfter(d))) => {
            retried(shared, km, retry("retry requested by the job".into(), Some(d)).await)
        }
        Ran::Returned(Ok(Outcome::Snooze(delay))) => {
            match persist(entry, || shared.store.task_snooze(TaskSnoozeParams { lease, delay })).await {
                Ok(()) => {
                    stats.snoozed.inc();
                    shared.due_in(delay + DUE_ALLOWANCE);
                    "snoozed"
                }
                Err(e) => named(failed_write(shared, km, "snooze", &e), "snoozed"),
            }
        }
        Ran::Returned(Ok(Outcome::Cancel(reason))) => {
            let reason = storable(reason);
            let finish = || {
                shared.store.task_finish(TaskFinishParams {
                    lease,
                    state: TaskState::Cancelled,
                    reason: reason.clone(),
                })
            };
            let written = write(shared, km, "finish", persist(entry, finish)).await;
            if written == Written::Done {
                stats.cancelled.inc();
            }
            named(written, "cancelled")
        }
        Ran::Returned(Ok(Outcome::Fail(reason))) => discard(shared, km, entry, reason).await,
        Ran::Returned(Err(e)) => retried(shared, km, retry(e.to_string(), None).await),
        Ran::Panicked(msg) => {
            stats.panics.inc();
            retried(shared, km, retry(format!("the job panicked: {msg}"), None).await)
        }
        Ran::UnknownKind => {
            let kind = "unknown job kind: no handler is registered for it in this worker".to_owned();
            retried(shared, km, retry(kind, None).await)
        }
        Ran::Undecodable(msg) => discard(shared, km, entry, msg).await,
        Ran::Abandoned => unreachable!("only a cancelled job is abandoned, and a cancelled job has a reason"),
    }
}

async fn discard<S: TaskStore, St>(
    shared: &Shared<S, St>,
    km: &KindMetrics,
    entry: &LeaseEntry,
    reason: String,
) -> &'static str {
    let reason = storable(reason);
    tracing::Span::current().record("error", reason.as_str());
    let lease = entry.lease;
    let finish =
        || shared.store.task_finish(TaskFinishParams { lease, state: TaskState::Discarded, reason: reason.clone() });
    let written = write(shared, km, "finish", persist(entry, finish)).await;
    if written == Written::Done {
        shared.stats.discarded.inc();
    }
    named(written, "discarded")
}

fn retried<S, St>(shared: &Shared<S, St>, km: &KindMetrics, r: Result<TaskState>) -> &'static str {
    match r {
        Ok(TaskState::Discarded) => {
            shared.stats.discarded.inc();
            "discarded"
        }
        Ok(_) => {
            shared.stats.retried.inc();
            "retried"
        }
        Err(e) => named(failed_write(shared, km, "retry", &e), "retried"),
    }
}

/// How writing an outcome went.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Written {
    Done,
    /// Refused by the token: the lease was lost before the write.
    Fenced,
    Failed,
}

/// The outcome's name: `ok` when written, otherwise what stopped it.
fn named(w: Written, ok: &'static str) -> &'static str {
    match w {
        Written::Done => ok,
        Written::Fenced => "lease_lost",
        Written::Failed => "write_failed",
    }
}

async fn write<S, St, T>(
    shared: &Shared<S, St>,
    km: &KindMetrics,
    what: &'static str,
    op: impl Future<Output = Result<T>>,
) -> Written {
    match op.await {
        Ok(_) => Written::Done,
        Err(e) => failed_write(shared, km, what, &e),
    }
}

/// A write the store refused because the lease had moved on.
fn fenced<S, St>(shared: &Shared<S, St>, km: &KindMetrics, what: &'static str) -> Written {
    shared.stats.lease_lost.inc();
    km.lease_lost("fenced");
    record::stale_write(what);
    tracing::warn!("{what} rejected by fencing");
    Written::Fenced
}

fn failed_write<S, St>(shared: &Shared<S, St>, km: &KindMetrics, what: &'static str, e: &Error) -> Written {
    if e.is_lease_lost() {
        return fenced(shared, km, what);
    }
    shared.stats.write_errors.inc();
    tracing::warn!(error = %e, "{what} failed; the task runs again after its lease expires");
    Written::Failed
}

/// Why a task is discarded when its job completed with a result that holds a NUL character (`\u0000`, in
/// a string or a key): PostgreSQL's `jsonb` cannot keep one, and a completion batch that carried it
/// would be refused whole. Every store refuses it alike, so a job behaves the same on each.
pub(crate) const UNSTORABLE_RESULT: &str =
    "the job completed with a result that holds a NUL character (\\u0000), which the store cannot keep";

/// An error or reason as the stores can keep it: a NUL character, which PostgreSQL's text refuses, is
/// written as U+FFFD.
fn storable(text: String) -> String {
    if text.contains('\0') { text.replace('\0', "\u{FFFD}") } else { text }
}

/// Sends an outcome's fenced write until the store answers it, while the worker trusted the lease when
/// the first try failed: the rules of `tries`, as for a completion. Only an unreachable store is tried
/// again; an answer, a refusal by the token included, is final. That limit bounds the whole, a stalled
/// attempt included.
async fn persist<T, Fut: Future<Output = Result<T>>>(entry: &LeaseEntry, mut write: impl FnMut() -> Fut) -> Result<T> {
    let mut tries = Tries::new();
    let mut limit: Option<Instant> = None;
    loop {
        match attempt(limit.unwrap_or_else(|| entry.trusted_until()), write()).await {
            Err(e) if e.is_unavailable() => {
                let limit = *limit.get_or_insert_with(|| entry.trusted_until());
                let retry_at = tries.next_at();
                if limit <= retry_at {
                    return Err(e);
                }
                tracing::warn!(error = %e, "writing the task's outcome failed; trying again");
                tokio::time::sleep_until(retry_at).await;
            }
            answered => return answered,
        }
    }
}
