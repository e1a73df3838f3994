//! leasehold: leased job-queue workers for Rust services.
//!
//! Workers claim tasks through leases measured by the store's clock, renew them with heartbeats, and
//! get a store-issued, strictly increasing fencing token on every claim. Every write of a holder
//! carries that token, so a worker that was paused or cut off past its lease cannot complete, fail or
//! snooze a task someone else now holds; and a worker that cannot renew in time cancels its own job
//! before the store could hand the task to anyone else.
//!
//! ```no_run
//! use leasehold::sqlite::SqliteStore;
//! use leasehold::{Client, Job, JobContext, JobResult, Outcome, Worker};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Resize { image: String }
//!
//! impl Job for Resize {
//!     const KIND: &'static str = "resize";
//!     type State = ();
//!     async fn run(self, _ctx: JobContext<()>) -> JobResult {
//!         println!("resizing {}", self.image);
//!         Ok(Outcome::Complete)
//!     }
//! }
//!
//! # async fn demo() -> leasehold::Result<()> {
//! let store = SqliteStore::open("jobs.sqlite").await?;
//! Client::new(store.clone()).enqueue(Resize { image: "cat.png".into() }).await?;
//! let worker = Worker::builder(store).register::<Resize>().concurrency(8).build()?;
//! worker.run_until(async { tokio::signal::ctrl_c().await.unwrap() }).await;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`job`]: the [`Job`] trait, [`JobContext`] and [`Outcome`].
//! - [`client`]: [`Client`] and [`EnqueueOptions`].
//! - [`worker`]: [`Worker`], its builder and its background work.
//! - [`config`]: [`WorkerConfig`], validated when built.
//! - [`cron`]: singleton scheduled jobs: [`cron::Schedule`] and [`cron::Scheduler`].
//! - [`once`] and [`guard`]: run-once effects: the effect record, version checks, fenced writes
//!   (`docs/exactly-once.md` says which to use when).
//! - [`sqlite`] (feature `sqlite`, the default): the embedded SQLite store.
//! - [`postgres`] (feature `postgres`): the PostgreSQL store, the production choice.
//!
//! - [`telemetry`]: the metrics catalog and how to export it; [`admin`] (feature `admin`): the
//!   `/metrics`, `/healthz` and `/readyz` endpoints.
//!
//! Each backend module also has the operations that join the application's own transaction.
//! - [`core`]: the backend-neutral model, re-exported from `leasehold-core`.

#[cfg(feature = "admin")]
pub mod admin;
pub mod client;
pub mod config;
pub mod cron;
pub mod guard;
pub mod job;
pub mod once;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod telemetry;
pub mod worker;

pub use leasehold_core as core;
pub use leasehold_core::{
    ClaimedTask, CrossProcessWakeups, Enqueued, Error, FencingToken, Idempotency, NewTask, Result, RetryPolicy,
    ScheduleStore, TaskId, TaskLease, TaskRecord, TaskState, TaskStore,
};

pub use client::{Client, EnqueueOptions};
pub use config::WorkerConfig;
pub use job::{BoxError, Job, JobContext, JobOptions, JobResult, Outcome};
pub use once::{EffectKey, Once};
pub use worker::{Worker, WorkerBuilder, WorkerStats};
