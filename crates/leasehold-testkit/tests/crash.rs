//! Crash: several worker processes work through N tasks while the test SIGKILLs some of them mid-task.
//! Every task ends completed exactly once, its effect applied once by the holder of its final token,
//! none is lost, and takeover stays within `L + poll` (plus a slack for the claimer's own delay).

use std::time::Duration;

use leasehold_testkit::pg::TestDb;
use leasehold_testkit::process::ProcessOptions;
use leasehold_testkit::scenarios::{CrashRun, crash};
use leasehold_testkit::sqlite::TestFile;

const BIN: &str = env!("CARGO_BIN_EXE_leasehold-test-worker");

fn run() -> CrashRun {
    CrashRun {
        tasks: 400,
        processes: 4,
        kills: 8,
        opts: ProcessOptions::default(),
        slack: Duration::from_millis(2_500),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_killed_workers_lose_no_task_and_repeat_no_effect() {
    crash(&TestDb::create().await, BIN, &run()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_killed_workers_lose_no_task_and_repeat_no_effect() {
    crash(&TestFile::create().await, BIN, &run()).await;
}
