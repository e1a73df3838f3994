//! leasehold's own figures, through its public API: `Client::enqueue` and `enqueue_many`, a `Worker`
//! running no-op jobs, and the store's leader lease. Generic over the store, so PostgreSQL and SQLite
//! are measured by the same code.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use leasehold::core::schedule::{LeaderAcquireParams, LeaderToken};
use leasehold::{Client, EnqueueOptions, ScheduleStore, TaskStore, Worker, WorkerBuilder};

use crate::jobs::{Noop, Probe};
use crate::timing::{IDLE, Percentiles, SteadyClock, ms, rate, timed, wait_for};
use crate::{
    BoxError, CHUNK, LATENCY_GAP, LATENCY_WARMUP, LEASE_KEYS, Res, SAMPLE_TIMEOUT, STEADY_MAX_BACKLOG, TIMEOUT,
    WORKER_CONCURRENCY,
};

/// How long a freshly started worker gets to subscribe to wake-ups before latency samples begin.
const SETTLE: Duration = Duration::from_millis(300);
/// The lease taken in lease pairs.
const LEASE_TTL: Duration = Duration::from_secs(30);
/// The holder named in lease pairs.
const HOLDER: &str = "w";

/// What a drain's worker does with the tasks it completes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Finished {
    /// Keeps them, completed (leasehold's default).
    Kept,
    /// Deletes them in the completion's statement (`WorkerBuilder::delete_completed`).
    Deleted,
}

/// A worker for no-op tasks with the benchmark's concurrency and leasehold's defaults otherwise.
fn noop_worker<S: TaskStore>(store: &S) -> WorkerBuilder<S, ()> {
    Worker::builder(store.clone()).register::<Noop>().concurrency(WORKER_CONCURRENCY)
}

/// `Client::enqueue` of a no-op job by `clients` clients for `run_for`; tasks/s.
pub(crate) async fn single_enqueue<S: TaskStore>(store: &S, clients: usize, run_for: Duration) -> Res<f64> {
    timed(clients, run_for, |gate| {
        let client = Client::new(store.clone());
        async move {
            let deadline = gate.start().await;
            let mut tasks = 0u64;
            while Instant::now() < deadline {
                client.enqueue(Noop).await?;
                tasks += 1;
            }
            Ok::<_, BoxError>(tasks)
        }
    })
    .await
}

/// `total` no-op tasks by `Client::enqueue_many` in chunks of 1,000, one client; tasks/s.
pub(crate) async fn batch_enqueue<S: TaskStore>(store: &S, total: u64) -> Res<f64> {
    let client = Client::new(store.clone());
    let started = Instant::now();
    let mut added = 0;
    while added < total {
        let n = CHUNK.min(total - added);
        client.enqueue_many((0..n).map(|_| Noop), EnqueueOptions::default()).await?;
        added += n;
    }
    Ok(rate(total, started.elapsed()))
}

/// Starts a no-op worker on a queue holding `total` tasks and times it until all are completed
/// (the start included); jobs/s.
pub(crate) async fn drain<S: TaskStore>(store: &S, total: u64, finished: Finished) -> Res<f64> {
    let (done, elapsed) = drain_for(store, total, TIMEOUT, finished).await?;
    if done < total {
        return Err(format!("the worker completed {done} of {total} tasks in {elapsed:.0?}").into());
    }
    Ok(rate(done, elapsed))
}

/// Runs a no-op worker until it completed `total` tasks or `limit` passed; answers the tasks completed
/// and the time it took.
pub(crate) async fn drain_for<S: TaskStore>(
    store: &S,
    total: u64,
    limit: Duration,
    finished: Finished,
) -> Res<(u64, Duration)> {
    let worker = noop_worker(store).delete_completed(finished == Finished::Deleted).build()?;
    let started = Instant::now();
    worker.start().await;
    while worker.stats().completed < total && started.elapsed() < limit {
        tokio::time::sleep(IDLE).await;
    }
    let (done, elapsed) = (worker.stats().completed, started.elapsed());
    worker.stop().await;
    Ok((done, elapsed))
}

/// A no-op worker drains while one producer enqueues chunks of 1,000 (`enqueue_many`) whenever fewer
/// than [`STEADY_MAX_BACKLOG`] wait; completed tasks/s over `measure`, after `warmup`.
pub(crate) async fn steady<S: TaskStore>(store: &S, warmup: Duration, measure: Duration) -> Res<f64> {
    steady_with(store, noop_worker(store).build()?, warmup, measure).await
}

/// [`steady`] with a worker that keeps finished tasks for `retention` only (`None`: forever).
pub(crate) async fn steady_keeping<S: TaskStore>(
    store: &S,
    retention: Option<Duration>,
    warmup: Duration,
    measure: Duration,
) -> Res<f64> {
    steady_with(store, noop_worker(store).retention(retention).build()?, warmup, measure).await
}

async fn steady_with<S: TaskStore>(store: &S, worker: Worker<S>, warmup: Duration, measure: Duration) -> Res<f64> {
    let client = Client::new(store.clone());
    worker.start().await;
    let mut clock = SteadyClock::new(warmup, measure);
    let mut added = 0u64;
    while clock.running(worker.stats().completed) {
        if added.saturating_sub(worker.stats().completed) < STEADY_MAX_BACKLOG {
            client.enqueue_many((0..CHUNK).map(|_| Noop), EnqueueOptions::default()).await?;
            added += CHUNK;
        } else {
            tokio::time::sleep(IDLE).await;
        }
    }
    let per_s = clock.rate(worker.stats().completed);
    worker.stop().await;
    Ok(per_s)
}

/// Enqueue-to-start latency on an idle worker (leasehold's default concurrency): one probe task at a
/// time, from before `Client::enqueue` was called to the moment the job started, in ms. Each sample
/// waits for the previous task's completion, so the worker is idle when the next one is enqueued.
pub(crate) async fn idle_latency<S: TaskStore>(store: &S, samples: usize) -> Res<Percentiles> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let worker = Worker::builder_with_state(store.clone(), tx).register::<Probe>().build()?;
    worker.start().await;
    tokio::time::sleep(SETTLE).await;
    let client = Client::new(store.clone());
    let mut out = Vec::with_capacity(samples);
    for i in 0..LATENCY_WARMUP + samples {
        let sent = Instant::now();
        client.enqueue(Probe).await?;
        let started = tokio::time::timeout(SAMPLE_TIMEOUT, rx.recv()).await?.ok_or("the probe worker stopped")?;
        if i >= LATENCY_WARMUP {
            out.push(ms(started.saturating_duration_since(sent)));
        }
        let completed = i as u64 + 1;
        wait_for("a probe's completion", SAMPLE_TIMEOUT, || worker.stats().completed >= completed).await?;
        tokio::time::sleep(LATENCY_GAP).await;
    }
    worker.stop().await;
    let stats = worker.stats();
    eprintln!("  idle latency: {} of {} tasks handed over by their enqueue", stats.handed_over, stats.claimed);
    Ok(Percentiles::of(out))
}

/// `leader_acquire` + `leader_release` on random lease names by `clients` clients; pairs/s.
pub(crate) async fn lease_pairs<S: ScheduleStore>(store: &S, clients: usize, run_for: Duration) -> Res<f64> {
    timed(clients, run_for, |gate| {
        let store = store.clone();
        async move {
            let deadline = gate.start().await;
            let mut pairs = 0u64;
            while Instant::now() < deadline {
                let name = format!("k{}", rand::random_range(1..=LEASE_KEYS));
                let params = LeaderAcquireParams { name: name.clone(), holder: HOLDER.to_owned(), ttl: LEASE_TTL };
                if let Some(token) = store.leader_acquire(params).await? {
                    store.leader_release(LeaderToken { name, holder: HOLDER.to_owned(), token }).await?;
                }
                pairs += 1;
            }
            Ok::<_, BoxError>(pairs)
        }
    })
    .await
}
