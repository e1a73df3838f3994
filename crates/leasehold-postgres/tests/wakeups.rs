//! Wake-ups on demand: enqueues notify only the queues a worker announced it waits on, for as long as
//! the announcement lasts. Notifications arrive in commit order, so "the first one received names the
//! announced queue" proves that the enqueues before it into other queues sent none, without waiting
//! for a notification that might still come.

use std::time::Duration;

use leasehold_core::*;
use leasehold_postgres::PgStore;
use leasehold_testkit::pg::TestDb;

fn task(queue: &str) -> NewTask {
    NewTask { queue: queue.to_owned(), ..NewTask::new("k", serde_json::json!({})) }
}

async fn next(w: &mut Box<dyn Wakeup>) -> String {
    tokio::time::timeout(Duration::from_secs(10), w.recv()).await.expect("no wake-up arrived").unwrap()
}

#[tokio::test]
async fn enqueues_wake_only_the_queues_a_worker_waits_on() {
    let db = TestDb::create().await;
    let store = PgStore::from_pool(db.pool().clone());
    let mut w = store.wakeup_subscribe().await.unwrap();
    w.announce(&["w".to_owned()], Duration::from_secs(60)).await.unwrap();

    // single, batch and keyed enqueues into a queue nobody waits on: no notification
    store.task_insert(task("idle")).await.unwrap();
    store.task_insert_many(vec![task("idle"), task("idle")]).await.unwrap();
    let keyed = NewTask { idempotency: Some(Idempotency::new("k1")), ..task("idle") };
    store.task_insert(keyed).await.unwrap();
    store.task_insert(task("w")).await.unwrap();
    assert_eq!(next(&mut w).await, "w");

    // a batch over both queues notifies the waited-on one, once
    store.task_insert_many(vec![task("idle"), task("w"), task("w")]).await.unwrap();
    let keyed = NewTask { idempotency: Some(Idempotency::new("k2")), ..task("w") };
    store.task_insert(keyed).await.unwrap();
    assert_eq!(next(&mut w).await, "w", "the batch's notification");
    assert_eq!(next(&mut w).await, "w", "the keyed enqueue's notification");

    // a task due later wakes nobody now; released tasks wake only waiting queues
    store.task_insert(NewTask { delay: Some(Duration::from_secs(3600)), ..task("w") }).await.unwrap();
    let claim = |queue: &str| TaskClaimParams {
        queues: vec![queue.to_owned()],
        limit: 10,
        default_lease_ttl: Duration::from_secs(30),
        worker_id: "t".into(),
    };
    let idle = store.task_claim(claim("idle")).await.unwrap().tasks;
    assert_eq!(idle.len(), 5);
    let leases = idle.iter().map(|t| t.lease).collect();
    assert_eq!(store.task_release(TaskReleaseParams { leases, lease_lost: false }).await.unwrap().len(), 5);
    store.task_insert(task("w")).await.unwrap();
    assert_eq!(next(&mut w).await, "w", "the delayed task or the release notified");

    // once the announcement has run out (moved into the past on the server's clock), nothing more
    sqlx::query("UPDATE leasehold.waiting SET until = now() - interval '1 second' WHERE queue = 'w'")
        .execute(db.pool())
        .await
        .unwrap();
    store.task_insert(task("w")).await.unwrap();
    w.announce(&["z".to_owned()], Duration::from_secs(60)).await.unwrap();
    store.task_insert(task("z")).await.unwrap();
    assert_eq!(next(&mut w).await, "z");
}

#[tokio::test]
async fn each_waiter_announces_and_withdraws_for_itself() {
    let db = TestDb::create().await;
    let store = PgStore::from_pool(db.pool().clone());
    let mut long = store.wakeup_subscribe().await.unwrap();
    let mut short = store.wakeup_subscribe().await.unwrap();
    long.announce(&["q".to_owned()], Duration::from_secs(600)).await.unwrap();
    short.announce(&["q".to_owned()], Duration::from_secs(1)).await.unwrap();
    // the short announcement runs out (moved into the past on the server's clock); the long one still
    // makes enqueues notify
    sqlx::query(
        "UPDATE leasehold.waiting SET until = now() - interval '1 second' WHERE until < now() + interval '1 minute'",
    )
    .execute(db.pool())
    .await
    .unwrap();
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM leasehold.waiting WHERE queue = 'q' AND until > now()")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(live, 1);
    store.task_insert(task("q")).await.unwrap();
    assert_eq!(next(&mut long).await, "q");
    assert_eq!(next(&mut short).await, "q");

    // once the long waiter withdraws, nobody waits on q
    long.withdraw().await.unwrap();
    store.task_insert(task("q")).await.unwrap();
    short.announce(&["z".to_owned()], Duration::from_secs(60)).await.unwrap();
    store.task_insert(task("z")).await.unwrap();
    assert_eq!(next(&mut short).await, "z");
}

/// An enqueue that raced a worker's announcement (its statement ran before the announcement, so it
/// notifies nobody, and it committed after the worker's first look for work) is found by the worker's
/// later looks after the announcement, not at its next poll two minutes on.
#[tokio::test]
async fn a_task_committed_just_after_a_worker_began_to_wait_runs_before_the_next_poll() {
    use leasehold::Worker;
    use leasehold_testkit::jobs::{Echo, Probe};
    use leasehold_testkit::wait;
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
