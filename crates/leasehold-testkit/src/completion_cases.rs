//! Conformance cases of completion batches: a batch answers each task for itself, and completions that
//! delete their tasks (`TaskCompleteParams::delete_completed`, `WorkerConfig::delete_completed`) are
//! fenced like the completions that keep them, and keep what an idempotency key or the handler's own
//! transaction still needs.

use leasehold::{Client, EnqueueOptions};
use leasehold_core::*;

use crate::backend::Backend;
use crate::conformance::{claim, keyed, task, wait_state, worker};
use crate::jobs::*;
use crate::wait;

fn deleting(tasks: Vec<(TaskLease, Option<serde_json::Value>)>) -> TaskCompleteParams {
    TaskCompleteParams { tasks, delete_completed: true }
}

fn is_gone(r: Result<TaskRecord>) -> bool {
    matches!(r, Err(Error::NotFound(_)))
}

/// A deleting completion deletes the unkeyed tasks it completes, keeps a keyed one completed with its
/// result (its key still finds it), and writes nothing for a holder whose lease was taken over.
pub async fn deleting_completions_keep_only_keyed_tasks<B: Backend>(b: &B) {
    let s = b.store();
    let plain = s.task_insert(task("k", 1)).await.unwrap();
    let with_result = s.task_insert(task("k", 2)).await.unwrap();
    let held = s.task_insert_idempotent(keyed("k", 3, "delete-1")).await.unwrap().id;
    let taken = s.task_insert(task("k", 4)).await.unwrap();
    let got = s.task_claim(claim(10)).await.unwrap().tasks;
    assert_eq!(got.len(), 4);
    let lease = |id: TaskId| got.iter().find(|c| c.lease.task_id == id).unwrap().lease;
    // the first holder of `taken` stalls past its lease; another claim takes the task over
    b.expire_lease(taken).await;
    let fresh = s.task_claim(claim(10)).await.unwrap().tasks;
    assert_eq!(fresh.len(), 1);
    assert!(fresh[0].taken_over && fresh[0].lease.task_id == taken);
    let result = Some(serde_json::json!({ "ok": true }));
    let st = s
        .task_complete_many(deleting(vec![
            (lease(plain), None),
            (lease(with_result), result.clone()),
            (lease(held), result.clone()),
            (lease(taken), None),
        ]))
        .await
        .unwrap();
    use CompletionStatus::*;
    assert_eq!(st, vec![Completed, Completed, Completed, LeaseLost]);
    assert!(is_gone(s.task_get(plain).await), "a completed task without a key was kept");
    assert!(is_gone(s.task_get(with_result).await), "a completed task with a result was kept");
    let rec = s.task_get(held).await.unwrap();
    assert_eq!((rec.state, rec.result), (TaskState::Completed, result));
    let rec = s.task_get(taken).await.unwrap();
    assert_eq!((rec.state, rec.fence), (TaskState::Running, Some(fresh[0].lease.fence)), "a zombie deleted the task");
    assert_eq!(s.task_insert_idempotent(keyed("k", 3, "delete-1")).await.unwrap().id, held);
    // a repeat: the keyed task shows it was completed; nothing is left of the others
    let st = s.task_complete_many(deleting(vec![(lease(held), None), (lease(plain), None)])).await.unwrap();
    assert_eq!(st, vec![AlreadyCompleted, LeaseLost]);
    // the current holder completes it, and the zombie's token, given beside it, still writes nothing
    let st = s.task_complete_many(deleting(vec![(lease(taken), None), (fresh[0].lease, None)])).await.unwrap();
    assert_eq!(st, vec![LeaseLost, Completed]);
    assert!(is_gone(s.task_get(taken).await));
    // a batch of one keyed task (a statement of its own on PostgreSQL) keeps it, with its result
    let one = s.task_insert_idempotent(keyed("k", 5, "delete-3")).await.unwrap().id;
    let got = s.task_claim(claim(10)).await.unwrap().tasks;
    assert_eq!(got.len(), 1);
    let result = Some(serde_json::json!(5));
    let st = s.task_complete_many(deleting(vec![(got[0].lease, result.clone())])).await.unwrap();
    assert_eq!(st, vec![Completed]);
    let rec = s.task_get(one).await.unwrap();
    assert_eq!((rec.state, rec.result), (TaskState::Completed, result));
}

/// A deleting batch whose tasks are all unkeyed and held deletes them all, and one whose tasks are all
/// keyed and held keeps them all completed, each answered as completed (a store may answer the first
/// with one count of the rows it deleted, and must still write the second, where that count is zero).
pub async fn deleting_batches_of_alike_tasks_answer_each_task<B: Backend>(b: &B) {
    let s = b.store();
    let plain = s.task_insert_many((0..2).map(|n| task("k", n)).collect()).await.unwrap();
    let mut held = Vec::new();
    for n in 0..2 {
        held.push(s.task_insert_idempotent(keyed("k", 10 + n, &format!("delete-count-{n}"))).await.unwrap().id);
    }
    let got = s.task_claim(claim(10)).await.unwrap().tasks;
    assert_eq!(got.len(), 4);
    let leases = |ids: &[TaskId]| -> Vec<(TaskLease, Option<serde_json::Value>)> {
        ids.iter().map(|id| (got.iter().find(|c| c.lease.task_id == *id).unwrap().lease, None)).collect()
    };
    use CompletionStatus::*;
    assert_eq!(s.task_complete_many(deleting(leases(&plain))).await.unwrap(), vec![Completed, Completed]);
    for id in &plain {
        assert!(is_gone(s.task_get(*id).await), "a completed task without a key was kept");
    }
    assert_eq!(s.task_complete_many(deleting(leases(&held))).await.unwrap(), vec![Completed, Completed]);
    for id in &held {
        assert_eq!(s.task_get(*id).await.unwrap().state, TaskState::Completed, "a keyed task was not completed");
    }
}

/// A worker set to delete completed tasks deletes the unkeyed ones, keeps keyed ones completed with
/// their results, and leaves a task its handler completed in its own transaction completed.
pub async fn worker_deletes_the_tasks_it_completes<B: Backend>(b: &B) {
    let client = Client::new(b.store());
    let probe = Probe { completer: Some(b.transactional_completer()), ..Probe::default() };
    let w = worker(b, probe).delete_completed(true).build().unwrap();
    assert!(w.config().delete_completed);
    w.start().await;
    let plain = client.enqueue_many((0..10).map(|n| Echo { n }), EnqueueOptions::default()).await.unwrap();
    let held =
        client.enqueue_with(Echo { n: 77 }, EnqueueOptions::default().idempotency_key("delete-2")).await.unwrap();
    let in_tx = client.enqueue(CompletesInTx).await.unwrap();
    let rec = wait_state(client.store(), held, TaskState::Completed).await;
    assert_eq!(rec.result, Some(serde_json::json!(77)));
    wait_state(client.store(), in_tx, TaskState::Completed).await;
    for id in plain {
        wait::until(&format!("task {id} to be deleted"), std::time::Duration::from_secs(15), || async {
            is_gone(client.store().task_get(id).await).then_some(())
        })
        .await;
    }
    w.stop().await;
    // the worker's own completion, after the handler's transaction completed it, deleted nothing
    assert_eq!(client.store().task_get(in_tx).await.unwrap().state, TaskState::Completed);
    assert_eq!(b.effect_count(in_tx).await, 1);
    let st = w.stats();
    assert_eq!((st.completed, st.lease_lost, st.write_errors), (12, 0, 0));
}

/// A batch of plain completions (no results: a store may answer such a batch with one count) in which
/// one lease was lost answers each task for itself: the others completed by this very batch, the lost
/// one refused and left to its new holder. A store that counted first and then answered the whole batch
/// again task by task would call the others completed already.
pub async fn a_plain_batch_with_a_lost_lease_answers_each_task<B: Backend>(b: &B) {
    let s = b.store();
    let ids = s.task_insert_many((0..3).map(|n| task("k", n)).collect()).await.unwrap();
    let claimed = s.task_claim(claim(3)).await.unwrap().tasks;
    assert_eq!(claimed.iter().map(|t| t.lease.task_id).collect::<Vec<_>>(), ids);
    b.expire_lease(ids[1]).await;
    let taken_over = s.task_claim(claim(1)).await.unwrap().tasks;
    assert_eq!(taken_over.len(), 1);
    let batch = claimed.iter().map(|t| (t.lease, None)).collect();
    let st = s.task_complete_many(TaskCompleteParams { tasks: batch, delete_completed: false }).await.unwrap();
    use CompletionStatus::*;
    assert_eq!(st, vec![Completed, LeaseLost, Completed]);
    assert_eq!(s.task_get(ids[1]).await.unwrap().state, TaskState::Running, "the new holder's task was left alone");
    let batch = vec![(taken_over[0].lease, None), (claimed[0].lease, None)];
    let st = s.task_complete_many(TaskCompleteParams { tasks: batch, delete_completed: false }).await.unwrap();
    assert_eq!(st, vec![Completed, AlreadyCompleted]);
    for id in ids {
        assert_eq!(s.task_get(id).await.unwrap().state, TaskState::Completed);
    }
}
