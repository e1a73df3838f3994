//! Timing: client loops that start together and run for a set time, the clock of steady phases,
//! rates, percentiles and medians. Every duration is measured with `std::time::Instant`.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Barrier;

use crate::Res;

/// How long a loop that found nothing to do waits before it looks again.
pub(crate) const IDLE: Duration = Duration::from_millis(1);

/// Lines up the clients of a timed phase: each gets ready (opens its connection), then all start at once.
#[derive(Clone)]
pub(crate) struct Gate {
    barrier: Arc<Barrier>,
    run_for: Duration,
}

impl Gate {
    /// Waits until every client is ready; answers the time this client stops.
    pub(crate) async fn start(&self) -> Instant {
        self.barrier.wait().await;
        Instant::now() + self.run_for
    }
}

/// Runs `clients` copies of `client` together for `run_for` (or until each stops on its own) and
/// answers the units they counted per second, from the common start to the last one's end.
///
/// Each client must call [`Gate::start`] exactly once, also when its set-up failed (then it returns
/// the error after the gate), or the others wait for it forever.
pub(crate) async fn timed<F, Fut>(clients: usize, run_for: Duration, client: F) -> Res<f64>
where
    F: Fn(Gate) -> Fut,
    Fut: Future<Output = Res<u64>> + Send + 'static,
{
    let gate = Gate { barrier: Arc::new(Barrier::new(clients + 1)), run_for };
    let handles: Vec<_> = (0..clients).map(|_| tokio::spawn(client(gate.clone()))).collect();
    gate.barrier.wait().await;
    let started = Instant::now();
    let mut total = 0;
    for h in handles {
        total += h.await??;
    }
    Ok(rate(total, started.elapsed()))
}

/// The clock of a steady phase: the first `warmup` is not counted, then completions are counted for
/// `measure`.
pub(crate) struct SteadyClock {
    count_from: Instant,
    end: Instant,
    mark: Option<(Instant, u64)>,
}

impl SteadyClock {
    /// A phase that starts now.
    pub(crate) fn new(warmup: Duration, measure: Duration) -> Self {
        let now = Instant::now();
        Self { count_from: now + warmup, end: now + warmup + measure, mark: None }
    }

    /// Called by the producer's loop with the completions so far; answers whether the phase goes on.
    pub(crate) fn running(&mut self, done: u64) -> bool {
        let now = Instant::now();
        if self.mark.is_none() && now >= self.count_from {
            self.mark = Some((now, done));
        }
        now < self.end
    }

    /// Completions per second since the warm-up ended.
    pub(crate) fn rate(&self, done: u64) -> f64 {
        match self.mark {
            Some((at, before)) => rate(done.saturating_sub(before), at.elapsed()),
            None => f64::NAN,
        }
    }
}

/// Waits until `cond` holds, looking every millisecond; fails after `limit`.
pub(crate) async fn wait_for(what: &str, limit: Duration, cond: impl Fn() -> bool) -> Res<()> {
    let started = Instant::now();
    while !cond() {
        if started.elapsed() > limit {
            return Err(format!("timed out after {limit:?} waiting for {what}").into());
        }
        tokio::time::sleep(IDLE).await;
    }
    Ok(())
}

/// Units per second.
pub(crate) fn rate(units: u64, elapsed: Duration) -> f64 {
    units as f64 / elapsed.as_secs_f64()
}

/// A duration in milliseconds.
pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The median, and the two tail percentiles, of latency samples in milliseconds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Percentiles {
    /// Median.
    pub(crate) p50: f64,
    /// 95th percentile.
    pub(crate) p95: f64,
    /// 99th percentile.
    pub(crate) p99: f64,
}

impl Percentiles {
    /// The percentiles of `samples` (nearest rank).
    pub(crate) fn of(samples: Vec<f64>) -> Self {
        let s = sorted(samples);
        Self { p50: percentile(&s, 50.0), p95: percentile(&s, 95.0), p99: percentile(&s, 99.0) }
    }
}

/// The nearest-rank percentile `p` (0 to 100) of sorted samples; NaN when there are none.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median; NaN when there are no values.
pub(crate) fn median(values: &[f64]) -> f64 {
    let s = sorted(values.to_vec());
    let n = s.len();
    if n == 0 {
        return f64::NAN;
    }
    if n.is_multiple_of(2) { (s[n / 2 - 1] + s[n / 2]) / 2.0 } else { s[n / 2] }
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}
