//! The jobs the benchmark runs: a no-op, so the cost measured is leasehold's own, and a probe that
//! reports the moment it starts.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedSender;

use leasehold::{Job, JobContext, JobResult, Outcome};

/// Does nothing. Its payload is JSON `null`.
#[derive(Serialize, Deserialize)]
pub(crate) struct Noop;

impl Job for Noop {
    const KIND: &'static str = "bench_noop";
    type State = ();

    async fn run(self, _ctx: JobContext<()>) -> JobResult {
        Ok(Outcome::Complete)
    }
}

/// Where a [`Probe`] reports when it started.
pub(crate) type ProbeTx = UnboundedSender<Instant>;

/// Sends the instant it starts to the worker's state, then completes.
#[derive(Serialize, Deserialize)]
pub(crate) struct Probe;

impl Job for Probe {
    const KIND: &'static str = "bench_probe";
    type State = ProbeTx;

    async fn run(self, ctx: JobContext<ProbeTx>) -> JobResult {
        let started = Instant::now();
        // the receiver is gone only when the measurement ended; nothing to report to then
        let _ = ctx.state().send(started);
        Ok(Outcome::Complete)
    }
}
