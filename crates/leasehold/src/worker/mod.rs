//! The worker runtime: claims tasks, runs their jobs under leases, and writes outcomes.
//!
//! One worker owns six kinds of background work, started together by [`Worker::start`] and stopped
//! together by [`Worker::stop`]: the claim loop (`producer.rs`), one executor per running task
//! (`executor.rs`), the heartbeat (`heartbeat.rs`), the batched completer (`completer.rs`),
//! the queue-depth sampler (`sampler.rs`) and the pruner of finished tasks (`pruner.rs`).
//! Nothing is spawned that [`Worker::stop`] does not wait for.
//!
//! Stopping is graceful: claiming stops, running jobs get [`WorkerConfig::shutdown_timeout`] to
//! finish, then they are cancelled, get [`WorkerConfig::cancel_grace`] to return, and their tasks are
//! released at once (fenced, the attempt not counted) rather than after their lease expires.

mod completer;
mod executor;
mod health;
mod heartbeat;
pub(crate) mod lease;
mod producer;
mod pruner;
mod registry;
mod sampler;
mod stats;
mod tries;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use leasehold_core::{Error, MIN_LEASE_TTL, Result, RetryPolicy, TaskStore};

use crate::config::WorkerConfig;
use crate::job::Job;
use crate::telemetry::record::{KindMetrics, WorkerMetrics};
pub use health::WorkerHealth;
use lease::{ActiveSet, CancelReason};
use registry::Registry;
use stats::Stats;
pub use stats::WorkerStats;

/// The most due times a worker remembers; beyond, polling finds the tasks.
const MAX_DUE_SOON: usize = 4_096;

/// What the background work of a running worker shares.
pub(crate) struct Shared<S, St> {
    store: S,
    config: WorkerConfig,
    worker_id: String,
    registry: Arc<Registry<St>>,
    state: Arc<St>,
    stats: Arc<Stats>,
    active: ActiveSet,
    capacity: Arc<Semaphore>,
    /// Outcomes being written for handlers that returned: at most `concurrency` at once.
    settling: Arc<Semaphore>,
    capacity_freed: Notify,
    /// When tasks this worker put back (retry, snooze) become due, for those due before the next poll.
    due_soon: std::sync::Mutex<BinaryHeap<Reverse<tokio::time::Instant>>>,
    rescheduled: Notify,
    completer: mpsc::Sender<completer::CompleteRequest<executor::Completing<S, St>>>,
    metrics: Arc<WorkerMetrics>,
    health: Arc<health::HealthState>,
}

impl<S, St: Send + Sync + 'static> Shared<S, St> {
    /// The metric handles of a claimed task's queue and kind; a kind this worker has no handler for is
    /// labelled `unknown`, so the label set stays bounded whatever the store holds.
    pub(crate) fn kind_metrics(&self, task: &leasehold_core::ClaimedTask) -> Arc<KindMetrics> {
        self.kind_metrics_of(&task.queue, &task.kind)
    }

    /// The metric handles of a task of `kind` in `queue`; a kind no job is registered for is `unknown`.
    pub(crate) fn kind_metrics_of(&self, queue: &str, kind: &str) -> Arc<KindMetrics> {
        let kind = if self.registry.get(kind).is_some() { kind } else { "unknown" };
        self.metrics.kind(queue, kind)
    }
}

impl<S, St> Shared<S, St> {
    /// A task this worker put back becomes due after `delay`: claim again then, not at the next poll.
    pub(crate) fn due_in(&self, delay: Duration) {
        if delay >= self.config.poll_interval {
            return;
        }
        let mut due = self.due_soon.lock().unwrap();
        if due.len() < MAX_DUE_SOON {
            due.push(Reverse(tokio::time::Instant::now() + delay));
            self.rescheduled.notify_one();
        }
    }

    /// When the claim loop should claim next if nothing wakes it: the poll, or a task due sooner.
    pub(crate) fn next_claim_at(&self) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        let mut due = self.due_soon.lock().unwrap();
        let mut passed = false;
        while due.peek().is_some_and(|Reverse(at)| *at <= now) {
            due.pop();
            passed = true;
        }
        if passed {
            return now;
        }
        let poll = now + self.config.poll_interval;
        due.peek().map_or(poll, |Reverse(at)| (*at).min(poll))
    }
}

/// The background work of a started worker. It stays in the worker until a stop has finished, so a
/// stop that is itself cancelled half-way can be called again; dropping it is an abrupt stop.
/// How long a stopping worker's single writes may take each (the withdrawal of its wait, a give-back of
/// tasks it will not run, a claim in flight, a cancelled job's release): a stalled server must not hold
/// the stop (what they leave behind runs out by itself).
pub(crate) const STOP_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

struct Running<S, St> {
    shared: Arc<Shared<S, St>>,
    stop_claiming: CancellationToken,
    /// Stops the completer, which ends once it has written what is queued, before the other services.
    stop_completer: CancellationToken,
    stop_services: CancellationToken,
    executors: TaskTracker,
    producer: Option<JoinHandle<()>>,
    heartbeat: Option<JoinHandle<()>>,
    completer: Option<JoinHandle<()>>,
    sampler: Option<JoinHandle<()>>,
    pruner: Option<JoinHandle<()>>,
}

impl<S, St> Running<S, St> {
    /// Cancels the jobs still running that have not returned yet.
    fn cancel_jobs(&self) -> usize {
        let left: Vec<_> = self.shared.active.snapshot().into_iter().filter(|e| !e.is_finishing()).collect();
        for e in &left {
            e.lose(CancelReason::Shutdown);
        }
        left.len()
    }
}

impl<S, St> Drop for Running<S, St> {
    /// An abrupt stop (the worker dropped, or a stop future dropped before it finished): claiming ends,
    /// running jobs are cancelled and release their tasks, and the rest winds down on its own.
    fn drop(&mut self) {
        self.shared.health.set_running(false);
        self.stop_claiming.cancel();
        self.cancel_jobs();
        self.executors.close();
        self.stop_completer.cancel();
        self.stop_services.cancel();
    }
}

/// A worker: runs registered jobs from its queues. Build it with [`Worker::builder`]; stop it with
/// [`Worker::stop`]. Dropping a started worker without stopping it is an abrupt stop: claiming ends,
/// running jobs are cancelled and their tasks released, without waiting.
pub struct Worker<S, St = ()> {
    store: S,
    config: WorkerConfig,
    worker_id: String,
    registry: Arc<Registry<St>>,
    state: Arc<St>,
    stats: Arc<Stats>,
    health: Arc<health::HealthState>,
    running: tokio::sync::Mutex<Option<Running<S, St>>>,
}

impl<S: TaskStore> Worker<S, ()> {
    /// A builder for a worker whose jobs need no shared state.
    pub fn builder(store: S) -> WorkerBuilder<S, ()> {
        Self::builder_with_state(store, ())
    }
}

impl<S: TaskStore, St: Send + Sync + 'static> Worker<S, St> {
    /// A builder for a worker whose jobs reach `state` through [`crate::JobContext::state`].
    pub fn builder_with_state(store: S, state: St) -> WorkerBuilder<S, St> {
        WorkerBuilder {
            store,
            config: WorkerConfig::default(),
            state: Arc::new(state),
            registry: Registry::new(),
            problems: Vec::new(),
        }
    }

    /// This worker's id, recorded on the tasks it claims.
    pub fn id(&self) -> &str {
        &self.worker_id
    }

    /// The state its jobs share.
    pub fn state(&self) -> &St {
        &self.state
    }

    /// Its configuration.
    pub fn config(&self) -> &WorkerConfig {
        &self.config
    }

    /// Counters since the worker was built.
    pub fn stats(&self) -> WorkerStats {
        self.stats.snapshot()
    }

    /// A handle for readiness probes: running, and reaching the store.
    pub fn health(&self) -> WorkerHealth {
        WorkerHealth(self.health.clone())
    }

    /// Tasks running now.
    pub async fn running_tasks(&self) -> usize {
        self.running.lock().await.as_ref().map_or(0, |r| r.shared.active.len())
    }

    /// Starts claiming and running tasks. Calling it on a started worker does nothing.
    pub async fn start(&self) {
        let mut running = self.running.lock().await;
        if running.is_some() {
            return;
        }
        let (tx, rx) = mpsc::channel(completer::MAX_BATCH);
        let metrics = Arc::new(WorkerMetrics::new(self.store.backend_name()));
        let shared = Arc::new(Shared {
            store: self.store.clone(),
            config: self.config.clone(),
            worker_id: self.worker_id.clone(),
            registry: self.registry.clone(),
            state: self.state.clone(),
            stats: self.stats.clone(),
            active: ActiveSet::default(),
            capacity: Arc::new(Semaphore::new(self.config.concurrency as usize)),
            settling: Arc::new(Semaphore::new(self.config.concurrency as usize)),
            capacity_freed: Notify::new(),
            due_soon: std::sync::Mutex::new(BinaryHeap::new()),
            rescheduled: Notify::new(),
            completer: tx,
            metrics: metrics.clone(),
            health: self.health.clone(),
        });
        self.health.set_running(true);
        let (stop_claiming, stop_completer, stop_services) =
            (CancellationToken::new(), CancellationToken::new(), CancellationToken::new());
        let executors = TaskTracker::new();
        let producer = tokio::spawn(producer::run(shared.clone(), executors.clone(), stop_claiming.clone()));
        let heartbeat = tokio::spawn(heartbeat::run(shared.clone(), stop_services.clone()));
        let completer = tokio::spawn(completer::run(
            self.store.clone(),
            rx,
            self.config.delete_completed,
            metrics,
            stop_completer.clone(),
        ));
        let sampler = self
            .config
            .depth_sample_interval
            .map(|every| tokio::spawn(sampler::run(self.store.clone(), every, stop_services.clone())));
        let pruner = self
            .config
            .retention
            .map(|keep| tokio::spawn(pruner::run(self.store.clone(), keep, stop_services.clone())));
        tracing::info!(worker_id = %self.worker_id, queues = ?self.config.queues, "worker started");
        *running = Some(Running {
            shared,
            stop_claiming,
            stop_completer,
            stop_services,
            executors,
            producer: Some(producer),
            heartbeat: Some(heartbeat),
            completer: Some(completer),
            sampler,
            pruner,
        });
    }

    /// Stops gracefully, letting running jobs finish for [`WorkerConfig::shutdown_timeout`] (see
    /// [`Worker::stop_within`]). Safe to call before `start` and more than once.
    pub async fn stop(&self) {
        self.stop_within(self.config.shutdown_timeout).await;
    }

    /// Stops gracefully, letting running jobs finish for at most `timeout`.
    ///
    /// Claiming stops first: a claim in flight gets a moment to answer, and what it claimed is handed
    /// back. Jobs still running after `timeout` are cancelled, and get the cancel grace to return and a
    /// moment more to hand their tasks back; a job that outlasts that is left to finish in the background
    /// (its lease, no longer renewed, ends on its own; its outcome is written, or fails, after this
    /// returns, and [`Worker::stats`] may still change). Completions are written before the heartbeat
    /// stops, so their leases stay renewed meanwhile. A store that does not answer holds the stop for the
    /// claim loop's own writes (2 s each), `timeout`, the grace and 2 s, and the time queued completions
    /// are still tried: the trust left on their leases, `L - M` at most.
    pub async fn stop_within(&self, timeout: Duration) {
        let mut guard = self.running.lock().await;
        let Some(r) = guard.as_mut() else {
            return;
        };
        self.health.set_running(false);
        r.stop_claiming.cancel();
        if let Some(producer) = r.producer.take() {
            let _ = producer.await;
        }
        r.executors.close();
        if tokio::time::timeout(timeout, r.executors.wait()).await.is_err() {
            let cancelled = r.cancel_jobs();
            tracing::info!(jobs = cancelled, "shutdown deadline passed: cancelling running jobs");
            let returned = self.config.cancel_grace + STOP_WRITE_TIMEOUT;
            if tokio::time::timeout(returned, r.executors.wait()).await.is_err() {
                tracing::warn!(
                    jobs = r.shared.active.len(),
                    "cancelled jobs did not return within the cancel grace; left to finish in the background"
                );
            }
        }
        r.stop_completer.cancel();
        if let Some(completer) = r.completer.take() {
            let _ = completer.await;
        }
        r.stop_services.cancel();
        for service in [r.heartbeat.take(), r.sampler.take(), r.pruner.take()].into_iter().flatten() {
            let _ = service.await;
        }
        *guard = None;
        tracing::info!(worker_id = %self.worker_id, "worker stopped");
    }

    /// Starts, runs until `signal` resolves (a Ctrl-C, a shutdown channel), then stops gracefully.
    pub async fn run_until(&self, signal: impl Future<Output = ()>) {
        self.start().await;
        signal.await;
        self.stop().await;
    }
}

/// Builds a [`Worker`]; [`WorkerBuilder::build`] validates everything.
pub struct WorkerBuilder<S, St> {
    store: S,
    config: WorkerConfig,
    state: Arc<St>,
    registry: Registry<St>,
    problems: Vec<String>,
}

impl<S: TaskStore, St: Send + Sync + 'static> WorkerBuilder<S, St> {
    /// Runs jobs of kind `J`.
    pub fn register<J: Job<State = St>>(mut self) -> Self {
        let opts = J::options();
        if J::KIND.is_empty() {
            self.problems.push(format!("{} has an empty KIND", std::any::type_name::<J>()));
        }
        if let Some(ttl) = opts.lease_ttl.filter(|t| *t < MIN_LEASE_TTL) {
            self.problems.push(format!("job kind {:?} asks for a lease of {ttl:?}, below {MIN_LEASE_TTL:?}", J::KIND));
        }
        if let Some(n) = opts.max_attempts.filter(|n| *n < 1) {
            self.problems.push(format!("job kind {:?} asks for {n} max attempts", J::KIND));
        }
        if !self.registry.insert::<J>() {
            self.problems.push(format!("job kind {:?} is registered twice", J::KIND));
        }
        self
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: WorkerConfig) -> Self {
        self.config = config;
        self
    }

    /// Tasks run at once.
    pub fn concurrency(mut self, n: u32) -> Self {
        self.config.concurrency = n;
        self
    }

    /// Queues to claim from.
    pub fn queues<I: IntoIterator<Item = Q>, Q: Into<String>>(mut self, queues: I) -> Self {
        self.config.queues = queues.into_iter().map(Into::into).collect();
        self
    }

    /// Lease `L`.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.config.lease_ttl = ttl;
        self
    }

    /// Heartbeat `H`.
    pub fn heartbeat_interval(mut self, h: Duration) -> Self {
        self.config.heartbeat_interval = h;
        self
    }

    /// Margin `M`.
    pub fn trust_margin(mut self, m: Duration) -> Self {
        self.config.trust_margin = m;
        self
    }

    /// Grace for a cancelled handler.
    pub fn cancel_grace(mut self, g: Duration) -> Self {
        self.config.cancel_grace = g;
        self
    }

    /// Poll interval.
    pub fn poll_interval(mut self, p: Duration) -> Self {
        self.config.poll_interval = p;
        self
    }

    /// Shutdown timeout.
    pub fn shutdown_timeout(mut self, t: Duration) -> Self {
        self.config.shutdown_timeout = t;
        self
    }

    /// Backoff policy.
    pub fn retry_policy(mut self, p: RetryPolicy) -> Self {
        self.config.retry = p;
        self
    }

    /// The id recorded on claimed tasks.
    pub fn worker_id(mut self, id: impl Into<String>) -> Self {
        self.config.worker_id = Some(id.into());
        self
    }

    /// How long finished tasks are kept before the worker deletes them; `None` keeps them forever.
    pub fn retention(mut self, keep: Option<Duration>) -> Self {
        self.config.retention = keep;
        self
    }

    /// Delete completed tasks instead of keeping them (keyed tasks are kept while their key is
    /// remembered); see [`WorkerConfig::delete_completed`].
    pub fn delete_completed(mut self, delete: bool) -> Self {
        self.config.delete_completed = delete;
        self
    }

    /// How often to sample queue depth for metrics; `None` turns sampling off.
    pub fn depth_sample_interval(mut self, every: Option<Duration>) -> Self {
        self.config.depth_sample_interval = every;
        self
    }

    /// Validates the configuration and the registered jobs.
    pub fn build(self) -> Result<Worker<S, St>> {
        if let Some(p) = self.problems.first() {
            return Err(Error::InvalidConfig(p.clone()));
        }
        if self.registry.is_empty() {
            return Err(Error::InvalidConfig("a worker needs at least one registered job kind".into()));
        }
        self.config.validate()?;
        let worker_id = self.config.worker_id.clone().unwrap_or_else(default_worker_id);
        let health = health::HealthState::new(
            worker_id.clone(),
            self.config.poll_interval,
            self.config.lease_ttl - self.config.trust_margin,
        );
        Ok(Worker {
            health: Arc::new(health),
            store: self.store,
            config: self.config,
            worker_id,
            registry: Arc::new(self.registry),
            state: self.state,
            stats: Arc::default(),
            running: tokio::sync::Mutex::new(None),
        })
    }
}

fn default_worker_id() -> String {
    let suffix = uuid::Uuid::now_v7().simple().to_string();
    format!("worker-{}-{}", std::process::id(), &suffix[24..])
}
