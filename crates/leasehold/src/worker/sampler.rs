//! Samples queue depth per queue and state into the `leasehold_queue_depth` gauge.
//!
//! A sample counts the live tasks, so its cost grows with the backlog: with 10,000,000 tasks waiting,
//! PostgreSQL answers it with a parallel sequential scan of the whole table (1.8 s in a benchmark run),
//! and every worker samples. So after a sample that succeeded, the next one waits at least [`STRETCH`]
//! times as long as it took, up to [`MAX_STRETCHED`] intervals: a worker then spends at most about a
//! thirtieth of its time sampling (while a sample takes under 10 s at the default 15 s interval), where
//! it could have spent most of it. A failed sample is not stretched after: its time may be the wait
//! for a connection, not the count's.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use leasehold_core::{QueueDepth, Result, TaskState, TaskStore};

use crate::telemetry::record;

/// After a sample, the next one waits at least this many times the sample's own duration.
const STRETCH: u32 = 30;
/// ...but no longer than this many intervals.
const MAX_STRETCHED: u32 = 20;

pub(crate) async fn run<S: TaskStore>(store: S, every: Duration, stop: CancellationToken) {
    let backend = store.backend_name();
    // series seen before: a queue that emptied reads 0, not its last count
    let mut seen: HashSet<(String, TaskState)> = HashSet::new();
    let publish = |depths: Vec<QueueDepth>| {
        let now: HashSet<(String, TaskState)> = depths.iter().map(|d| (d.queue.clone(), d.state)).collect();
        for d in &depths {
            record::queue_depth(backend, &d.queue, d.state.as_str(), d.count);
        }
        for (queue, state) in seen.difference(&now) {
            record::queue_depth(backend, queue, state.as_str(), 0);
        }
        seen.extend(now);
    };
    sample_until_stopped(every, &stop, || store.task_depth(), publish).await;
}

/// Samples with `sample` and hands each answer to `publish`, spacing the samples as the module says,
/// until `stop`.
async fn sample_until_stopped<F, Fut>(
    every: Duration,
    stop: &CancellationToken,
    mut sample: F,
    mut publish: impl FnMut(Vec<QueueDepth>),
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Vec<QueueDepth>>>,
{
    loop {
        let started = Instant::now();
        let sampled = tokio::select! {
            _ = stop.cancelled() => return,
            d = sample() => d,
        };
        let took = started.elapsed();
        let wait = match sampled {
            Ok(depths) => {
                publish(depths);
                next_wait(every, took)
            }
            Err(e) => {
                tracing::debug!(error = %e, "sampling queue depth failed");
                every
            }
        };
        if wait > every {
            tracing::debug!(?wait, "sampling queue depth took long; the next sample waits longer");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// The wait before the next sample, after one that succeeded in `took`: the interval, or [`STRETCH`]
/// times the sample's duration when that is longer, up to [`MAX_STRETCHED`] intervals.
fn next_wait(every: Duration, took: Duration) -> Duration {
    every.max(took.saturating_mul(STRETCH)).min(every.saturating_mul(MAX_STRETCHED))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;

    use leasehold_core::{Error, QueueDepth};

    use super::{next_wait, sample_until_stopped};

    const EVERY: Duration = Duration::from_secs(15);

    #[test]
    fn a_quick_sample_waits_the_interval_and_a_slow_one_stretches_it_up_to_a_bound() {
        assert_eq!(next_wait(EVERY, Duration::from_millis(20)), EVERY);
        assert_eq!(next_wait(EVERY, Duration::from_secs(2)), Duration::from_secs(60));
        assert_eq!(next_wait(EVERY, Duration::from_secs(60)), EVERY * 20);
        assert_eq!(next_wait(EVERY, Duration::MAX), EVERY * 20);
    }

    /// How many samples start in `window` of paused time when each takes `takes` and answers `ok`.
    async fn samples_in(window: Duration, takes: Duration, ok: bool) -> u32 {
        let started = Arc::new(AtomicU32::new(0));
        let published = Arc::new(AtomicU32::new(0));
        let stop = CancellationToken::new();
        let sample = || {
            let started = started.clone();
            async move {
                started.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(takes).await;
                if ok { Ok(Vec::<QueueDepth>::new()) } else { Err(Error::Connect("refused".into())) }
            }
        };
        let counted = published.clone();
        let publish = move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
        };
        let sampler = sample_until_stopped(EVERY, &stop, sample, publish);
        let stopper = async {
            tokio::time::sleep(window).await;
            stop.cancel();
        };
        tokio::join!(sampler, stopper);
        let n = started.load(Ordering::SeqCst);
        assert_eq!(published.load(Ordering::SeqCst), if ok { n } else { 0 }, "published");
        n
    }

    #[tokio::test(start_paused = true)]
    async fn slow_samples_are_spaced_out_and_failed_ones_are_not() {
        let window = Duration::from_secs(300) - Duration::from_millis(1);
        // at 0, 15.01, 30.02, ...: 20 samples begin within 300 s
        assert_eq!(samples_in(window, Duration::from_millis(10), true).await, 20);
        // each takes 2 s and is followed by 60 s: at 0, 62, 124, 186, 248
        assert_eq!(samples_in(window, Duration::from_secs(2), true).await, 5);
        // a failure taking 2 s is followed by the interval: at 0, 17, 34, ... 289
        assert_eq!(samples_in(window, Duration::from_secs(2), false).await, 18);
    }
}
