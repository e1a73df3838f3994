//! The heart of leasehold without any I/O: the task model and its state machine, the narrow store
//! traits every backend implements, the error type and the retry policy.
//!
//! # Layout
//! - [`task`]: identifiers, states, fencing tokens and the records a store returns.
//! - [`params`]: one parameter struct per store operation.
//! - [`claim`]: what a claim discards instead of handing out, and the discard of unreadable payloads.
//! - [`store`]: [`TaskStore`], the trait every backend implements, and [`Wakeup`], its hint channel.
//! - [`retry`]: exponential backoff with jitter.
//! - [`schedule`]: singleton scheduled jobs: definitions, policies and the leader's pure planning.
//! - [`statements`]: the statement texts a store writes for a set of queues, kept so each is written once.
//! - [`error`]: [`Error`], one typed enum for everything a store can answer.
//!
//! The lease protocol these types carry (store clock, trust window, fencing tokens) is described in
//! `docs/lease-protocol.md` at the root of the repository.

pub mod claim;
pub mod error;
pub mod params;
pub mod retry;
pub mod schedule;
pub mod statements;
pub mod store;
pub mod task;

pub use claim::{ClaimDiscard, DiscardCause, UnreadableTask};
pub use error::{Error, Result};
pub use params::*;
pub use retry::RetryPolicy;
pub use store::{CrossProcessWakeups, Handoff, HandoffOffer, Hint, ScheduleStore, TaskStore, Wakeup};
pub use task::*;
