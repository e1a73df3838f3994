//! What the stores of one database file share within a process: the channel of wake-up hints, and
//! the lock its own writes queue on.
//!
//! SQLite lets one connection write at a time, and a connection that finds the file's write lock
//! taken sleeps in SQLite's busy handler (1 ms, then 2, 5, 10 ms and more) before it tries again. Within
//! one process, the store's writes (claims, completions, renewals, enqueues, outcomes, leader terms)
//! wait for each other on an in-process lock instead, which hands over the moment the previous write
//! commits: a worker's claims and completions alternated with sleeps before it (a drain ran at about
//! 0.3x of SQLite's claim-and-complete limit with the sleeps, 0.4x without). Writers in other processes,
//! and the application's own transactions, still meet at SQLite's lock.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::broadcast;

const HINT_CAPACITY: usize = 1024;

pub(crate) struct FileLocal {
    /// Queue names enqueued to through any store of the file, for idle workers.
    pub(crate) hints: broadcast::Sender<String>,
    /// Held by each of the stores' own writes, from before its first statement to its commit.
    pub(crate) writer: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for FileLocal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileLocal").finish_non_exhaustive()
    }
}

/// The shared state of the file at `path` in this process.
pub(crate) fn for_file(path: &Path) -> Arc<FileLocal> {
    static FILES: OnceLock<Mutex<HashMap<PathBuf, Arc<FileLocal>>>> = OnceLock::new();
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut files = FILES.get_or_init(Default::default).lock().unwrap();
    files
        .entry(key)
        .or_insert_with(|| {
            Arc::new(FileLocal { hints: broadcast::channel(HINT_CAPACITY).0, writer: tokio::sync::Mutex::new(()) })
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::for_file;

    #[test]
    fn one_file_named_two_ways_shares_one_state() {
        let dir = std::env::temp_dir().join(format!("leasehold-local-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a.sqlite");
        std::fs::write(&file, b"").unwrap();
        let other = dir.join(".").join("a.sqlite");
        assert!(Arc::ptr_eq(&for_file(&file), &for_file(&other)));
        assert!(!Arc::ptr_eq(&for_file(&file), &for_file(&dir.join("b.sqlite"))));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
