//! What the conformance suite needs from a backend besides the store itself.

use std::future::Future;

use leasehold_core::{NewTask, Result, TaskId, TaskLease, TaskStore};

/// A store under test, with the few hooks that move time on the store's own clock and that open a
/// transaction. Every method works on a database private to the test.
pub trait Backend: Send + Sync + 'static {
    /// The store.
    type Store: TaskStore;

    /// A handle on the store.
    fn store(&self) -> Self::Store;

    /// Ends the task's current lease on the store's clock, as the passage of its ttl would.
    fn expire_lease(&self, id: TaskId) -> impl Future<Output = ()> + Send;

    /// Makes a task that waits for its `run_at` due now.
    fn make_due(&self, id: TaskId) -> impl Future<Output = ()> + Send;

    /// Inserts `task` inside a transaction that is committed or rolled back.
    fn insert_in_tx(&self, task: NewTask, commit: bool) -> impl Future<Output = Result<TaskId>> + Send;

    /// In one transaction: records an effect row for the task, then completes it fenced by `lease`;
    /// commits only if the completion was accepted.
    fn complete_with_effect(&self, lease: TaskLease) -> impl Future<Output = Result<()>> + Send;

    /// How many effect rows the task has.
    fn effect_count(&self, id: TaskId) -> impl Future<Output = i64> + Send;
}
