//! What the conformance suite needs from a backend besides the store itself.

use std::future::Future;

use leasehold_core::{NewTask, Result, ScheduleStore, TaskId, TaskLease};

/// A store under test, with the few hooks that move time on the store's own clock and that open a
/// transaction. Every method works on a database private to the test.
pub trait Backend: Send + Sync + 'static {
    /// The store.
    type Store: ScheduleStore;

    /// A handle on the store.
    fn store(&self) -> Self::Store;

    /// Ends the task's current lease on the store's clock, as the passage of its ttl would.
    fn expire_lease(&self, id: TaskId) -> impl Future<Output = ()> + Send;

    /// Writes the JSON text `payload` over the task's payload as it stands, as code other than leasehold's
    /// may (`{"n": 1e400}`, which serde_json cannot read).
    fn write_payload(&self, id: TaskId, payload: &str) -> impl Future<Output = ()> + Send;

    /// Makes a task that waits for its `run_at` due now.
    fn make_due(&self, id: TaskId) -> impl Future<Output = ()> + Send;

    /// Inserts `task` inside a transaction that is committed or rolled back.
    fn insert_in_tx(&self, task: NewTask, commit: bool) -> impl Future<Output = Result<TaskId>> + Send;

    /// In one transaction: records an effect row for the task, then completes it fenced by `lease`;
    /// commits only if the completion was accepted.
    fn complete_with_effect(&self, lease: TaskLease) -> impl Future<Output = Result<()>> + Send;

    /// [`Backend::complete_with_effect`] as a `'static` closure, for jobs.
    fn transactional_completer(&self) -> crate::jobs::TxCompleter;

    /// How many effect rows the task has.
    fn effect_count(&self, id: TaskId) -> impl Future<Output = i64> + Send;

    /// Ends the leader lease `name` on the store's clock, as the passage of its ttl would.
    fn expire_leader(&self, name: &str) -> impl Future<Output = ()> + Send;

    /// Moves the task's `finalized_at` an hour into the past on the store's clock.
    fn finish_long_ago(&self, id: TaskId) -> impl Future<Output = ()> + Send;

    /// In one transaction: claims the effect `key`; if fresh, writes an effect row for the lease's task
    /// and records `outcome`, then commits (or rolls back when `commit` is false). Answers whether the
    /// effect was fresh, and the outcome it ended with (the recorded one when not fresh).
    fn effect_once(
        &self,
        lease: TaskLease,
        key: &str,
        outcome: serde_json::Value,
        commit: bool,
    ) -> impl Future<Output = Result<(bool, serde_json::Value)>> + Send;

    /// Writes `body` to the application row `resource` guarded by the lease's token
    /// (`... WHERE coalesce(last_fence, 0) <= token`), through [`leasehold::guard::expect_fenced`].
    fn fenced_write(&self, lease: TaskLease, resource: &str, body: &str) -> impl Future<Output = Result<()>> + Send;

    /// The body of the application row `resource`.
    fn fenced_read(&self, resource: &str) -> impl Future<Output = Option<String>> + Send;
}
