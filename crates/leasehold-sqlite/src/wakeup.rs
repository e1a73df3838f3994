//! In-process wake-ups. SQLite has no LISTEN/NOTIFY: an enqueue through any store on the same file in
//! this process wakes this process's idle workers at once; enqueues from other processes are found by
//! polling.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Mutex, OnceLock};

use tokio::sync::broadcast;

use leasehold_core::{Error, Result, Wakeup};

const CAPACITY: usize = 1024;

/// One hint channel per database file in this process.
pub(crate) fn channel_for(path: &Path) -> broadcast::Sender<String> {
    static HUB: OnceLock<Mutex<HashMap<PathBuf, broadcast::Sender<String>>>> = OnceLock::new();
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut hub = HUB.get_or_init(Default::default).lock().unwrap();
    hub.entry(key).or_insert_with(|| broadcast::channel(CAPACITY).0).clone()
}

pub(crate) struct SqliteWakeup {
    pub(crate) rx: broadcast::Receiver<String>,
}

impl Wakeup for SqliteWakeup {
    fn recv(&mut self) -> Pin<Box<dyn Future<Output = Result<String>> + Send + '_>> {
        Box::pin(async move {
            loop {
                match self.rx.recv().await {
                    Ok(queue) => return Ok(queue),
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
