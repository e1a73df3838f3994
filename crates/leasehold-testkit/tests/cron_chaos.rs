//! Singleton cron under faults: scheduler processes run an every-second schedule while the leader is
//! SIGKILLed or SIGSTOPped past its lease. Every tick of the run executes exactly once; the maximum
//! start delay is printed.

use leasehold_testkit::pg::TestDb;
use leasehold_testkit::scenarios::cron_chaos;
use leasehold_testkit::sqlite::TestFile;

const BIN: &str = env!("CARGO_BIN_EXE_leasehold-test-worker");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_every_tick_runs_once_through_leader_faults() {
    cron_chaos(&TestDb::create().await, BIN, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_every_tick_runs_once_through_leader_faults() {
    cron_chaos(&TestFile::create().await, BIN, 4).await;
}
