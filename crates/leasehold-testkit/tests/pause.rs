//! Pause: a worker process SIGSTOPped past its lease (a GC pause, a frozen VM) and then resumed has its
//! job cancelled and its late completion rejected by fencing; the worker that took the task over
//! completes it, and the task's effect exists exactly once, under the newer token.

use std::time::Duration;

use leasehold::{Client, TaskState};
use leasehold_core::NewTask;
use leasehold_testkit::pg::TestDb;
use leasehold_testkit::process::{ProcessOptions, WorkerProcess};
use leasehold_testkit::wait;
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_leasehold-test-worker");

async fn attempt_of(db: &TestDb, task: Uuid, worker: &str) -> Option<(i64, Option<bool>, Option<String>)> {
    sqlx::query_as("SELECT fence, cancelled, completion FROM attempts WHERE task_id = $1 AND worker = $2")
        .bind(task)
        .bind(worker)
        .fetch_optional(db.pool())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_holder_is_cancelled_and_fenced_out() {
    let db = TestDb::create().await;
    let opts = ProcessOptions { concurrency: 1, ..ProcessOptions::default() };
    let client = Client::new(db.store());
    let a = WorkerProcess::spawn(BIN, db.url(), "a", &opts);
    let id =
        client.enqueue_tasks(vec![NewTask::new("effect", serde_json::json!({ "work_ms": 8_000 }))]).await.unwrap()[0];
    let first = wait::until("worker a to start the job", Duration::from_secs(10), || attempt_of(&db, id.0, "a")).await;

    // freeze a for 3 L; b starts meanwhile and may take the task only once the lease expired
    a.pause();
    let paused_at = tokio::time::Instant::now();
    let b = WorkerProcess::spawn(BIN, db.url(), "b", &opts);
    let second =
        wait::until("worker b to take the task over", Duration::from_secs(20), || attempt_of(&db, id.0, "b")).await;
    let took = paused_at.elapsed();
    assert!(second.0 > first.0, "takeover token {} not above {}", second.0, first.0);
    tokio::time::sleep_until(paused_at + opts.lease * 3).await; // the fault itself: a pause of 3 L
    a.resume();

    let (_, cancelled, completion) = wait::until("worker a to notice", Duration::from_secs(10), || async {
        attempt_of(&db, id.0, "a").await.filter(|r| r.2.is_some())
    })
    .await;
    assert_eq!(cancelled, Some(true), "the resumed holder's job was not cancelled");
    assert_eq!(completion.as_deref(), Some("rejected"), "the late completion was not rejected");

    let rec = wait::until("worker b to complete the task", Duration::from_secs(20), || async {
        let r = client.task(id).await.unwrap();
        (r.state == TaskState::Completed).then_some(r)
    })
    .await;
    assert_eq!(rec.fence.map(|f| f.0), Some(second.0));
    assert_eq!(rec.lease_losses, 1);
    let effects: Vec<i64> = sqlx::query_scalar("SELECT fence FROM effects WHERE task_id = $1")
        .bind(id.0)
        .fetch_all(db.pool())
        .await
        .unwrap();
    assert_eq!(effects, vec![second.0], "the effect must exist once, under the newer token");
    let stats_a = a.terminate();
    b.terminate();
    assert!(stats_a.contains("lease_lost: 1"), "{stats_a}");
    println!("takeover {took:?} after the pause began (L {:?}); paused for {:?}", opts.lease, opts.lease * 3);
}
