//! In-process wake-ups. SQLite has no LISTEN/NOTIFY: an enqueue through any store on the same file in
//! this process wakes this process's idle workers at once; enqueues from other processes are found by
//! polling.

use std::future::Future;
use std::pin::Pin;

use tokio::sync::broadcast;

use leasehold_core::{Error, Hint, Result, Wakeup};

pub(crate) struct SqliteWakeup {
    pub(crate) rx: broadcast::Receiver<String>,
}

impl Wakeup for SqliteWakeup {
    fn recv(&mut self) -> Pin<Box<dyn Future<Output = Result<Hint>> + Send + '_>> {
        Box::pin(async move {
            loop {
                match self.rx.recv().await {
                    Ok(queue) => return Ok(Hint::Available(queue)),
                    // hints were dropped, and more are queued right behind: take the next one
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => {
                        return Err(Error::database("the wake-up channel closed"));
                    }
                }
            }
        })
    }
}
