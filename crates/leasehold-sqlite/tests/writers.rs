//! The stores of one database file in one process queue their writes on a shared in-process lock
//! (`local.rs`); the application's own transactions still meet them at SQLite's write lock.

use std::time::Duration;

use leasehold_core::{NewTask, TaskState, TaskStore};
use leasehold_sqlite::SqliteStore;
use leasehold_testkit::sqlite::TestFile;

fn task(n: u32) -> NewTask {
    NewTask::new("k", serde_json::json!({ "n": n }))
}

/// Two stores of the same file, written to from many tasks at once: every write lands and none waits
/// on the other store for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_of_one_file_share_their_writes() {
    let file = TestFile::create().await;
    let a = SqliteStore::open(file.path()).await.unwrap();
    let b = SqliteStore::connect(&file.url()).await.unwrap();
    let mut writers = Vec::new();
    for w in 0..8u32 {
        let store = if w % 2 == 0 { a.clone() } else { b.clone() };
        writers.push(tokio::spawn(async move {
            for n in 0..25 {
                store.task_insert(task(w * 100 + n)).await.unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM leasehold_tasks").fetch_one(a.pool()).await.unwrap();
    assert_eq!(n, 200);
}

/// A store write started while the application's write transaction is open (holding SQLite's lock,
/// which the store's in-process lock knows nothing of) proceeds once that transaction commits: neither
/// lock waits on the other for good, and both writes stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_write_waits_for_the_applications_transaction() {
    let file = TestFile::create().await;
    let store = SqliteStore::open(file.path()).await.unwrap();
    let mut tx = store.begin().await.unwrap(); // holds SQLite's write lock
    let id = leasehold_sqlite::tx::task_insert_in(&mut tx, task(1)).await.unwrap();
    let waiting = {
        let store = store.clone();
        tokio::spawn(async move { store.task_insert(task(2)).await })
    };
    tx.commit().await.unwrap();
    let other = tokio::time::timeout(Duration::from_secs(10), waiting).await.unwrap().unwrap().unwrap();
    for id in [id, other] {
        assert_eq!(store.task_get(id).await.unwrap().state, TaskState::Available);
    }
}

/// The store's writes run on one connection it keeps outside the pool: a write whose caller gave up
/// while it waited for SQLite's lock leaves that connection usable for the next write, and once the
/// store is closed its writes fail with an error instead of reopening a connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kept_write_connection_survives_a_cancelled_write_and_closes_with_the_store() {
    let file = TestFile::create().await;
    let s = SqliteStore::open(file.path()).await.unwrap();
    // an application transaction holds SQLite's lock, so the store's batch waits inside its statement
    let mut app = s.begin().await.unwrap();
    sqlx::query("UPDATE leasehold_fence SET value = value WHERE id = 1").execute(&mut *app).await.unwrap();
    let batch = (0..50).map(task).collect::<Vec<_>>();
    let cancelled = tokio::time::timeout(Duration::from_millis(200), s.task_insert_many(batch)).await;
    assert!(cancelled.is_err(), "the batch should still be waiting for SQLite's lock");
    app.rollback().await.unwrap();
    let id = s.task_insert(task(1)).await.unwrap();
    assert_eq!(s.task_get(id).await.unwrap().state, TaskState::Available);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM leasehold_tasks").fetch_one(s.pool()).await.unwrap();
    assert!(n == 1 || n == 51, "the cancelled batch landed whole or not at all, not {n} tasks");
    s.close().await;
    let err =
        tokio::time::timeout(Duration::from_secs(5), s.task_insert(task(2))).await.expect("a write after close hung");
    assert!(err.is_err(), "a write after close succeeded");
}
