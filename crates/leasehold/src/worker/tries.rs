//! How the worker writes a task's outcome to a store that may not answer: each attempt is given up at a
//! deadline, and an attempt the store could not take ([`leasehold_core::Error::Unavailable`]) is made
//! again after a pause, until the lease's trust at the first failure runs out. The completer
//! (`completer::flush`) and the other outcomes' writes (`executor`'s `persist`) share these rules.

use std::time::Duration;

use tokio::time::Instant;

use super::STOP_WRITE_TIMEOUT;
use leasehold_core::{Error, Result};

/// The pauses between tries; the last repeats.
const DELAYS: [Duration; 4] =
    [Duration::from_millis(50), Duration::from_millis(250), Duration::from_millis(500), Duration::from_secs(1)];

/// The pauses of one write's tries.
pub(crate) struct Tries {
    made: usize,
}

impl Tries {
    pub(crate) fn new() -> Self {
        Self { made: 0 }
    }

    /// When to try again after a failed try, from now.
    pub(crate) fn next_at(&mut self) -> Instant {
        let delay = DELAYS[self.made.min(DELAYS.len() - 1)];
        self.made += 1;
        Instant::now() + delay
    }
}

/// One attempt of a write, given up at `until` (a server that stopped answering) as an
/// [`Error::Unavailable`]: the write may or may not land. Never given up before it had
/// [`STOP_WRITE_TIMEOUT`] to answer, so that a job cancelled as its trust ended still writes its outcome
/// when nobody took its task over (the token decides).
pub(crate) async fn attempt<T>(until: Instant, write: impl Future<Output = Result<T>>) -> Result<T> {
    let until = until.max(Instant::now() + STOP_WRITE_TIMEOUT);
    tokio::time::timeout_at(until, write)
        .await
        .unwrap_or_else(|_| Err(Error::Unavailable("the store did not answer in time".into())))
}
