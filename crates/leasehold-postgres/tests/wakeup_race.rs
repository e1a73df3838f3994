//! A worker that began to wait while an enqueue's transaction was open finds the task when it commits.
//! (A file of its own: the test reads the worker's claims from a metrics recorder, which is global to
//! the process.)

use std::time::Duration;

use leasehold_core::*;
use leasehold_postgres::PgStore;
use leasehold_testkit::pg::TestDb;
use leasehold_testkit::wait;

/// An enqueue that raced a worker's announcement (its statement ran before the announcement, so it
/// notifies nobody, and it committed after the worker's first look for work) is found by the worker's
/// later looks after the announcement, not at its next poll two minutes on.
#[tokio::test]
async fn a_task_committed_just_after_a_worker_began_to_wait_runs_before_the_next_poll() {
    use leasehold::Worker;
    use leasehold_testkit::jobs::{Echo, Probe};
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    // the worker's claims are counted through the metrics it emits, so the test knows when it looked;
    // a snapshot hands over each counter's increments since the previous one, so they are summed here
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();
    let seen_empty = std::sync::atomic::AtomicU64::new(0);
    let empty_claims = || {
        let new: u64 = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter_map(|(key, _, _, value)| {
                let key = key.key();
                let empty = key.labels().any(|l| l.key() == "outcome" && l.value() == "empty");
                match value {
                    DebugValue::Counter(n) if key.name() == "leasehold_claims_total" && empty => Some(n),
                    _ => None,
                }
            })
            .sum();
        seen_empty.fetch_add(new, std::sync::atomic::Ordering::Relaxed) + new
    };

    let db = TestDb::create().await;
    let store = PgStore::from_pool(db.pool().clone());
    let mut tx = db.pool().begin().await.unwrap();
    let id = leasehold_postgres::tx::task_insert_in(&mut tx, NewTask::new("echo", serde_json::json!({"n": 1})))
        .await
        .unwrap();
    let worker = Worker::builder_with_state(store.clone(), Probe::default())
        .register::<Echo>()
        .poll_interval(Duration::from_secs(120))
        .build()
        .unwrap();
    worker.start().await;
    // its first claim finds nothing, it announces, and its look right after finds nothing either: the
    // insert is not committed yet
    wait::until("the worker's look after its announcement", Duration::from_secs(10), || async {
        (empty_claims() >= 2).then_some(())
    })
    .await;
    tx.commit().await.unwrap();
    wait::until("the raced task to run", Duration::from_secs(10), || async {
        (store.task_get(id).await.unwrap().state == TaskState::Completed).then_some(())
    })
    .await;
    worker.stop().await;
}
