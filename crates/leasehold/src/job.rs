//! Typed jobs: what users implement, what a handler sees, and what it returns.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use leasehold_core::{FencingToken, TaskId, TaskLease};

use crate::worker::lease::LeaseEntry;

pub use leasehold_core::error::BoxError;

/// A kind of job. The value is the task's payload (serde JSON); `run` does the work.
///
/// ```
/// use leasehold::{Job, JobContext, JobResult, Outcome};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct SendEmail { to: String }
///
/// impl Job for SendEmail {
///     const KIND: &'static str = "send_email";
///     type State = ();
///     async fn run(self, ctx: JobContext<()>) -> JobResult {
///         if ctx.is_cancelled() { return Err("lease lost".into()); }
///         println!("to {} with fencing token {}", self.to, ctx.fence());
///         Ok(Outcome::Complete)
///     }
/// }
/// ```
pub trait Job: Serialize + DeserializeOwned + Send + 'static {
    /// The stable name stored with every task of this job. Renaming it orphans queued tasks.
    const KIND: &'static str;
    /// What the handler reaches through [`JobContext::state`] (a pool, a client); `()` for none.
    type State: Send + Sync + 'static;

    /// Runs one attempt. A returned error is recorded and retried with backoff; a panic is an error.
    fn run(self, ctx: JobContext<Self::State>) -> impl Future<Output = JobResult> + Send;

    /// Defaults for every task of this kind; enqueue options override them.
    fn options() -> JobOptions {
        JobOptions::default()
    }
}

/// What a handler returns: how the attempt ended, or an error to retry.
pub type JobResult = Result<Outcome, BoxError>;

/// How a handler steers the runtime. Errors are separate: they are retried with backoff.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Outcome {
    /// Done.
    Complete,
    /// Done, with a result stored on the task. A result that holds a NUL character (`\u0000`, in a
    /// string or a key), which no store keeps, discards the task instead, with an error that says so
    /// (another attempt would most likely return it again).
    CompleteWith(serde_json::Value),
    /// Try again after this delay; counts as a failed attempt.
    RetryAfter(Duration),
    /// Come back after this delay; does not count as an attempt.
    Snooze(Duration),
    /// Stop for good as cancelled, with the reason.
    Cancel(String),
    /// Stop for good as discarded, with the reason, whatever attempts remain.
    Fail(String),
}

impl Outcome {
    /// Done, with `value` serialized as the task's result.
    pub fn with_result<T: Serialize>(value: &T) -> JobResult {
        Ok(Self::CompleteWith(serde_json::to_value(value)?))
    }
}

/// Per-kind defaults.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobOptions {
    /// Queue (default: `"default"`).
    pub queue: Option<String>,
    /// Priority, lower first (default 0).
    pub priority: Option<i16>,
    /// Attempts (default 25).
    pub max_attempts: Option<i32>,
    /// Lease duration (default: the worker's).
    pub lease_ttl: Option<Duration>,
}

/// What a running attempt knows about itself.
pub struct JobContext<S> {
    pub(crate) kind: &'static str,
    pub(crate) queue: String,
    pub(crate) attempt: i32,
    pub(crate) max_attempts: i32,
    /// The held lease (task and token); its cancellation token fires when the work should stop.
    pub(crate) entry: Arc<LeaseEntry>,
    /// A child of the lease's token, made when the job first asks for a token of its own (a job may
    /// cancel the token it is given, which must not cancel the lease's).
    pub(crate) child: OnceLock<CancellationToken>,
    pub(crate) state: Arc<S>,
}

impl<S> JobContext<S> {
    /// The task's id.
    pub fn task_id(&self) -> TaskId {
        self.entry.lease.task_id
    }

    /// The fencing token of this attempt's claim: put it in writes to resources outside the task
    /// table so they can refuse a stale holder.
    pub fn fence(&self) -> FencingToken {
        self.entry.lease.fence
    }

    /// The id and token together, for fenced writes such as transactional completion.
    pub fn lease(&self) -> TaskLease {
        self.entry.lease
    }

    /// The job kind.
    pub fn kind(&self) -> &str {
        self.kind
    }

    /// The queue the task was claimed from.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// This attempt's number, from 1.
    pub fn attempt(&self) -> i32 {
        self.attempt
    }

    /// Attempts allowed.
    pub fn max_attempts(&self) -> i32 {
        self.max_attempts
    }

    /// The worker's shared state.
    pub fn state(&self) -> &S {
        &self.state
    }

    /// Whether the work should stop: the lease was lost, is no longer trusted, or the worker is
    /// shutting down.
    pub fn is_cancelled(&self) -> bool {
        self.entry.cancel.is_cancelled()
    }

    /// Resolves when the work should stop.
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.entry.cancel.cancelled()
    }

    /// A cancellation token to hand to sub-tasks: it fires when the work should stop. It is this
    /// attempt's own, made on the first call: cancelling it stops what it was handed to, not the attempt
    /// ([`JobContext::is_cancelled`] and [`JobContext::cancelled`] still follow the lease alone).
    pub fn cancellation_token(&self) -> &CancellationToken {
        self.child.get_or_init(|| self.entry.cancel.child_token())
    }
}
