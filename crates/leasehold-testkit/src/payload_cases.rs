//! Conformance cases of what a claim answers for each task's payload: the payload as enqueued, whatever
//! it holds, and a task discarded alone when its payload does not parse.

use leasehold_core::*;

use crate::backend::Backend;
use crate::conformance::{claim, task};

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
/// usual: one such payload does not fail the claim and strand every task of it.
pub async fn a_task_whose_payload_does_not_parse_is_discarded_alone<B: Backend>(b: &B) {
    let s = b.store();
    let ids = s.task_insert_many((0..3).map(|n| task("k", n)).collect()).await.unwrap();
    b.write_payload(ids[1], r#"{"n": 1e400}"#).await;
    let batch = s.task_claim(claim(10)).await.unwrap();
    let claimed: Vec<TaskId> = batch.tasks.iter().map(|t| t.lease.task_id).collect();
    assert_eq!(claimed, vec![ids[0], ids[2]]);
    // reading the task's record parses its payload too: it is given a readable one to be looked at
    b.write_payload(ids[1], r#"{"n": 1}"#).await;
    let rec = s.task_get(ids[1]).await.unwrap();
    assert_eq!((rec.state, rec.attempt), (TaskState::Discarded, 1));
    assert!(rec.errors.len() == 1 && rec.errors[0].message.contains("payload does not parse"), "{:?}", rec.errors);
    assert!(s.task_claim(claim(10)).await.unwrap().tasks.is_empty());
}
