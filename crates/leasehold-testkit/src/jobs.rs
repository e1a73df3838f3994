//! Jobs the conformance suite and the process tests run, and the worker settings of tests whose leases
//! must run out within seconds.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Deserializer, Serialize};

use leasehold::{Job, JobContext, JobResult, Outcome, TaskId, TaskLease, WorkerBuilder};

/// A worker whose leases last 3 s (`L`), renewed every second (`H`), trusted until half a second before
/// they end (`M`), its cancelled jobs given 0.2 s, polling every 0.2 s: a lease that is not renewed is
/// lost, and its job cancelled, within 2.5 s.
pub fn three_second_leases<S: leasehold::TaskStore, St: Send + Sync + 'static>(
    builder: WorkerBuilder<S, St>,
) -> WorkerBuilder<S, St> {
    builder
        .lease_ttl(Duration::from_secs(3))
        .heartbeat_interval(Duration::from_secs(1))
        .trust_margin(Duration::from_millis(500))
        .cancel_grace(Duration::from_millis(200))
        .poll_interval(Duration::from_millis(200))
}

/// Completes a task in the application's own transaction, with an effect row (a backend's
/// [`crate::Backend::complete_with_effect`], made `'static`).
pub type TxCompleter = Arc<dyn Fn(TaskLease) -> BoxFuture<'static, leasehold::Result<()>> + Send + Sync>;

/// What the test jobs share with the test: which tasks saw their cancellation, and how often jobs
/// started.
#[derive(Default)]
pub struct Probe {
    /// Tasks whose job observed cancellation.
    pub cancelled: Mutex<Vec<TaskId>>,
    /// Tasks whose job started, in order.
    pub started: Mutex<Vec<TaskId>>,
    /// Transactional completion for [`CompletesInTx`].
    pub completer: Option<TxCompleter>,
}

impl Probe {
    /// Whether the job of `id` observed its cancellation.
    pub fn saw_cancel(&self, id: TaskId) -> bool {
        self.cancelled.lock().unwrap().contains(&id)
    }

    /// Whether the job of `id` started.
    pub fn started(&self, id: TaskId) -> bool {
        self.started.lock().unwrap().contains(&id)
    }
}

/// Completes with its number as the result.
#[derive(Serialize, Deserialize)]
pub struct Echo {
    /// Returned as the result.
    pub n: u32,
}

impl Job for Echo {
    const KIND: &'static str = "echo";
    type State = Probe;
    async fn run(self, ctx: JobContext<Probe>) -> JobResult {
        ctx.state().started.lock().unwrap().push(ctx.task_id());
        Ok(Outcome::CompleteWith(serde_json::json!(self.n)))
    }
}

/// Fails its first `failures` attempts with an error, then completes.
#[derive(Serialize, Deserialize)]
pub struct Flaky {
    /// Attempts that fail.
    pub failures: i32,
}

impl Job for Flaky {
    const KIND: &'static str = "flaky";
    type State = Probe;
    async fn run(self, ctx: JobContext<Probe>) -> JobResult {
        if ctx.attempt() <= self.failures {
            return Err(format!("planned failure {}", ctx.attempt()).into());
        }
        Ok(Outcome::Complete)
    }
}

/// Panics.
#[derive(Serialize, Deserialize)]
pub struct Panics;

impl Job for Panics {
    const KIND: &'static str = "panics";
    type State = Probe;
    async fn run(self, _ctx: JobContext<Probe>) -> JobResult {
        panic!("planned panic")
    }
}

/// Returns the outcome it is told to.
#[derive(Serialize, Deserialize)]
pub enum Steer {
    /// `Outcome::Snooze` for this many ms.
    Snooze(u64),
    /// `Outcome::RetryAfter` this many ms.
    RetryAfter(u64),
    /// `Outcome::Cancel`.
    Cancel,
    /// `Outcome::Fail`.
    Fail,
    /// `Outcome::CompleteWith` a result holding a NUL character, which no store keeps.
    CompleteWithNul,
    /// `Outcome::Fail` with a reason ending in a NUL character.
    FailWithNul,
}

impl Job for Steer {
    const KIND: &'static str = "steer";
    type State = Probe;
    async fn run(self, ctx: JobContext<Probe>) -> JobResult {
        ctx.state().started.lock().unwrap().push(ctx.task_id());
        Ok(match self {
            Steer::Snooze(ms) => Outcome::Snooze(Duration::from_millis(ms)),
            Steer::RetryAfter(ms) => Outcome::RetryAfter(Duration::from_millis(ms)),
            Steer::Cancel => Outcome::Cancel("told to cancel".into()),
            Steer::Fail => Outcome::Fail("told to fail".into()),
            Steer::CompleteWithNul => Outcome::CompleteWith(serde_json::json!({ "text": "a\u{0}b" })),
            Steer::FailWithNul => Outcome::Fail("told to fail \0".into()),
        })
    }
}

/// Runs until cancelled (or for `max_ms`), recording the cancellation.
#[derive(Serialize, Deserialize)]
pub struct UntilCancelled {
    /// Gives up after this long.
    pub max_ms: u64,
}

impl Job for UntilCancelled {
    const KIND: &'static str = "until_cancelled";
    type State = Probe;
    async fn run(self, ctx: JobContext<Probe>) -> JobResult {
        ctx.state().started.lock().unwrap().push(ctx.task_id());
        tokio::select! {
            _ = ctx.cancelled() => {
                ctx.state().cancelled.lock().unwrap().push(ctx.task_id());
                Err("cancelled".into())
            }
            _ = tokio::time::sleep(Duration::from_millis(self.max_ms)) => Ok(Outcome::Complete),
        }
    }
}

/// Takes the token [`JobContext::cancellation_token`] hands out for sub-tasks. With `cancel_own`, cancels
/// it and completes, recording its task in [`Probe::cancelled`] if the attempt then counts as cancelled
/// (it must not). Otherwise waits on that token alone (up to `max_ms`) and records its task in
/// [`Probe::cancelled`] when it fires.
#[derive(Serialize, Deserialize)]
pub struct HandsOnItsToken {
    /// Cancel the job's own token, then complete.
    pub cancel_own: bool,
    /// Gives up after this long.
    pub max_ms: u64,
}

impl Job for HandsOnItsToken {
    const KIND: &'static str = "hands_on_its_token";
    type State = Probe;
    async fn run(self, ctx: JobContext<Probe>) -> JobResult {
        let token = ctx.cancellation_token().clone();
        if self.cancel_own {
            token.cancel();
            if ctx.is_cancelled() {
                ctx.state().cancelled.lock().unwrap().push(ctx.task_id());
            }
            return Ok(Outcome::Complete);
        }
        ctx.state().started.lock().unwrap().push(ctx.task_id());
        // the token alone tells this job to stop, as it would a sub-task it was handed to
        tokio::select! {
            _ = token.cancelled() => {
                ctx.state().cancelled.lock().unwrap().push(ctx.task_id());
                Err("cancelled".into())
            }
            _ = tokio::time::sleep(Duration::from_millis(self.max_ms)) => Ok(Outcome::Complete),
        }
    }
}

/// Completes its task in the application's own transaction through [`Probe::completer`].
#[derive(Serialize, Deserialize)]
pub struct CompletesInTx;

impl Job for CompletesInTx {
    const KIND: &'static str = "completes_in_tx";
    type State = Probe;
    async fn run(self, ctx: JobContext<Probe>) -> JobResult {
        let complete = ctx.state().completer.clone().ok_or("the probe has no transactional completer")?;
        complete(ctx.lease()).await?;
        Ok(Outcome::Complete)
    }
}

/// Panics while its payload is decoded.
#[derive(Serialize)]
pub struct PanicsOnDecode;

impl<'de> Deserialize<'de> for PanicsOnDecode {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        panic!("planned panic while decoding")
    }
}

impl Job for PanicsOnDecode {
    const KIND: &'static str = "panics_on_decode";
    type State = Probe;
    async fn run(self, _ctx: JobContext<Probe>) -> JobResult {
        Ok(Outcome::Complete)
    }
}
