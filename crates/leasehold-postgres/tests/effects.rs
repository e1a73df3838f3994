//! Effect records on PostgreSQL when the lease is lost while the effect is under way: the claim of the
//! key cannot see that coming (it reads the task row without locking it), and the completion in the same
//! transaction is what refuses the effect.

use std::collections::HashMap;
use std::time::Duration;

use leasehold::once::Once;
use leasehold_core::*;
use leasehold_testkit::pg::TestDb;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use serde_json::{Value, json};

/// The writes refused for a stale token since the previous snapshot, by the kind of write
/// (`leasehold_stale_writes_rejected_total`): a snapshot hands over each counter's increments since the
/// one before it.
fn stale_writes(snapshotter: &metrics_util::debugging::Snapshotter) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        if let (DebugValue::Counter(n), "leasehold_stale_writes_rejected_total") = (value, key.name()) {
            for label in key.labels().filter(|l| l.key() == "write") {
                *counts.entry(label.value().to_owned()).or_default() += n;
            }
        }
    }
    counts
}

/// A holder claims an effect key and does the effect in its transaction; meanwhile its lease expires and
/// another worker takes the task over. Its completion in the same transaction answers `LeaseLost`, and
/// dropping the transaction takes the effect and the key's claim back: the new holder finds the key free.
/// A later claim of a key by the stale holder is refused at once. Both refusals are counted as stale
/// writes, `complete` and `effect`.
#[tokio::test]
async fn a_lease_lost_during_an_effect_takes_the_effect_back() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();
    let db = TestDb::create().await;
    let store = db.store();
    let id = store.task_insert(NewTask::new("k", json!({}))).await.unwrap();
    let claim = || TaskClaimParams {
        queues: vec![DEFAULT_QUEUE.to_owned()],
        limit: 1,
        default_lease_ttl: Duration::from_secs(30),
        worker_id: "w".into(),
    };
    let first = store.task_claim(claim()).await.unwrap().tasks.remove(0);

    let mut tx = db.pool().begin().await.unwrap();
    let Once::Fresh(key) =
        leasehold::postgres::effect_begin::<Value>(&mut tx, "charge:1", Some(first.lease)).await.unwrap()
    else {
        panic!("the key was free");
    };
    sqlx::query("INSERT INTO effects (task_id, fence, worker) VALUES ($1, $2, 'first')")
        .bind(id.0)
        .bind(first.lease.fence.0)
        .execute(&mut *tx)
        .await
        .unwrap();
    // the lease runs out on the server's clock while the effect is under way, and the task is taken over
    sqlx::query("UPDATE leasehold.tasks SET lease_expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(id.0)
        .execute(db.pool())
        .await
        .unwrap();
    let second = store.task_claim(claim()).await.unwrap().tasks.remove(0);
    assert!(second.taken_over && second.lease.fence > first.lease.fence);

    leasehold::postgres::effect_record(&mut tx, &key, &json!({ "receipt": "first" })).await.unwrap();
    let done = leasehold::postgres::complete_in(&mut tx, first.lease, None).await;
    assert!(matches!(done, Err(Error::LeaseLost { .. })), "{done:?}");
    drop(tx);
    let effects: i64 = sqlx::query_scalar("SELECT count(*) FROM effects").fetch_one(db.pool()).await.unwrap();
    assert_eq!(effects, 0, "the stale holder's effect was kept");

    // the key is free for the holder that counts
    let mut tx = db.pool().begin().await.unwrap();
    let fresh = leasehold::postgres::effect_begin::<Value>(&mut tx, "charge:1", Some(second.lease)).await.unwrap();
    assert!(matches!(fresh, Once::Fresh(_)), "{fresh:?}");
    tx.rollback().await.unwrap();
    // and the stale holder's next claim of a key is refused before any effect
    let mut tx = db.pool().begin().await.unwrap();
    let stale = leasehold::postgres::effect_begin::<Value>(&mut tx, "charge:2", Some(first.lease)).await;
    assert!(matches!(stale, Err(Error::LeaseLost { .. })), "{stale:?}");
    drop(tx);

    let counted = stale_writes(&snapshotter);
    assert_eq!((counted.get("complete"), counted.get("effect")), (Some(&1), Some(&1)), "{counted:?}");
}
