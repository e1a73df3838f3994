//! One parameter struct per store operation, so every backend takes the same shapes.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::task::{ClaimedTask, TaskId, TaskLease};

/// The queue a task goes to when none is named.
pub const DEFAULT_QUEUE: &str = "default";
/// Attempts a task gets when none is named.
pub const DEFAULT_MAX_ATTEMPTS: i32 = 25;
/// The shortest lease a task may ask for.
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(1);
/// The longest error message kept on a task; longer ones are cut.
pub const MAX_ERROR_LEN: usize = 4_000;
/// The longest name a store accepts, in bytes: a queue, a job kind, a schedule, a leader lease, an
/// idempotency or effect key. Names are index keys, and PostgreSQL refuses an index entry above about a
/// third of a page (2.7 kB) with a database error where SQLite takes any length; both stores refuse a
/// longer name before writing anything, with the same typed error.
pub const MAX_NAME_LEN: usize = 512;

/// What is wrong with `name` as a `what` (for example "queue name"), if anything: it is empty or longer
/// than [`MAX_NAME_LEN`] bytes. The message quotes at most the name's first few characters.
pub fn name_problem(what: &str, name: &str) -> Option<String> {
    if name.is_empty() {
        return Some(format!("{what} must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        let start: String = name.chars().take(24).collect();
        return Some(format!("{what} must have at most {MAX_NAME_LEN} bytes, got {} ({start:?}...)", name.len()));
    }
    None
}

/// Why a name written with a new task, schedule or lease cannot be kept: it holds a NUL character
/// (`\u0000`), which PostgreSQL's text refuses, so every store refuses it alike. Names are not checked
/// for it where they are only read (a worker's queues, a claim), so tasks an older leasehold wrote under
/// such a name on SQLite can still be claimed.
pub fn nul_problem(what: &str, name: &str) -> Option<String> {
    name.contains('\0').then(|| format!("{what} must not hold a NUL character (\\u0000), got {name:?}"))
}

/// [`nul_problem`] as an [`Error::InvalidInput`].
pub fn check_no_nul(what: &str, name: &str) -> Result<()> {
    nul_problem(what, name).map_or(Ok(()), |m| Err(Error::InvalidInput(m)))
}

/// Whether a NUL character (`\u0000`) appears anywhere in `v`, in a string or a key. No store keeps
/// one: PostgreSQL's `jsonb` refuses it, so every store refuses it in a payload or a result alike.
pub fn json_holds_nul(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(json_holds_nul),
        serde_json::Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || json_holds_nul(v)),
        _ => false,
    }
}

/// [`name_problem`] as an [`Error::InvalidInput`].
pub fn check_name(what: &str, name: &str) -> Result<()> {
    name_problem(what, name).map_or(Ok(()), |m| Err(Error::InvalidInput(m)))
}

/// [`check_name`] for each of `names`.
pub fn check_names(what: &str, names: &[String]) -> Result<()> {
    names.iter().try_for_each(|n| check_name(what, n))
}

/// A task to insert.
#[derive(Clone, Debug, PartialEq)]
pub struct NewTask {
    /// Chosen by the caller (a UUID v7 by default).
    pub id: TaskId,
    /// The job kind.
    pub kind: String,
    /// The queue.
    pub queue: String,
    /// The job's arguments.
    pub payload: serde_json::Value,
    /// Lower runs first.
    pub priority: i16,
    /// Not before this time; `None` means now on the store's clock.
    pub run_at: Option<DateTime<Utc>>,
    /// Not before this delay after insertion, on the store's clock (added to `run_at` or now).
    pub delay: Option<Duration>,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// Lease duration for this task; `None` uses the claiming worker's default.
    pub lease_ttl: Option<Duration>,
    /// Enqueue at most once per key (see [`Idempotency`]).
    pub idempotency: Option<Idempotency>,
}

/// An idempotency key with the rules for how long it holds.
///
/// While the task holding the key counts, an enqueue with the same key and the same kind and payload
/// returns that task (and its result once completed) instead of inserting; with a different kind or
/// payload it fails with [`Error::IdempotencyConflict`]. A task stops counting when it ends in one of
/// `reuse_after`, or `retain` after it reached any final state; the next enqueue with the key then
/// inserts a new task.
#[derive(Clone, Debug, PartialEq)]
pub struct Idempotency {
    /// The key, unique per store.
    pub key: String,
    /// Final states after which the key may be used again at once.
    pub reuse_after: Vec<crate::TaskState>,
    /// How long the key is remembered once its task reached a final state; `None` is forever.
    pub retain: Option<Duration>,
}

impl Idempotency {
    /// The final states that free a key by default: a task that failed for good or was cancelled may
    /// be submitted again.
    pub const DEFAULT_REUSE_AFTER: [crate::TaskState; 2] = [crate::TaskState::Discarded, crate::TaskState::Cancelled];
    /// How long a key is remembered after its task finished, by default.
    pub const DEFAULT_RETAIN: Duration = Duration::from_secs(24 * 60 * 60);
    /// The longest key accepted, in bytes.
    pub const MAX_KEY_LEN: usize = MAX_NAME_LEN;

    /// `key` with the default rules.
    pub fn new(key: impl Into<String>) -> Self {
        Self { key: key.into(), reuse_after: Self::DEFAULT_REUSE_AFTER.to_vec(), retain: Some(Self::DEFAULT_RETAIN) }
    }

    fn validate(&self) -> Result<()> {
        check_name("an idempotency key", &self.key)?;
        check_no_nul("an idempotency key", &self.key)?;
        if let Some(s) = self.reuse_after.iter().find(|s| !s.is_final()) {
            return Err(Error::InvalidInput(format!("an idempotency key can only be freed by a final state, not {s}")));
        }
        Ok(())
    }

    /// The names of the reuse states, as stored.
    pub fn reuse_after_names(&self) -> Vec<&'static str> {
        self.reuse_after.iter().map(|s| s.as_str()).collect()
    }

    /// The retention in whole milliseconds, if any.
    pub fn retain_ms(&self) -> Option<i64> {
        self.retain.map(duration_ms)
    }
}

/// The task that holds an idempotency key, as a store read it after its insert was refused.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyHolder {
    /// Its id.
    pub id: TaskId,
    /// Whether it is the same job: the same kind and an equal payload (compared by the store, as
    /// JSON values).
    pub same_job: bool,
    /// Its state.
    pub state: crate::TaskState,
    /// Its result, if any.
    pub result: Option<serde_json::Value>,
}

impl KeyHolder {
    /// What the refused enqueue of `task` answers: the holder when it is the same job,
    /// [`Error::IdempotencyConflict`] otherwise.
    pub fn answer(self, task: &NewTask) -> Result<Enqueued> {
        if !self.same_job {
            let key = task.idempotency.as_ref().map(|k| k.key.clone()).unwrap_or_default();
            return Err(Error::IdempotencyConflict { key, existing: self.id });
        }
        Ok(Enqueued { id: self.id, existing: true, state: self.state, result: self.result })
    }
}

/// Rounds of "free the key from a holder that no longer counts, then insert" a store tries before
/// giving up; each round is one atomic statement, and another round is needed only when a key was
/// freed or changed hands in between.
pub const KEYED_INSERT_ROUNDS: usize = 4;

/// What an idempotent enqueue found.
#[derive(Clone, Debug, PartialEq)]
pub struct Enqueued {
    /// The task that holds the key: the new one, or the existing one.
    pub id: TaskId,
    /// Whether the task existed already (the enqueue was a duplicate).
    pub existing: bool,
    /// The task's state.
    pub state: crate::TaskState,
    /// Its result, once completed.
    pub result: Option<serde_json::Value>,
}

impl NewTask {
    /// A task of `kind` with `payload` and default options.
    pub fn new(kind: impl Into<String>, payload: serde_json::Value) -> Self {
        Self {
            id: TaskId::new(),
            kind: kind.into(),
            queue: DEFAULT_QUEUE.to_owned(),
            payload,
            priority: 0,
            run_at: None,
            delay: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            lease_ttl: None,
            idempotency: None,
        }
    }

    /// Checks what a store must never accept.
    pub fn validate(&self) -> Result<()> {
        check_name("task kind", &self.kind)?;
        check_name("queue name", &self.queue)?;
        check_no_nul("task kind", &self.kind)?;
        check_no_nul("queue name", &self.queue)?;
        if self.max_attempts < 1 {
            return Err(Error::InvalidInput(format!("max_attempts must be at least 1, got {}", self.max_attempts)));
        }
        if let Some(i) = &self.idempotency {
            i.validate()?;
        }
        if let Some(ttl) = self.lease_ttl.filter(|ttl| *ttl < MIN_LEASE_TTL) {
            return Err(Error::InvalidInput(format!("lease ttl must be at least {MIN_LEASE_TTL:?}, got {ttl:?}")));
        }
        if json_holds_nul(&self.payload) {
            return Err(Error::InvalidInput(
                "the payload holds a NUL character (\\u0000), which no store keeps".to_owned(),
            ));
        }
        Ok(())
    }

    /// The delay in whole milliseconds (0 when none).
    pub fn delay_ms(&self) -> i64 {
        self.delay.map_or(0, duration_ms)
    }

    /// The lease ttl in whole milliseconds, if set.
    pub fn lease_ttl_ms(&self) -> Option<i64> {
        self.lease_ttl.map(duration_ms)
    }
}

/// A duration in whole milliseconds, saturated to `i64`.
pub fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// What a claim got.
#[derive(Clone, Debug, Default)]
pub struct ClaimBatch {
    /// The tasks claimed, each with its new token.
    pub tasks: Vec<ClaimedTask>,
    /// Whether the claim met other claimers: due tasks it skipped because they held them locked
    /// (PostgreSQL), or a wait for another writer's lock (SQLite). For metrics only.
    pub contended: bool,
    /// Whether the claim picked as many tasks as its limit, counting those it did not hand out: expired
    /// tasks out of attempts and tasks whose payload does not parse, which it discarded, and
    /// (PostgreSQL) a task changed by another transaction
    /// while the claim ran, which it left for the next claim. More may be due, so a worker claims again at
    /// once even though fewer than `limit` tasks came back. A store whose every pick is in `tasks` may
    /// leave it false: a batch of `limit` tasks says the same.
    pub reached_limit: bool,
    /// The tasks the claim picked and discarded instead of handing out (written as discarded already):
    /// for the worker's counts and metrics.
    pub discarded: Vec<crate::ClaimDiscard>,
}

/// Delete tasks that finished long enough ago.
#[derive(Clone, Copy, Debug)]
pub struct TaskPruneParams {
    /// Only tasks that finished more than this long ago, on the store's clock.
    pub older_than: Duration,
    /// At most this many in one statement.
    pub limit: u32,
}

/// How many tasks one queue holds in one state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueDepth {
    /// The queue.
    pub queue: String,
    /// Available or running.
    pub state: crate::TaskState,
    /// Tasks in that state.
    pub count: u64,
}

/// Claim up to `limit` due tasks, or tasks whose lease expired on the store's clock.
#[derive(Clone, Debug)]
pub struct TaskClaimParams {
    /// Queues to claim from.
    pub queues: Vec<String>,
    /// At most this many tasks.
    pub limit: u32,
    /// Lease duration for tasks that do not set their own.
    pub default_lease_ttl: Duration,
    /// The claiming worker's id, recorded on the task.
    pub worker_id: String,
}

impl TaskClaimParams {
    /// The queues to claim from, each once, in the order given. A claim's statement reads each queue it
    /// is given, so a queue named twice would offer each of its tasks twice: the limit would count it
    /// twice, and a store that numbers the claimed tasks to make their tokens could hand one out twice.
    /// Borrowed when no name repeats (the common case).
    pub fn distinct_queues(&self) -> std::borrow::Cow<'_, [String]> {
        let repeats = self.queues.iter().enumerate().any(|(i, q)| self.queues[..i].contains(q));
        if !repeats {
            return std::borrow::Cow::Borrowed(&self.queues);
        }
        let mut once: Vec<String> = Vec::with_capacity(self.queues.len());
        for q in &self.queues {
            if !once.contains(q) {
                once.push(q.clone());
            }
        }
        std::borrow::Cow::Owned(once)
    }
}

/// Renew the leases of a holder. Each entry is renewed only if it still carries its token.
#[derive(Clone, Debug)]
pub struct LeaseRenewParams {
    /// The leases with the duration to extend each by, from the store's `now`.
    pub leases: Vec<(TaskLease, Duration)>,
}

/// What a renewal round found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseRenewal {
    /// Leases extended.
    pub renewed: Vec<TaskLease>,
    /// Leases whose row another transaction holds locked right now (the handler's own completion
    /// transaction, or a claim taking over an expired lease): neither renewed nor known lost; the next
    /// round decides. Every lease in neither list is lost.
    pub busy: Vec<TaskLease>,
}

/// The error recorded on a task discarded because its holder lost the lease on its last attempt.
pub const LEASE_LOST_ON_LAST_ATTEMPT: &str =
    "the lease was lost on the last attempt (the holder crashed or stalled): out of attempts";

/// Mark tasks completed, each fenced by its token.
#[derive(Clone, Debug)]
pub struct TaskCompleteParams {
    /// The leases and the result to store with each.
    pub tasks: Vec<(TaskLease, Option<serde_json::Value>)>,
    /// Delete each task this call completes instead of keeping it as completed, unless it has an
    /// idempotency key: a keyed task is kept (completed, with its result) for as long as its key is
    /// remembered, and left to a worker's retention (kept for good without one). The deletion is
    /// fenced like the update it replaces. A deleted task's result is not stored, and a repeat of the
    /// call answers [`CompletionStatus::LeaseLost`] for it, since nothing is left to show it was
    /// completed.
    pub delete_completed: bool,
}

/// Cuts an error message to [`MAX_ERROR_LEN`] bytes on a character boundary, as stores keep it.
pub fn truncate_error(s: &str) -> &str {
    if s.len() <= MAX_ERROR_LEN {
        return s;
    }
    let mut end = MAX_ERROR_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// What a fenced completion found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompletionStatus {
    /// This call completed the task.
    Completed,
    /// The task was already completed under the same token (inside the handler's own transaction).
    AlreadyCompleted,
    /// The token is no longer current: nothing was written.
    LeaseLost,
}

impl CompletionStatus {
    /// `Ok` when the task is completed under this lease, [`Error::LeaseLost`] otherwise.
    pub fn into_result(self, lease: TaskLease) -> Result<()> {
        match self {
            Self::Completed | Self::AlreadyCompleted => Ok(()),
            Self::LeaseLost => Err(Error::lease_lost(lease)),
        }
    }
}

/// Record a failed attempt: the task becomes available again at `retry_at`, or is discarded.
#[derive(Clone, Debug)]
pub struct TaskRetryParams {
    /// The holder's lease.
    pub lease: TaskLease,
    /// The error to record.
    pub error: String,
    /// Delay before the next attempt, from the store's `now`; `None` discards the task.
    pub retry_in: Option<Duration>,
}

/// Put a running task back to sleep without counting a failed attempt.
#[derive(Clone, Debug)]
pub struct TaskSnoozeParams {
    /// The holder's lease.
    pub lease: TaskLease,
    /// How long, from the store's `now`.
    pub delay: Duration,
}

/// Finish a running task as cancelled or discarded on the holder's word.
#[derive(Clone, Debug)]
pub struct TaskFinishParams {
    /// The holder's lease.
    pub lease: TaskLease,
    /// [`crate::TaskState::Cancelled`] or [`crate::TaskState::Discarded`].
    pub state: crate::TaskState,
    /// Why, recorded as an error of the attempt.
    pub reason: String,
}

/// Hand leases back at once (graceful shutdown, or a holder that stopped trusting its lease).
#[derive(Clone, Debug)]
pub struct TaskReleaseParams {
    /// The leases to give up.
    pub leases: Vec<TaskLease>,
    /// Whether the holder lost trust in its lease: counted as a lease loss. Otherwise the attempt
    /// is not counted (the task never ran to an outcome).
    pub lease_lost: bool,
}

/// Cancel a task by id, whoever holds it (an operator's action). A holder finds out at its next
/// renewal and cancels its work.
#[derive(Clone, Debug)]
pub struct TaskCancelParams {
    /// The task.
    pub id: TaskId,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_reads_each_queue_once_in_the_order_given() {
        let p = |queues: &[&str]| TaskClaimParams {
            queues: queues.iter().map(|q| (*q).to_owned()).collect(),
            limit: 1,
            default_lease_ttl: Duration::from_secs(1),
            worker_id: "w".into(),
        };
        let once = p(&["b", "a"]);
        assert!(matches!(once.distinct_queues(), std::borrow::Cow::Borrowed(_)));
        assert_eq!(*p(&["b", "a", "b", "a", "c"]).distinct_queues(), ["b", "a", "c"]);
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        let long = "é".repeat(MAX_ERROR_LEN); // two bytes each
        let cut = truncate_error(&long);
        assert!(cut.len() <= MAX_ERROR_LEN && cut.len() >= MAX_ERROR_LEN - 1);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(truncate_error("short"), "short");
    }

    #[test]
    fn a_task_without_a_kind_or_attempts_is_invalid() {
        assert!(NewTask::new("", serde_json::Value::Null).validate().is_err());
        let t = NewTask { max_attempts: 0, ..NewTask::new("k", serde_json::Value::Null) };
        assert!(matches!(t.validate(), Err(Error::InvalidInput(m)) if m.contains("max_attempts")));
    }
}
