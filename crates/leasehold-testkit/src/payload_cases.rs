//! Conformance cases of what a claim answers for each task's payload: the payload as enqueued, whatever
//! it holds, and a task discarded alone when its payload does not parse, which the worker counts.

use std::time::Duration;

use leasehold::{Client, EnqueueOptions};
use leasehold_core::*;

use crate::backend::Backend;
use crate::conformance::{claim, task, worker};
use crate::jobs::{Echo, Probe};
use crate::wait;

/// A claim answers each task's payload as it was enqueued, whatever it holds: text that needs escaping
/// (quotes, backslashes, control characters, characters beyond U+FFFF), numbers far from the usual (u64
/// and i64 at their ends, the smallest f64, 1.5e300), empty and nested containers, bare scalars, and
/// arrays nested 126 deep (near the 128 levels serde_json reads), which a store that answers its tasks
/// inside a JSON document of its own must still hand over whole.
pub async fn claims_answer_every_payload_as_enqueued<B: Backend>(b: &B) {
    let s = b.store();
    let mut deep = serde_json::json!(1);
    for _ in 0..126 {
        deep = serde_json::json!([deep]);
    }
    let payloads = [
        serde_json::json!({ "text": "quote \" backslash \\ tab \t newline \n bell \u{7} é ✓ 🦀", "": "" }),
        serde_json::json!({ "max": u64::MAX, "min": i64::MIN, "tiny": 5e-324, "big": 1.5e300, "neg": -0.5 }),
        serde_json::json!({ "empty": {}, "list": [], "nested": { "a": [1, { "b": [null, true, false] }] } }),
        serde_json::json!("a bare string"),
        serde_json::json!(null),
        deep,
    ];
    let tasks: Vec<NewTask> = payloads.iter().map(|p| NewTask::new("k", p.clone())).collect();
    s.task_insert_many(tasks).await.unwrap();
    let claimed = s.task_claim(claim(10)).await.unwrap().tasks;
    assert_eq!(claimed.len(), payloads.len());
    for (got, sent) in claimed.iter().zip(&payloads) {
        assert_eq!(&got.payload, sent);
    }
}

/// A task whose payload serde_json cannot read (written by other code: `1e400` is valid JSON, beyond any
/// f64) is discarded by the claim that took it, with why, and its batch's other tasks are claimed as
/// usual: one such payload does not fail the claim and strand every task of it. Its record reads with a
/// null payload and why.
pub async fn a_task_whose_payload_does_not_parse_is_discarded_alone<B: Backend>(b: &B) {
    let s = b.store();
    let ids = s.task_insert_many((0..3).map(|n| task("k", n)).collect()).await.unwrap();
    b.write_payload(ids[1], r#"{"n": 1e400}"#).await;
    let batch = s.task_claim(claim(10)).await.unwrap();
    let claimed: Vec<TaskId> = batch.tasks.iter().map(|t| t.lease.task_id).collect();
    assert_eq!(claimed, vec![ids[0], ids[2]]);
    let cause = DiscardCause::UnreadablePayload;
    assert_eq!(
        batch.discarded,
        vec![ClaimDiscard { task_id: ids[1], queue: DEFAULT_QUEUE.into(), kind: "k".into(), cause }]
    );
    // its record can be read, with why in place of the payload (before, reading it failed as well)
    let rec = s.task_get(ids[1]).await.unwrap();
    assert_eq!((rec.state, rec.attempt, &rec.payload), (TaskState::Discarded, 1, &serde_json::Value::Null));
    let why = rec.payload_error.expect("the record says why its payload is null");
    assert!(why.contains("payload does not parse"), "{why}");
    assert!(rec.errors.len() == 1 && rec.errors[0].message.contains("payload does not parse"), "{:?}", rec.errors);
    assert_eq!(s.task_get(ids[0]).await.unwrap().payload_error, None);
    assert!(s.task_claim(claim(10)).await.unwrap().tasks.is_empty());
}

/// One claim that discards for both causes lists each task once, with its own cause: an expired task on
/// its last attempt and a task whose payload does not parse, beside a task it claims.
pub async fn a_claim_lists_each_discard_with_its_cause<B: Backend>(b: &B) {
    let s = b.store();
    let exhausted = s.task_insert(NewTask { max_attempts: 1, ..task("k", 0) }).await.unwrap();
    assert_eq!(s.task_claim(claim(1)).await.unwrap().tasks.len(), 1);
    b.expire_lease(exhausted).await;
    let ids = s.task_insert_many((1..3).map(|n| task("k", n)).collect()).await.unwrap();
    b.write_payload(ids[0], r#"{"n": 1e400}"#).await;
    let batch = s.task_claim(claim(10)).await.unwrap();
    assert_eq!(batch.tasks.iter().map(|t| t.lease.task_id).collect::<Vec<_>>(), vec![ids[1]]);
    let mut discarded: Vec<(TaskId, DiscardCause)> = batch.discarded.iter().map(|d| (d.task_id, d.cause)).collect();
    discarded.sort_by_key(|(id, _)| *id);
    let expected = vec![(exhausted, DiscardCause::LeaseLostOnLastAttempt), (ids[0], DiscardCause::UnreadablePayload)];
    assert_eq!(discarded, expected);
}

/// A worker counts the tasks its claims discarded among its discards: here one whose payload does not
/// parse, claimed with two others that complete. Before, such a discard was recorded on the task only,
/// and the worker's stats and metrics never showed it.
pub async fn a_worker_counts_what_its_claims_discard<B: Backend>(b: &B) {
    let client = Client::new(b.store());
    let ids = client.enqueue_many((0..3).map(|n| Echo { n }), EnqueueOptions::default()).await.unwrap();
    b.write_payload(ids[1], r#"{"n": 1e400}"#).await;
    let w = worker(b, Probe::default()).build().unwrap();
    w.start().await;
    wait::until("the readable tasks to complete", Duration::from_secs(15), || async {
        (w.stats().completed >= 2).then_some(())
    })
    .await;
    w.stop().await;
    let st = w.stats();
    assert_eq!((st.claimed, st.completed, st.discarded), (2, 2, 1), "{st:?}");
}
