//! Samples queue depth per queue and state into the `leasehold_queue_depth` gauge.

use std::collections::HashSet;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use leasehold_core::{TaskState, TaskStore};

use crate::telemetry::record;

pub(crate) async fn run<S: TaskStore>(store: S, every: Duration, stop: CancellationToken) {
    // series seen before: a queue that emptied reads 0, not its last count
    let mut seen: HashSet<(String, TaskState)> = HashSet::new();
    loop {
        let sampled = tokio::select! {
            _ = stop.cancelled() => return,
            d = store.task_depth() => d,
        };
        match sampled {
            Ok(depths) => {
                let now: HashSet<(String, TaskState)> = depths.iter().map(|d| (d.queue.clone(), d.state)).collect();
                for d in &depths {
                    record::queue_depth(store.backend_name(), &d.queue, d.state.as_str(), d.count);
                }
                for (queue, state) in seen.difference(&now) {
                    record::queue_depth(store.backend_name(), queue, state.as_str(), 0);
                }
                seen.extend(now);
            }
            Err(e) => tracing::debug!(error = %e, "sampling queue depth failed"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
