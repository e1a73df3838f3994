//! The fault-scenario harness, its history checker, and the fault kit for users.
//!
//! A run ([`run::run`]) starts worker processes against a PostgreSQL cluster it owns
//! ([`PgCluster`]), feeds them tasks, and injects a seeded, bounded schedule of faults: SIGKILL,
//! SIGSTOP past the lease and within it, `pg_terminate_backend`, frozen sessions (a partition between a
//! worker and the server), a crash and restart of the server,
//! and long transactions pinning the MVCC horizon. The store logs every claim, renewal and end of a
//! lease with its own clock ([`history`]); the checker ([`check`]) reads that log, the effects and
//! the workers' view of each attempt, and reports double holds, stale writes accepted, lost and
//! duplicate effects, token regressions, and takeover latencies.
//!
//! Scenario 1 (contenders for singleton keys, counters protected by the lock's token) runs apart, in
//! [`locks`], with no fault: it checks the lock itself.
//!
//! Profiles: [`run::Profile::short`] runs in the test suite (`tests/faults.rs`);
//! [`run::Profile::long`] runs on demand with `./scripts/faults.sh long`. `docs/reliability.md` has
//! the scenarios, their invariants and the figures of the last long run.

pub mod check;
pub mod cluster;
pub mod history;
pub mod kit;
pub mod locks;
pub mod run;

pub use check::{Budget, Report, check};
pub use cluster::PgCluster;
pub use kit::{StoreClock, drop_connections, pause_for, stall_sessions};
pub use run::{Profile, RunReport};
