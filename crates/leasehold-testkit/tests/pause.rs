//! Pause: a worker process SIGSTOPped past its lease (a GC pause, a frozen VM) and then resumed has its
//! job cancelled and its late completion rejected by fencing; the process that took the task over
//! completes it, and the effect exists exactly once, under the newer token.

use leasehold_testkit::pg::TestDb;
use leasehold_testkit::scenarios::pause;
use leasehold_testkit::sqlite::TestFile;

const BIN: &str = env!("CARGO_BIN_EXE_leasehold-test-worker");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_paused_holder_is_cancelled_and_fenced_out() {
    pause(&TestDb::create().await, BIN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_paused_holder_is_cancelled_and_fenced_out() {
    pause(&TestFile::create().await, BIN).await;
}
