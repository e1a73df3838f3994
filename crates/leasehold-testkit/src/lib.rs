//! Test support for leasehold: the backend conformance suite every store passes, fresh test
//! databases, test jobs, and helpers that start, pause and kill real worker processes.
//!
//! # Layout
//! - [`backend`]: [`Backend`], what the suite needs from a store beyond [`leasehold_core::TaskStore`]
//!   (moving a lease or a `run_at` into the past on the store's own clock, a transaction).
//! - [`pg`]: a fresh PostgreSQL database per test, dropped afterwards; [`pg::PgBackend`].
//! - [`plans`]: what PostgreSQL's plans for lease holders' writes did, on a table analyzed while no
//!   task ran.
//! - [`sqlite`]: a fresh SQLite file per test, removed afterwards; [`sqlite::SqliteBackend`].
//! - [`conformance`]: the suite, and [`conformance_tests!`] which expands it into one test per case;
//!   [`cron_cases`] holds its cases for scheduled jobs, [`completion_cases`] those of deleting
//!   completions and [`payload_cases`] those of the payloads a claim answers.
//! - [`jobs`]: the jobs the suite and the process tests run.
//! - [`process`]: worker processes for crash and pause tests.
//! - [`history`]: what those processes recorded, read back for the checks.
//! - [`scenarios`]: the crash and pause scenarios, on any backend.
//! - [`wait`]: waiting on a condition with a deadline instead of sleeping.
//! - [`faults`]: the fault-scenario harness, its history checker, and the fault kit for your own
//!   handlers (pause past the lease, kill, drop connections, crash the server, move the store's clock).

pub mod backend;
pub mod completion_cases;
pub mod conformance;
pub mod cron_cases;
pub mod faults;
pub mod history;
pub mod jobs;
pub mod payload_cases;
pub mod pg;
pub mod plans;
pub mod process;
pub mod scenarios;
pub mod sqlite;
pub mod wait;

pub use backend::Backend;
