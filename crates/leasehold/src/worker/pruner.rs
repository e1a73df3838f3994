//! Retention: deletes tasks some time after they finished, in batches, so the task table holds the live
//! queue and recent history rather than everything that ever ran.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use leasehold_core::{TaskPruneParams, TaskStore};

use crate::telemetry::record;

/// Tasks deleted per statement: small enough to keep each transaction short.
pub(crate) const BATCH: u32 = 1_000;
/// The most batches in one round; a larger history is worked off over several rounds.
const MAX_BATCHES: usize = 100;
/// A pause between two full batches, so claims and completions get the store (on SQLite, its one
/// write lock) in between.
const BETWEEN_BATCHES: Duration = Duration::from_millis(20);

/// How often a pruner looks: a quarter of the retention, between 1 s and 1 min.
pub(crate) fn interval(retention: Duration) -> Duration {
    (retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

pub(crate) async fn run<S: TaskStore>(store: S, retention: Duration, stop: CancellationToken) {
    let every = interval(retention);
    loop {
        // batch after batch while full ones come back (a bounded number), then rest
        for _ in 0..MAX_BATCHES {
            let pruned = tokio::select! {
                _ = stop.cancelled() => return,
                r = store.task_prune(TaskPruneParams { older_than: retention, limit: BATCH }) => r,
            };
            match pruned {
                Ok(n) => {
                    record::pruned(store.backend_name(), n);
                    if n < u64::from(BATCH) {
                        break;
                    }
                    tokio::time::sleep(BETWEEN_BATCHES).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "pruning finished tasks failed");
                    break;
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
