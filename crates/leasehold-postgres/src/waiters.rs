//! Which queues had a worker waiting at their latest single enqueue through this store: a hint that
//! chooses the enqueue's statement (`PgStore::task_insert`). Where a worker waits, the enqueue runs
//! `task_insert_handoff.sql`, which may hand it the task; where none does (its workers are all busy, or
//! there are none), the cheaper `task_insert_one.sql`. Each statement answers whether a worker waits, so
//! a wrong guess costs one enqueue: the cheaper statement still wakes a worker that began to wait, it only
//! hands it nothing.

use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub(crate) struct Waiters(Mutex<HashMap<String, bool>>);

/// Queues remembered at most; beyond, the hints start over (an application with more queues than this
/// pays one guess per queue again).
const MAX_QUEUES: usize = 4_096;

impl Waiters {
    /// Whether a worker likely waits on `queue`; a queue not seen yet is assumed to have one.
    pub(crate) fn likely(&self, queue: &str) -> bool {
        self.0.lock().unwrap().get(queue).copied().unwrap_or(true)
    }

    /// What the latest enqueue into `queue` found.
    pub(crate) fn saw(&self, queue: &str, waits: bool) {
        let mut map = self.0.lock().unwrap();
        match map.get_mut(queue) {
            Some(w) => *w = waits,
            None => {
                if map.len() >= MAX_QUEUES {
                    map.clear();
                }
                map.insert(queue.to_owned(), waits);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Waiters;

    #[test]
    fn a_queue_is_assumed_waited_on_until_an_enqueue_finds_otherwise() {
        let w = Waiters::default();
        assert!(w.likely("q"));
        w.saw("q", false);
        assert!(!w.likely("q") && w.likely("other"));
        w.saw("q", true);
        assert!(w.likely("q"));
    }
}
