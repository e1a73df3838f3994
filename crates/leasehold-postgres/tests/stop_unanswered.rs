//! A worker stops in bounded time when its store stops answering: every write of its stop gives up after
//! a moment, and the leases it could not hand back run out on their own.

use std::time::Duration;

use leasehold::{Client, EnqueueOptions, Worker};
use leasehold_postgres::PgStore;
use leasehold_testkit::faults::PgCluster;
use leasehold_testkit::jobs::{Probe, UntilCancelled};
use leasehold_testkit::pg::TestDb;
use leasehold_testkit::wait;
use sqlx::postgres::PgConnectOptions;

const APP: &str = "leasehold-stop-unanswered";

/// The server's main process and every session of the worker: frozen together, a new connection hangs
/// as well as a statement, as behind a network partition.
async fn server_pids(db: &TestDb) -> Vec<String> {
    let data: String = sqlx::query_scalar("SELECT setting FROM pg_settings WHERE name = 'data_directory'")
        .fetch_one(db.pool())
        .await
        .unwrap();
    let pid_file = std::fs::read_to_string(std::path::Path::new(&data).join("postmaster.pid")).unwrap();
    let postmaster = pid_file.lines().next().unwrap().trim().to_owned();
    let sessions: Vec<i32> = sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE application_name = $1")
        .bind(APP)
        .fetch_all(db.pool())
        .await
        .unwrap();
    assert!(!sessions.is_empty(), "the worker has no session");
    sessions.iter().map(i32::to_string).chain([postmaster]).collect()
}

fn signal(pids: &[String], sig: &str) {
    for pid in pids {
        let status = std::process::Command::new("kill").arg(format!("-{sig}")).arg(pid).status().unwrap();
        assert!(status.success(), "kill -{sig} {pid}");
    }
}

/// Jobs run, the server stops answering (its sessions and its main process frozen), and the worker is
/// stopped with a shutdown timeout of 1 s: it returns within that, the cancel grace and its stop writes'
/// own limits (2 s each, for the claim in flight, the withdrawal of its wait and the jobs' releases),
/// where it used to wait on a renewal, a claim or a release that never answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stops_in_bounded_time_when_its_store_stops_answering() {
    let cluster = PgCluster::start_new();
    let db = TestDb::create_on(&cluster.url()).await;
    let opts: PgConnectOptions = db.url().parse().unwrap();
    let pool = PgStore::pool_options().connect_with(opts.application_name(APP)).await.unwrap();
    let store = PgStore::from_pool(pool);
    let client = Client::new(store.clone());
    let (grace, shutdown) = (Duration::from_millis(500), Duration::from_secs(1));
    let w = Worker::builder_with_state(store.clone(), Probe::default())
        .register::<UntilCancelled>()
        .concurrency(8)
        .heartbeat_interval(Duration::from_millis(500))
        .poll_interval(Duration::from_millis(200))
        .cancel_grace(grace)
        .shutdown_timeout(shutdown)
        .build()
        .unwrap();
    client.enqueue_many((0..4).map(|_| UntilCancelled { max_ms: 600_000 }), EnqueueOptions::default()).await.unwrap();
    w.start().await;
    wait::until("the jobs to start", Duration::from_secs(15), || async {
        (w.state().started.lock().unwrap().len() == 4).then_some(())
    })
    .await;

    let pids = server_pids(&db).await;
    signal(&pids, "STOP");
    let started = tokio::time::Instant::now();
    let stopped = tokio::time::timeout(Duration::from_secs(60), w.stop()).await;
    let took = started.elapsed();
    signal(&pids, "CONT");
    assert!(stopped.is_ok(), "the worker did not stop within a minute of its store freezing");
    let bound = shutdown + grace + Duration::from_secs(3 * 2 + 2);
    assert!(took <= bound, "the stop took {took:?}, more than {bound:?}");
    assert_eq!(w.state().cancelled.lock().unwrap().len(), 4, "the running jobs were not cancelled");
}

/// A claim that is still waiting for its answer when the worker is stopped (here, on a lock the test
/// holds on the tasks table) gets a moment to answer, and the tasks it claimed are handed back unstarted,
/// their attempt not counted, where they used to be started by a worker already stopping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_answered_during_a_stop_is_handed_back_unstarted() {
    use leasehold_core::{TaskState, TaskStore};
    use leasehold_testkit::jobs::Echo;

    let db = TestDb::create().await;
    let store = db.store();
    let client = Client::new(store.clone());
    let ids = client.enqueue_many((0..3).map(|n| Echo { n }), EnqueueOptions::default()).await.unwrap();
    let w = Worker::builder_with_state(store.clone(), Probe::default())
        .register::<Echo>()
        .poll_interval(Duration::from_millis(200))
        .build()
        .unwrap();
    let mut lock = db.pool().begin().await.unwrap();
    sqlx::query("LOCK TABLE leasehold.tasks IN EXCLUSIVE MODE").execute(&mut *lock).await.unwrap();
    w.start().await;
    let waiting = "SELECT count(*) FROM pg_stat_activity
                    WHERE datname = current_database() AND wait_event_type = 'Lock'";
    wait::until("the worker's claim to wait on the lock", Duration::from_secs(15), || async {
        let n: i64 = sqlx::query_scalar(waiting).fetch_one(db.pool()).await.unwrap();
        (n > 0).then_some(())
    })
    .await;
    let health = w.health();
    let stopping = tokio::spawn(async move { w.stop().await });
    wait::until("the stop to begin", Duration::from_secs(5), || async { (!health.is_running()).then_some(()) }).await;
    lock.commit().await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), stopping).await.expect("the stop ended").unwrap();
    for id in &ids {
        let rec = store.task_get(*id).await.unwrap();
        assert_eq!((rec.state, rec.attempt), (TaskState::Available, 0), "task {id}");
    }
}
