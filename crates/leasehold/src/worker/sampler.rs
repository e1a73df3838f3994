//! Samples queue depth per queue and state into the `leasehold_queue_depth` gauge.
//!
//! A sample counts the live tasks, so its cost grows with the backlog: with 10,000,000 tasks waiting,
//! PostgreSQL reads the whole table (a parallel scan on every core) for about two seconds, and every
//! worker samples. The next sample therefore waits at least [`STRETCH`] times as long as the last one
//! took: whatever the backlog, a worker's samples run at most about a thirtieth of the time.

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use leasehold_core::{TaskState, TaskStore};

use crate::telemetry::record;

/// The wait after a sample is at least this many times the sample's own duration.
const STRETCH: u32 = 30;

pub(crate) async fn run<S: TaskStore>(store: S, every: Duration, stop: CancellationToken) {
    // series seen before: a queue that emptied reads 0, not its last count
    let mut seen: HashSet<(String, TaskState)> = HashSet::new();
    loop {
        let started = Instant::now();
        let sampled = tokio::select! {
            _ = stop.cancelled() => return,
            d = store.task_depth() => d,
        };
        let took = started.elapsed();
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
        let wait = next_wait(every, took);
        if wait > every {
            tracing::debug!(?took, ?wait, "sampling queue depth took long; the next sample waits longer");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// The wait before the next sample, after one that took `took`: the interval, or [`STRETCH`] times
/// the sample's duration when that is longer.
fn next_wait(every: Duration, took: Duration) -> Duration {
    every.max(took.saturating_mul(STRETCH))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{STRETCH, next_wait};

    #[test]
    fn a_quick_sample_waits_the_interval_and_a_slow_one_stretches_it() {
        let every = Duration::from_secs(15);
        assert_eq!(next_wait(every, Duration::from_millis(20)), every);
        assert_eq!(next_wait(every, Duration::from_millis(500)), every, "15 s is exactly 30 x 500 ms");
        assert_eq!(next_wait(every, Duration::from_secs(2)), Duration::from_secs(60));
        for took in [Duration::ZERO, Duration::from_millis(1), Duration::from_secs(1), Duration::from_secs(3600)] {
            let wait = next_wait(every, took);
            assert!(wait >= every && wait >= took * STRETCH, "{took:?} -> {wait:?}");
        }
        assert_eq!(next_wait(every, Duration::MAX), Duration::MAX, "saturates");
    }
}
