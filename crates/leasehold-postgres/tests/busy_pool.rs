//! Handlers holding every connection of the store's pool: the task leases and the leader lease are still renewed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use leasehold::{Client, EnqueueOptions, Job, JobContext, JobResult, Outcome, Worker};
use leasehold_core::schedule::LeaderAcquireParams;
use leasehold_core::*;
use leasehold_postgres::PgStore;
use leasehold_testkit::conformance::claim;
use leasehold_testkit::jobs::three_second_leases;
use leasehold_testkit::pg::TestDb;
use leasehold_testkit::wait;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};
use tokio::sync::watch;

/// The pool the handlers and the store share, and how many handlers hold a connection of it.
#[derive(Clone)]
struct Shared {
    pool: PgPool,
    gate: watch::Receiver<bool>,
    holding: Arc<AtomicUsize>,
    cancelled: Arc<AtomicUsize>,
}

/// A pool of at most `max` connections on the test's database, whose acquire waits 30 s.
async fn pool_of(db: &TestDb, max: u32) -> PgPool {
    PgPoolOptions::new().max_connections(max).acquire_timeout(Duration::from_secs(30)).connect(db.url()).await.unwrap()
}

/// `holder`'s try for the leader lease "cron", for `secs` seconds.
fn leader(holder: &str, secs: u64) -> LeaderAcquireParams {
    LeaderAcquireParams { name: "cron".into(), holder: holder.into(), ttl: Duration::from_secs(secs) }
}

/// Takes a connection of the shared pool and holds it until its gate opens (or its lease is lost).
#[derive(Serialize, Deserialize)]
struct HoldsConnection;

impl Job for HoldsConnection {
    const KIND: &'static str = "holds-connection";
    type State = Shared;
    async fn run(self, ctx: JobContext<Shared>) -> JobResult {
        let s = ctx.state().clone();
        let _conn = s.pool.acquire().await?;
        s.holding.fetch_add(1, Ordering::SeqCst);
        let mut gate = s.gate.clone();
        tokio::select! {
            _ = gate.wait_for(|open| *open) => Ok(Outcome::Complete),
            _ = ctx.cancelled() => {
                s.cancelled.fetch_add(1, Ordering::SeqCst);
                Err("cancelled while holding a connection".into())
            }
        }
    }
}

/// Every connection of the pool the store was given is lent out for longer than the leases last (L 3
/// s): the worker's wake-up listener holds one of the four, three handlers hold the others, and the
/// fourth handler waits for one. The heartbeat renews the four leases on the store's own connection,
/// nobody is cancelled, and each task completes on its first attempt once the handlers let go. Before,
/// a renewal waited in the pool's queue behind the handlers, and the worker cancelled them when its
/// trust window ended. The renewals are seen on the server (each moves the lease's expiry), not timed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_holding_every_pooled_connection_do_not_stop_renewals() {
    let db = TestDb::create().await;
    let pool = pool_of(&db, 4).await;
    let store = PgStore::from_pool(pool.clone());
    let (open, gate) = watch::channel(false);
    let shared = Shared { pool, gate, holding: Arc::default(), cancelled: Arc::default() };
    let builder = Worker::builder_with_state(store.clone(), shared.clone()).register::<HoldsConnection>();
    let w = three_second_leases(builder).concurrency(4).build().unwrap();
    let ids = Client::new(store.clone())
        .enqueue_many((0..4).map(|_| HoldsConnection), EnqueueOptions::default())
        .await
        .unwrap();
    w.start().await;
    wait::until("every connection of the pool to be lent out", Duration::from_secs(15), || async {
        let lent = shared.pool.size() == 4 && shared.pool.num_idle() == 0;
        (lent && shared.holding.load(Ordering::SeqCst) >= 3).then_some(())
    })
    .await;

    // every lease, as its claim set it; then renewed past that twice over, on the test's own pool
    let expiries = |pool: PgPool| async move {
        let rows = sqlx::query("SELECT lease_expires_at FROM leasehold.tasks WHERE state = 'running'")
            .fetch_all(&pool)
            .await
            .unwrap();
        rows.iter().map(|r| r.get::<chrono::DateTime<chrono::Utc>, _>(0)).collect::<Vec<_>>()
    };
    let claimed = expiries(db.pool().clone()).await;
    assert_eq!(claimed.len(), 4);
    let latest_claim = *claimed.iter().max().unwrap();
    wait::until("every lease to be renewed past twice its ttl", Duration::from_secs(20), || async {
        let now = expiries(db.pool().clone()).await;
        let far = latest_claim + chrono::Duration::seconds(3);
        (now.len() == 4 && now.iter().all(|e| *e > far)).then_some(())
    })
    .await;
    assert_eq!(shared.cancelled.load(Ordering::SeqCst), 0, "a handler was cancelled");

    open.send(true).unwrap();
    for id in ids {
        let rec = wait::until("the task to complete", Duration::from_secs(15), || async {
            Some(store.task_get(id).await.unwrap()).filter(|r| r.state == TaskState::Completed)
        })
        .await;
        assert_eq!((rec.attempt, rec.lease_losses), (1, 0), "task {id}");
    }
    w.stop().await;
    assert_eq!(w.stats().lease_lost, 0);
    store.close().await;
}

/// On a pool of one connection, a claim that discards a task whose payload does not parse (JSON that
/// serde_json cannot read, written by other code) hands its own connection back first, so the discard
/// runs on it. Before, the claim still held it while the discard waited for a connection, until the
/// pool's acquire timed out (30 s here), and the claim's other tasks came back that much later.
#[tokio::test]
async fn a_claim_on_a_pool_of_one_connection_discards_what_it_cannot_read() {
    let db = TestDb::create().await;
    let pool = pool_of(&db, 1).await;
    let store = PgStore::from_pool(pool);
    let tasks = (0..2).map(|n| NewTask::new("k", serde_json::json!({ "n": n }))).collect();
    let ids = store.task_insert_many(tasks).await.unwrap();
    sqlx::query(r#"UPDATE leasehold.tasks SET payload = '{"n": 1e400}' WHERE id = $1"#)
        .bind(ids[0].0)
        .execute(db.pool())
        .await
        .unwrap();
    let claimed = tokio::time::timeout(Duration::from_secs(10), store.task_claim(claim(10)))
        .await
        .expect("the claim's discard waited for the claim's own connection")
        .unwrap();
    assert_eq!(claimed.tasks.iter().map(|t| t.lease.task_id).collect::<Vec<_>>(), vec![ids[1]]);
    let state: String = sqlx::query_scalar("SELECT state FROM leasehold.tasks WHERE id = $1")
        .bind(ids[0].0)
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(state, "discarded");
    store.close().await;
}

/// The scheduler's leader lease is taken and renewed on a connection of the store's own when the pool
/// has none idle: with the one connection of the store's pool held elsewhere (as by a handler's long
/// transaction), the leader still takes its lease and renews it well within its 3 s. Before, each try
/// waited in the pool's queue until the connection came back or the acquire timed out (30 s here),
/// past the lease's end.
#[tokio::test]
async fn the_leader_lease_is_renewed_while_the_pool_is_held() {
    let db = TestDb::create().await;
    let pool = pool_of(&db, 1).await;
    let store = PgStore::from_pool(pool.clone());
    let held = pool.acquire().await.unwrap();
    let lead = || async {
        let answer = tokio::time::timeout(Duration::from_secs(2), store.leader_acquire(leader("a", 3))).await;
        answer.expect("the leader lease waited for the held connection").unwrap()
    };
    let token = lead().await.expect("nobody else holds the lease");
    assert_eq!(lead().await, Some(token), "a renewal keeps the term's token");
    let holder: String = sqlx::query_scalar("SELECT holder FROM leasehold.leaders WHERE name = 'cron'")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(holder, "a");
    drop(held);
    store.close().await;
}

/// A leader lease's upsert that waits for the lock on its row (a leader's term check holds it until its
/// transaction ends) does not hold up the renewal of task leases: the two have connections of their own.
/// Here the row is locked by the test, the store's one pooled connection is held, and a contender's
/// try waits on the lock while a task's lease is renewed at once. With one connection for both, the
/// renewal waited behind the blocked upsert.
#[tokio::test]
async fn a_leader_lease_waiting_on_its_row_does_not_hold_up_task_renewals() {
    let db = TestDb::create().await;
    let pool = pool_of(&db, 1).await;
    let store = PgStore::from_pool(pool.clone());
    store.leader_acquire(leader("a", 30)).await.unwrap().expect("the lease is free");
    store.task_insert(NewTask::new("k", serde_json::json!({}))).await.unwrap();
    let lease = store.task_claim(claim(1)).await.unwrap().tasks[0].lease;

    let mut lock = db.pool().begin().await.unwrap();
    sqlx::query("SELECT 1 FROM leasehold.leaders WHERE name = 'cron' FOR SHARE").execute(&mut *lock).await.unwrap();
    let held = pool.acquire().await.unwrap();
    let contender = tokio::spawn({
        let store = store.clone();
        let params = leader("b", 30);
        async move { store.leader_acquire(params).await }
    });
    // the contender's upsert is waiting on the row's lock
    wait::until("the contender to wait on the leader's row", Duration::from_secs(10), || async {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(db.pool())
        .await
        .unwrap();
        (waiting == 1).then_some(())
    })
    .await;
    let renewal = store.lease_renew(LeaseRenewParams { leases: vec![(lease, Duration::from_secs(30))] });
    let renewed = tokio::time::timeout(Duration::from_secs(2), renewal)
        .await
        .expect("the task renewal waited behind the leader lease")
        .unwrap();
    assert_eq!(renewed.renewed, vec![lease]);
    lock.rollback().await.unwrap();
    assert_eq!(contender.await.unwrap().unwrap(), None, "the lease is still a's");
    drop(held);
    store.close().await;
}
