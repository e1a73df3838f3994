//! Singleton scheduled jobs: every instance of a service defines the same schedules in code, and each
//! tick runs exactly once, whatever crashes, pauses, deploys or leadership changes happen.
//!
//! ```text
//!  every instance: Scheduler ──► leader lease (store clock, fencing token per term)
//!                                   │ the one leader, while it trusts its term:
//!                                   ▼
//!            for each schedule: ticks in (last_tick, now] ─► missed policy ─► overlap policy
//!                                   │
//!                                   ▼  one transaction, fenced by the term's token
//!            ledger row (schedule, tick) UNIQUE  +  the run's task  +  last_tick
//! ```
//!
//! - The leader holds a lease measured on the store's clock and stops acting at `t0 + L - M` on its own
//!   monotonic clock, like a worker with a task ([`SchedulerConfig`]). A new leader takes over within
//!   `L`; a graceful stop hands over at once.
//! - Safety does not rest on the lease: the ledger's unique key (schedule, tick) lets a tick be written
//!   once, so two instances that both believe they lead still enqueue it once, and a leader whose term
//!   is over gets [`Error::LeadershipLost`](leasehold_core::Error::LeadershipLost) from the store.
//! - Definitions come from the leader's code: a changed expression or policy applies from the next tick
//!   without cleanup; a schedule removed from the code stops firing (it is marked removed).
//! - Time zones follow IANA rules through `croner`: a daily 02:30 job runs once on spring-forward day (at
//!   the first valid time) and once on fall-back day.
//!
//! Runs are ordinary tasks: a [`crate::Worker`] with the job registered runs them.

mod schedule;
mod scheduler;

pub use leasehold_core::schedule::{MissedPolicy, OverlapPolicy, ScheduleRecord, TickOutcome};
pub use schedule::{Schedule, ScheduleBuilder};
pub use scheduler::{PassReport, ScheduleInfo, Scheduler, SchedulerBuilder, SchedulerConfig, SchedulerStats};
