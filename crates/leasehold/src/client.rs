//! Enqueueing typed jobs.

use std::time::Duration;

use chrono::{DateTime, Utc};

use serde::de::DeserializeOwned;

use leasehold_core::{
    DEFAULT_MAX_ATTEMPTS, DEFAULT_QUEUE, Enqueued, Error, Idempotency, NewTask, Result, TaskCancelParams, TaskId,
    TaskRecord, TaskState, TaskStore,
};

use crate::job::Job;
use crate::telemetry::record;

/// Options of one enqueue; unset fields take the job's [`Job::options`], then the defaults.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EnqueueOptions {
    /// Queue.
    pub queue: Option<String>,
    /// Priority, lower first.
    pub priority: Option<i16>,
    /// Not before this time.
    pub run_at: Option<DateTime<Utc>>,
    /// Not before this delay (on the store's clock, added to `run_at` or now).
    pub delay: Option<Duration>,
    /// Attempts.
    pub max_attempts: Option<i32>,
    /// Lease duration.
    pub lease_ttl: Option<Duration>,
    /// Enqueue at most once per key.
    pub idempotency: Option<Idempotency>,
}

impl EnqueueOptions {
    /// Sets the queue.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }
    /// Sets the priority.
    pub fn priority(mut self, priority: i16) -> Self {
        self.priority = Some(priority);
        self
    }
    /// Sets the earliest run time.
    pub fn run_at(mut self, at: DateTime<Utc>) -> Self {
        self.run_at = Some(at);
        self
    }
    /// Sets a delay.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }
    /// Sets the attempts allowed.
    pub fn max_attempts(mut self, n: i32) -> Self {
        self.max_attempts = Some(n);
        self
    }
    /// Sets the lease duration.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = Some(ttl);
        self
    }
    /// Enqueues at most once per `key`, with the default rules ([`Idempotency::new`]).
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency = Some(Idempotency::new(key));
        self
    }
    /// Enqueues at most once per key, with these rules.
    pub fn idempotency(mut self, idempotency: Idempotency) -> Self {
        self.idempotency = Some(idempotency);
        self
    }
}

/// Builds the task for `job`, merging the enqueue options over the job's defaults, and validates it.
pub fn new_task<J: Job>(job: &J, opts: &EnqueueOptions) -> Result<NewTask> {
    let defaults = J::options();
    let task = NewTask {
        id: TaskId::new(),
        kind: J::KIND.to_owned(),
        queue: opts.queue.clone().or(defaults.queue).unwrap_or_else(|| DEFAULT_QUEUE.to_owned()),
        payload: serde_json::to_value(job)?,
        priority: opts.priority.or(defaults.priority).unwrap_or(0),
        run_at: opts.run_at,
        delay: opts.delay,
        max_attempts: opts.max_attempts.or(defaults.max_attempts).unwrap_or(DEFAULT_MAX_ATTEMPTS),
        lease_ttl: opts.lease_ttl.or(defaults.lease_ttl),
        idempotency: opts.idempotency.clone(),
    };
    task.validate()?;
    Ok(task)
}

/// Enqueues jobs and inspects tasks. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Client<S> {
    store: S,
}

impl<S: TaskStore> Client<S> {
    /// A client on `store`.
    pub fn new(store: S) -> Self {
        Self { store }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Enqueues one job with its defaults; returns the task id.
    pub async fn enqueue<J: Job>(&self, job: J) -> Result<TaskId> {
        self.enqueue_with(job, EnqueueOptions::default()).await
    }

    /// Enqueues one job with options.
    pub async fn enqueue_with<J: Job>(&self, job: J, opts: EnqueueOptions) -> Result<TaskId> {
        let task = new_task(&job, &opts)?;
        let queue = task.queue.clone();
        let id = self.store.task_insert(task).await?;
        record::enqueued(self.store.backend_name(), &queue, J::KIND, 1);
        Ok(id)
    }

    /// Enqueues a job at most once per idempotency key (set in `opts`): answers the new task, or the
    /// task that already holds the key with its state and result; [`Error::IdempotencyConflict`] when
    /// the key is held by a different job.
    pub async fn enqueue_idempotent<J: Job>(&self, job: J, opts: EnqueueOptions) -> Result<Enqueued> {
        if opts.idempotency.is_none() {
            return Err(Error::InvalidInput("enqueue_idempotent needs an idempotency key in its options".into()));
        }
        let task = new_task(&job, &opts)?;
        let (backend, queue) = (self.store.backend_name(), task.queue.clone());
        match self.store.task_insert_idempotent(task).await {
            Ok(found) => {
                if found.existing {
                    record::idempotency(backend, "task", "hit");
                } else {
                    record::idempotency(backend, "task", "new");
                    record::enqueued(backend, &queue, J::KIND, 1);
                }
                Ok(found)
            }
            Err(e) => {
                if matches!(e, Error::IdempotencyConflict { .. }) {
                    record::idempotency(backend, "task", "conflict");
                }
                Err(e)
            }
        }
    }

    /// The result a completed task stored, decoded; `None` while it has not completed (or completed
    /// without a result). [`leasehold_core::Error::NotFound`] once the task is gone, pruned by a worker's
    /// [`crate::WorkerConfig::retention`] or deleted by its completion ([`crate::WorkerConfig::delete_completed`]).
    pub async fn result<T: DeserializeOwned>(&self, id: TaskId) -> Result<Option<T>> {
        let rec = self.store.task_get(id).await?;
        match (rec.state, rec.result) {
            (TaskState::Completed, Some(v)) => Ok(Some(serde_json::from_value(v)?)),
            _ => Ok(None),
        }
    }

    /// Enqueues many jobs of one kind in one statement; returns their ids in order.
    pub async fn enqueue_many<J: Job>(
        &self,
        jobs: impl IntoIterator<Item = J>,
        opts: EnqueueOptions,
    ) -> Result<Vec<TaskId>> {
        let tasks = jobs.into_iter().map(|j| new_task(&j, &opts)).collect::<Result<Vec<_>>>()?;
        let Some(queue) = tasks.first().map(|t| t.queue.clone()) else {
            return Ok(Vec::new());
        };
        let ids = self.store.task_insert_many(tasks).await?;
        record::enqueued(self.store.backend_name(), &queue, J::KIND, ids.len() as u64);
        Ok(ids)
    }

    /// Enqueues prepared tasks of any kinds in one statement.
    pub async fn enqueue_tasks(&self, tasks: Vec<NewTask>) -> Result<Vec<TaskId>> {
        let mut counts: std::collections::HashMap<(String, String), u64> = std::collections::HashMap::new();
        for t in &tasks {
            *counts.entry((t.queue.clone(), t.kind.clone())).or_default() += 1;
        }
        let ids = self.store.task_insert_many(tasks).await?;
        for ((queue, kind), n) in counts {
            record::enqueued(self.store.backend_name(), &queue, &kind, n);
        }
        Ok(ids)
    }

    /// Reads a task.
    pub async fn task(&self, id: TaskId) -> Result<TaskRecord> {
        self.store.task_get(id).await
    }

    /// Cancels a task that has not finished; a running holder stops at its next renewal.
    pub async fn cancel(&self, id: TaskId) -> Result<TaskState> {
        self.store.task_cancel(TaskCancelParams { id }).await
    }
}
