//! Wake-ups on demand: enqueues notify only the queues a worker announced it waits on, for as long as
//! the announcement lasts. Notifications arrive in commit order, so "the first one received names the
//! announced queue" proves that the enqueues before it into other queues sent none, without waiting
//! for a notification that might still come.

use std::time::Duration;

use leasehold_core::*;
use leasehold_postgres::PgStore;
use leasehold_testkit::pg::TestDb;
use leasehold_testkit::wait;

fn task(queue: &str) -> NewTask {
    NewTask { queue: queue.to_owned(), ..NewTask::new("k", serde_json::json!({})) }
}

async fn recv(w: &mut Box<dyn Wakeup>) -> Hint {
    tokio::time::timeout(Duration::from_secs(10), w.recv()).await.expect("no wake-up arrived").unwrap()
}

/// The next hint's queue; a hand-off fails the test.
async fn next(w: &mut Box<dyn Wakeup>) -> String {
    match recv(w).await {
        Hint::Available(queue) => queue,
        Hint::Handoff(h) => panic!("a hand-off where a hint was expected: {h:?}"),
    }
}

/// The next hand-off; a hint fails the test.
async fn handoff(w: &mut Box<dyn Wakeup>) -> Handoff {
    match recv(w).await {
        Hint::Handoff(h) => *h,
        Hint::Available(queue) => panic!("a hint for {queue:?} where a hand-off was expected"),
    }
}

/// The next hand-off, past any hints.
async fn handoff_among_hints(w: &mut Box<dyn Wakeup>) -> Handoff {
    loop {
        if let Hint::Handoff(h) = recv(w).await {
            return *h;
        }
    }
}

/// Two subscriptions, of the workers `w-a` and `w-b`, each with an open offer (number 1) on `queues`.
async fn two_offering_waiters(store: &PgStore, queues: &[String]) -> (Box<dyn Wakeup>, Box<dyn Wakeup>) {
    (offering_waiter(store, queues, offer(1, "w-a")).await, offering_waiter(store, queues, offer(1, "w-b")).await)
}

/// A new subscription waiting on `queues` for a minute, with `offer` open.
async fn offering_waiter(store: &PgStore, queues: &[String], offer: HandoffOffer) -> Box<dyn Wakeup> {
    let mut w = store.wakeup_subscribe().await.unwrap();
    w.announce(queues, Duration::from_secs(60), Some(&offer)).await.unwrap();
    w
}

fn offer(number: u64, worker: &str) -> HandoffOffer {
    HandoffOffer {
        number,
        worker_id: worker.to_owned(),
        lease_ttl: Duration::from_secs(30),
        max_age: Duration::from_millis(7_500),
    }
}

#[tokio::test]
async fn enqueues_wake_only_the_queues_a_worker_waits_on() {
    let db = TestDb::create().await;
    let store = PgStore::from_pool(db.pool().clone());
    let mut w = store.wakeup_subscribe().await.unwrap();
    w.announce(&["w".to_owned()], Duration::from_secs(60), None).await.unwrap();

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
    w.announce(&["z".to_owned()], Duration::from_secs(60), None).await.unwrap();
    store.task_insert(task("z")).await.unwrap();
    assert_eq!(next(&mut w).await, "z");
}

#[tokio::test]
async fn each_waiter_announces_and_withdraws_for_itself() {
    let db = TestDb::create().await;
    let store = PgStore::from_pool(db.pool().clone());
    let mut long = store.wakeup_subscribe().await.unwrap();
    let mut short = store.wakeup_subscribe().await.unwrap();
    long.announce(&["q".to_owned()], Duration::from_secs(600), None).await.unwrap();
    short.announce(&["q".to_owned()], Duration::from_secs(1), None).await.unwrap();
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
    short.announce(&["z".to_owned()], Duration::from_secs(60), None).await.unwrap();
    store.task_insert(task("z")).await.unwrap();
    assert_eq!(next(&mut short).await, "z");
}

/// An enqueue that finds a waiting worker's offer claims its task for that worker in its own statement:
/// the task is running under a new token and a lease of the offered length, sent whole to the waiter, and
/// the offer is spent. What a hand-off never takes: a task due later, one with a single attempt, one
/// too large for a notification (by its payload, its names, or the way jsonb prints its numbers), a
/// batch, an enqueue in the application's transaction, a stale offer.
#[tokio::test]
async fn an_enqueue_hands_its_task_to_a_worker_that_offered_to_take_one() {
    let db = TestDb::create().await;
    let store = PgStore::from_pool(db.pool().clone());
    let queues = ["q".to_owned()];
    let mut w = offering_waiter(&store, &queues, offer(7, "w-1")).await;

    let t = NewTask { payload: serde_json::json!({"n": 1, "s": "x"}), priority: 3, ..task("q") };
    let id = store.task_insert(t.clone()).await.unwrap();
    let h = handoff(&mut w).await;
    assert_eq!(h.offer, 7);
    let got = &h.task;
    assert_eq!((got.lease.task_id, &got.kind, &got.queue, &got.payload), (id, &t.kind, &t.queue, &t.payload));
    assert_eq!((got.attempt, got.max_attempts, got.taken_over), (1, t.max_attempts, false));
    assert_eq!(got.lease_ttl, Duration::from_secs(30));
    let rec = store.task_get(id).await.unwrap();
    assert_eq!((rec.state, rec.attempt, rec.fence), (TaskState::Running, 1, Some(got.lease.fence)));
    assert_eq!(rec.claimed_by.as_deref(), Some("w-1"));
    assert_eq!(rec.run_at, got.run_at);
    let lease_ms = (rec.lease_expires_at.unwrap() - chrono::Utc::now()).num_milliseconds();
    assert!((25_000..=30_000).contains(&lease_ms), "{lease_ms}");

    // the offer is spent: the next enqueue wakes the waiter, and a claim takes the task, with a later token
    let later = store.task_insert(task("q")).await.unwrap();
    assert_eq!(next(&mut w).await, "q");
    let claim = TaskClaimParams {
        queues: queues.to_vec(),
        limit: 10,
        default_lease_ttl: Duration::from_secs(30),
        worker_id: "w-2".into(),
    };
    let claimed = store.task_claim(claim.clone()).await.unwrap().tasks;
    assert_eq!(claimed.iter().map(|c| c.lease.task_id).collect::<Vec<_>>(), vec![later]);
    assert!(claimed[0].lease.fence > got.lease.fence);
    // the handed task is held like a claimed one: fenced writes by its token go through
    let done = store
        .task_complete_many(TaskCompleteParams { tasks: vec![(got.lease, None)], delete_completed: false })
        .await
        .unwrap();
    assert_eq!(done, vec![CompletionStatus::Completed]);

    // none of these takes the new offer: each is inserted available, and the due ones wake the waiter
    w.announce(&queues, Duration::from_secs(60), Some(&offer(8, "w-1"))).await.unwrap();
    let mut untaken = vec![
        store.task_insert(NewTask { delay: Some(Duration::from_secs(3600)), ..task("q") }).await.unwrap(),
        store.task_insert(NewTask { max_attempts: 1, ..task("q") }).await.unwrap(),
        store.task_insert(NewTask { payload: serde_json::json!({"s": "x".repeat(7_000)}), ..task("q") }).await.unwrap(),
        // 360 bytes of compact JSON, about 9,000 as jsonb prints it
        store.task_insert(NewTask { payload: serde_json::json!(vec![1e300; 30]), ..task("q") }).await.unwrap(),
        // 500 control characters, 3,000 bytes once escaped, and a payload of 3,000
        store
            .task_insert(NewTask {
                kind: "\u{1}".repeat(500),
                payload: serde_json::json!("y".repeat(3_000)),
                ..task("q")
            })
            .await
            .unwrap(),
    ];
    untaken.extend(store.task_insert_many(vec![task("q"), task("q")]).await.unwrap());
    let mut tx = db.pool().begin().await.unwrap();
    untaken.push(leasehold_postgres::tx::task_insert_in(&mut tx, task("q")).await.unwrap());
    tx.commit().await.unwrap();
    for expected in ["max attempts 1", "large payload", "printed numbers", "escaped kind", "batch", "transaction"] {
        assert_eq!(next(&mut w).await, "q", "{expected}");
    }
    for id in &untaken {
        assert_eq!(store.task_get(*id).await.unwrap().state, TaskState::Available);
    }
    // an offer made longer ago than a quarter of the lease is not taken either
    sqlx::query("UPDATE leasehold.waiting SET offered_at = now() - interval '8 seconds'")
        .execute(db.pool())
        .await
        .unwrap();
    let stale = store.task_insert(task("q")).await.unwrap();
    assert_eq!(next(&mut w).await, "q");
    assert_eq!(store.task_get(stale).await.unwrap().state, TaskState::Available);
    // a recent one is, still number 8
    sqlx::query("UPDATE leasehold.waiting SET offered_at = now() - interval '6 seconds'")
        .execute(db.pool())
        .await
        .unwrap();
    let fresh = store.task_insert(task("q")).await.unwrap();
    let h = handoff(&mut w).await;
    assert_eq!((h.offer, h.task.lease.task_id), (8, fresh));
}

/// A lease handed over starts no earlier than the offer: the worker counts its trust from when it sent
/// the offer, which may be later than the enqueue's own start (the statement's `now()`); and a task that
/// names its own lease gets that one. A task given back is available at once, the attempt not counted.
#[tokio::test]
async fn a_lease_handed_over_runs_from_the_offer_at_the_earliest() {
    let db = TestDb::create().await;
    let store = PgStore::from_pool(db.pool().clone());
    let queues = ["q".to_owned()];
    let mut w = offering_waiter(&store, &queues, offer(1, "w-1")).await;
    // as if the announcement ran 20 s after the enqueue's statement began
    sqlx::query("UPDATE leasehold.waiting SET offered_at = now() + interval '20 seconds'")
        .execute(db.pool())
        .await
        .unwrap();
    let t = NewTask { lease_ttl: Some(Duration::from_secs(10)), ..task("q") };
    let id = store.task_insert(t).await.unwrap();
    let h = handoff(&mut w).await;
    assert_eq!(h.task.lease_ttl, Duration::from_secs(10));
    let from_offer: bool = sqlx::query_scalar(
        "SELECT t.lease_expires_at = w.offered_at + interval '10 seconds'
           FROM leasehold.tasks AS t, leasehold.waiting AS w WHERE t.id = $1",
    )
    .bind(id.0)
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert!(from_offer, "the lease ran from the enqueue's start, not from the offer");

    let released = store.task_release(TaskReleaseParams { leases: vec![h.task.lease], lease_lost: false }).await;
    assert_eq!(released.unwrap().len(), 1);
    let rec = store.task_get(id).await.unwrap();
    assert_eq!((rec.state, rec.attempt, rec.lease_losses), (TaskState::Available, 0, 0));
}

/// Two waiters with offers on one queue take one enqueue each; a new subscription of the same worker
/// (its listening connection broke and it subscribed again) closes the offers of the old one, so nothing
/// is handed to a channel nobody listens on.
#[tokio::test]
async fn each_offer_takes_one_task_and_a_workers_new_subscription_closes_its_old_offers() {
    let db = TestDb::create().await;
    let store = PgStore::from_pool(db.pool().clone());
    let queues = ["q".to_owned()];
    let (mut a, mut b) = two_offering_waiters(&store, &queues).await;
    let first = store.task_insert(task("q")).await.unwrap();
    let second = store.task_insert(task("q")).await.unwrap();
    let (ha, hb) = (handoff(&mut a).await, handoff(&mut b).await);
    let mut got = vec![ha.task.lease.task_id, hb.task.lease.task_id];
    got.sort_by_key(|id| id.0);
    assert_eq!(got, vec![first, second]);
    assert_ne!(ha.task.lease.fence, hb.task.lease.fence);

    // w-a subscribes again; its old subscription still listens here, but must not be handed anything
    a.announce(&queues, Duration::from_secs(60), Some(&offer(2, "w-a"))).await.unwrap();
    let mut a2 = store.wakeup_subscribe().await.unwrap();
    a2.announce(&queues, Duration::from_secs(60), Some(&offer(1, "w-a"))).await.unwrap();
    let third = store.task_insert(task("q")).await.unwrap();
    let h = handoff(&mut a2).await;
    assert_eq!(h.task.lease.task_id, third);
    // no offer is left open: the next enqueue notifies, and that is the first the old subscription hears
    store.task_insert(task("q")).await.unwrap();
    assert_eq!(next(&mut a).await, "q", "the old subscription was handed a task");
}

/// An idle worker on PostgreSQL starts the tasks enqueued for it as they are handed over, each under
/// the lease its enqueue claimed, with no claim of its own (its poll is two minutes away), and offers
/// again after each.
#[tokio::test]
async fn an_idle_worker_runs_the_tasks_handed_to_it() {
    use leasehold::Client;
    use leasehold_testkit::jobs::Echo;

    let db = TestDb::create().await;
    let store = PgStore::from_pool(db.pool().clone());
    let worker = idle_worker(&store).build().unwrap();
    worker.start().await;
    let client = Client::new(store.clone());
    for n in 0..3 {
        open_offers(&db, 1).await;
        let id = client.enqueue(Echo { n }).await.unwrap();
        let rec = wait::until("the handed task to run", Duration::from_secs(10), || async {
            let rec = store.task_get(id).await.unwrap();
            (rec.state == TaskState::Completed).then_some(rec)
        })
        .await;
        assert_eq!((rec.attempt, rec.lease_losses), (1, 0));
    }
    open_offers(&db, 1).await;
    worker.stop().await;
    let stats = worker.stats();
    assert_eq!((stats.handed_over, stats.claimed, stats.completed), (3, 3, 3), "{stats:?}");
    let offers: i64 = sqlx::query_scalar("SELECT count(*) FROM leasehold.waiting").fetch_one(db.pool()).await.unwrap();
    assert_eq!(offers, 0, "the stopped worker withdrew");
}

/// A worker of echo jobs whose poll is two minutes away, so that only a wake-up or a hand-off explains a
/// task it runs at once; with a long lease, so that its offer needs no renewal while a test runs (an
/// enqueue that meets a renewal in progress skips the offer's locked row).
fn idle_worker(store: &PgStore) -> leasehold::WorkerBuilder<PgStore, leasehold_testkit::jobs::Probe> {
    leasehold::Worker::builder_with_state(store.clone(), leasehold_testkit::jobs::Probe::default())
        .register::<leasehold_testkit::jobs::Echo>()
        .poll_interval(Duration::from_secs(120))
        .lease_ttl(Duration::from_secs(600))
}

/// Waits until `n` offers are open.
async fn open_offers(db: &TestDb, n: i64) {
    wait::until("the workers to offer", Duration::from_secs(10), || async {
        let open: i64 = sqlx::query_scalar("SELECT count(*) FROM leasehold.waiting WHERE offer IS NOT NULL")
            .fetch_one(db.pool())
            .await
            .unwrap();
        (open == n).then_some(())
    })
    .await;
}

/// A worker that filled up after it offered gives a task handed to it back at once, the attempt not
/// counted, rather than holding it until its lease expires; it runs it once a slot is free.
#[tokio::test]
async fn a_worker_that_filled_up_gives_a_task_handed_to_it_back() {
    use leasehold::Client;
    use leasehold_testkit::jobs::{Echo, UntilCancelled};

    let db = TestDb::create().await;
    let store = PgStore::from_pool(db.pool().clone());
    let worker = idle_worker(&store).register::<UntilCancelled>().concurrency(1).build().unwrap();
    worker.start().await;
    open_offers(&db, 1).await;
    // enqueued in a transaction, so not handed over: the worker is woken, claims it and is full, and its
    // offer stays open
    let mut tx = db.pool().begin().await.unwrap();
    let busy = NewTask::new("until_cancelled", serde_json::json!({"max_ms": 10_000}));
    let busy = leasehold_postgres::tx::task_insert_in(&mut tx, busy).await.unwrap();
    tx.commit().await.unwrap();
    wait::until("the worker to be busy", Duration::from_secs(10), || async {
        (store.task_get(busy).await.unwrap().state == TaskState::Running).then_some(())
    })
    .await;
    let client = Client::new(store.clone());
    let handed = client.enqueue(Echo { n: 1 }).await.unwrap();
    let rec = wait::until("the handed task to be given back", Duration::from_secs(10), || async {
        let rec = store.task_get(handed).await.unwrap();
        (rec.state != TaskState::Running).then_some(rec)
    })
    .await;
    assert_eq!((rec.state, rec.attempt, rec.lease_losses), (TaskState::Available, 0, 0));
    assert!(rec.fence.is_some(), "it was handed over");
    wait::until("the given-back task to run", Duration::from_secs(30), || async {
        (store.task_get(handed).await.unwrap().state == TaskState::Completed).then_some(())
    })
    .await;
    worker.stop().await;
    assert_eq!(worker.stats().handed_over, 0);
}

/// Enqueues racing for two offers hand over two tasks, and insert the rest available, without errors.
#[tokio::test]
async fn concurrent_enqueues_take_each_offer_once() {
    let db = TestDb::create().await;
    let store = PgStore::from_pool(db.pool().clone());
    let queues = ["q".to_owned()];
    let (mut a, mut b) = two_offering_waiters(&store, &queues).await;
    let enqueues = (0..16).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.task_insert(task("q")).await.unwrap() })
    });
    for e in enqueues.collect::<Vec<_>>() {
        e.await.unwrap();
    }
    // the enqueues that found no offer notified both waiters: their hints come in commit order
    let (ha, hb) = (handoff_among_hints(&mut a).await, handoff_among_hints(&mut b).await);
    assert_ne!(ha.task.lease.task_id, hb.task.lease.task_id);
    let states: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, count(*) FROM leasehold.tasks GROUP BY state ORDER BY state")
            .fetch_all(db.pool())
            .await
            .unwrap();
    assert_eq!(states, vec![("available".to_owned(), 14), ("running".to_owned(), 2)]);
}

/// A worker that made offers stops promptly however many hints other queues' enqueues keep sending on
/// the shared channel while it waits for hand-offs still on their way.
#[tokio::test]
async fn a_worker_stops_promptly_while_hints_keep_coming() {
    let db = TestDb::create().await;
    let store = PgStore::from_pool(db.pool().clone());
    let worker = idle_worker(&store).build().unwrap();
    worker.start().await;
    open_offers(&db, 1).await;
    // another waiter on another queue, so that every enqueue there notifies on the shared channel
    let mut other = store.wakeup_subscribe().await.unwrap();
    other.announce(&["elsewhere".to_owned()], Duration::from_secs(60), None).await.unwrap();
    let stop_hints = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hints = tokio::spawn({
        let (store, stop) = (store.clone(), stop_hints.clone());
        async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                store.task_insert(task("elsewhere")).await.unwrap();
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    tokio::time::timeout(Duration::from_secs(10), worker.stop()).await.expect("the worker did not stop");
    stop_hints.store(true, std::sync::atomic::Ordering::Relaxed);
    hints.await.unwrap();
}

/// A subscription whose listening connection is lost answers an error from then on, rather than being
/// reconnected under the same name behind the worker's back, and closes its offers at once: nothing is
/// handed to a channel nobody listens on.
#[tokio::test]
async fn a_lost_listening_connection_is_reported_and_its_offers_closed() {
    let db = TestDb::create().await;
    let store = PgStore::from_pool(db.pool().clone());
    let queues = ["q".to_owned()];
    let mut w = offering_waiter(&store, &queues, offer(1, "w-1")).await;
    let ended: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE '%waits for work on the queues%'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(ended, 1, "the listening connection");
    let lost = tokio::time::timeout(Duration::from_secs(10), w.recv()).await.expect("the loss went unnoticed");
    assert!(lost.is_err(), "{lost:?}");
    let open: i64 = sqlx::query_scalar("SELECT count(*) FROM leasehold.waiting WHERE offer IS NOT NULL")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(open, 0);
    let id = store.task_insert(task("q")).await.unwrap();
    assert_eq!(store.task_get(id).await.unwrap().state, TaskState::Available);
    assert!(w.recv().await.is_err(), "a lost subscription stays lost");
    assert!(w.announce(&queues, Duration::from_secs(60), None).await.is_err());
}

/// A store that found no worker waiting on a queue enqueues into it with the plainer statement, which
/// hands nothing over but still wakes a worker that began to wait meanwhile, and tells the store so:
/// the next enqueue may hand its task over again.
#[tokio::test]
async fn a_store_tries_hand_offs_only_where_a_worker_was_waiting() {
    let db = TestDb::create().await;
    let store = PgStore::from_pool(db.pool().clone());
    let nobody = store.task_insert(task("q")).await.unwrap();
    assert_eq!(store.task_get(nobody).await.unwrap().state, TaskState::Available);
    let mut w = offering_waiter(&store, &["q".to_owned()], offer(1, "w-1")).await;
    let woken = store.task_insert(task("q")).await.unwrap();
    assert_eq!(next(&mut w).await, "q", "the plainer statement wakes the waiter");
    assert_eq!(store.task_get(woken).await.unwrap().state, TaskState::Available);
    let handed = store.task_insert(task("q")).await.unwrap();
    assert_eq!(handoff(&mut w).await.task.lease.task_id, handed);
}
