//! Heap allocations per task: the program's allocator counts every allocation (and reallocation), so a
//! phase's count divided by its tasks tells what the client, the worker and sqlx allocate for each one.
//! The count is the whole process's, the benchmark's own bookkeeping included; the raw limit's phases
//! are counted the same way, so the two sides compare like for like.

use std::alloc::System;

use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The allocation count before a phase.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AllocMark(usize);

impl AllocMark {
    /// The count now.
    pub(crate) fn take() -> Self {
        Self(count())
    }

    /// Allocations since the mark, per task of `tasks`.
    pub(crate) fn per_task(self, tasks: u64) -> f64 {
        (count() - self.0) as f64 / tasks.max(1) as f64
    }
}

fn count() -> usize {
    let s = ALLOCATOR.stats();
    s.allocations + s.reallocations
}
