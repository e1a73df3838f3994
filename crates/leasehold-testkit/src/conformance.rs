//! The backend conformance suite: the same behaviour, checked on every store.
//!
//! Each backend's `tests/` expands [`conformance_tests!`](crate::conformance_tests) with a constructor
//! of its [`Backend`]; every case below becomes one test.

use std::collections::HashSet;
use std::time::Duration;

use leasehold::{Client, EnqueueOptions, Worker};
use leasehold_core::schedule::{
    LeaderAcquireParams, LeaderToken, MissedPolicy, OverlapPolicy, ScheduleAction, ScheduleDef, TickOutcome,
};
use leasehold_core::*;

use crate::backend::Backend;
use crate::jobs::*;
use crate::wait;

/// Expands the suite into one `#[tokio::test]` per case, each on a fresh backend from `$make`.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@cases $make;
            enqueue_claim_complete, batch_claim_respects_limit, claims_by_priority_then_run_at,
            future_run_at_waits, retry_records_error_and_backs_off, retry_without_delay_discards,
            snooze_does_not_count_an_attempt, cancel_by_id, rolled_back_enqueue_leaves_no_task,
            fencing_tokens_strictly_increase, zombie_cannot_write, renewal_is_fenced,
            release_makes_available_at_once, invalid_tasks_are_rejected, names_have_one_length_limit,
            missing_task_is_not_found,
            worker_completes_with_result, worker_retries_errors_with_backoff, worker_records_panics,
            worker_follows_outcomes, worker_records_results_and_errors_the_store_cannot_keep,
            worker_discards_undecodable_payloads, worker_retries_unknown_kinds,
            worker_wakes_on_enqueue, worker_cancels_job_when_lease_lost, worker_shutdown_releases_tasks,
            worker_hands_jobs_a_token_that_fires_with_the_lease_and_cancels_only_itself,
            worker_honours_transactional_completion, worker_runs_many_tasks_at_once,
            idempotent_enqueue_returns_the_holder_and_its_result, idempotent_enqueue_refuses_another_payload,
            idempotency_key_is_freed_by_the_states_chosen, idempotency_key_is_remembered_for_its_retention,
            idempotent_enqueues_race_to_one_task, idempotency_keys_are_refused_in_batches,
            effect_record_runs_an_effect_once, effect_claims_are_refused_to_a_lost_lease,
            fenced_application_writes_refuse_older_tokens,
            worker_keeps_short_task_leases, worker_survives_a_panic_while_decoding,
            completion_batch_tells_holders_apart, takeover_on_the_last_attempt_discards,
            a_finished_task_refuses_its_holders_own_token,
            a_taken_over_task_keeps_its_place_in_claim_order,
            discarded_tasks_count_towards_a_claims_limit,
            the_same_keyed_task_sent_again_is_answered_as_itself, keyed_enqueue_in_a_transaction,
            effect_claims_race_to_one_effect, due_and_depth_are_read_without_claiming,
            concurrent_claims_report_contention, retention_prunes_old_finished_tasks_only,
            worker_prunes_finished_tasks_after_its_retention, retention_frees_keys_and_keeps_pruned_holders_fenced,
            batches_keep_each_tasks_fields,
            any_queue_name_is_claimed, a_queue_named_twice_is_claimed_once);
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $crate::conformance_tests!(@in conformance $make; $($case),*);
        $crate::conformance_tests!(@in completion_cases $make;
            deleting_completions_keep_only_keyed_tasks, worker_deletes_the_tasks_it_completes,
            a_plain_batch_with_a_lost_lease_answers_each_task, deleting_batches_of_alike_tasks_answer_each_task);
        $crate::conformance_tests!(@in payload_cases $make;
            claims_answer_every_payload_as_enqueued, a_task_whose_payload_does_not_parse_is_discarded_alone,
            a_claim_lists_each_discard_with_its_cause, a_worker_counts_what_its_claims_discard);
        $crate::conformance_tests!(@in cron_cases $make;
            leader_terms_are_fenced, a_tick_is_recorded_once, schedules_are_defined_and_controlled,
            scheduler_runs_each_tick_once_and_follows_the_missed_policy, scheduler_follows_the_overlap_policy,
            scheduler_obeys_pause_trigger_and_removal, a_dropped_scheduler_stops_leading);
    };
    (@in $module:ident $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let backend = $make.await;
                $crate::$module::$case(&backend).await;
            }
        )*
    };
}

const WAIT: Duration = Duration::from_secs(15);

/// A claim of up to `limit` tasks of the default queue, with leases of 30 s: the suite's, and the stores'
/// own tests'.
pub fn claim(limit: u32) -> TaskClaimParams {
    TaskClaimParams {
        queues: vec![DEFAULT_QUEUE.to_owned()],
        limit,
        default_lease_ttl: Duration::from_secs(30),
        worker_id: "suite".into(),
    }
}

pub(crate) fn task(kind: &str, n: i64) -> NewTask {
    NewTask::new(kind, serde_json::json!({ "n": n }))
}

pub(crate) async fn claim_one<S: TaskStore>(store: &S) -> ClaimedTask {
    let mut got = store.task_claim(claim(1)).await.unwrap().tasks;
    assert_eq!(got.len(), 1, "expected one task to claim");
    got.remove(0)
}

/// Enqueue, claim, complete: the task ends completed with its result, and the claim carried a token.
pub async fn enqueue_claim_complete<B: Backend>(b: &B) {
    let s = b.store();
    let id = s.task_insert(task("k", 1)).await.unwrap();
    let rec = s.task_get(id).await.unwrap();
    assert_eq!((rec.state, rec.attempt, rec.fence), (TaskState::Available, 0, None));
    let c = claim_one(&s).await;
    assert_eq!((c.lease.task_id, c.kind.as_str(), c.attempt, c.taken_over), (id, "k", 1, false));
    assert_eq!(c.payload, serde_json::json!({ "n": 1 }));
    let rec = s.task_get(id).await.unwrap();
    assert_eq!(
        (rec.state, rec.fence, rec.claimed_by.as_deref()),
        (TaskState::Running, Some(c.lease.fence), Some("suite"))
    );
    assert!(rec.lease_expires_at.is_some());
    let st = s
        .task_complete_many(TaskCompleteParams {
            tasks: vec![(c.lease, Some(serde_json::json!("ok")))],
            delete_completed: false,
        })
        .await
        .unwrap();
    assert_eq!(st, vec![CompletionStatus::Completed]);
    let rec = s.task_get(id).await.unwrap();
    assert_eq!((rec.state, rec.result), (TaskState::Completed, Some(serde_json::json!("ok"))));
    assert!(rec.finalized_at.is_some() && rec.lease_expires_at.is_none());
    assert!(s.task_claim(claim(10)).await.unwrap().tasks.is_empty());
    // completed without a result: none is stored
    let plain = s.task_insert(task("k", 2)).await.unwrap();
    let c = claim_one(&s).await;
    s.task_complete_many(TaskCompleteParams { tasks: vec![(c.lease, None)], delete_completed: false }).await.unwrap();
    assert_eq!(s.task_get(plain).await.unwrap().result, None);
}

/// A claim takes at most its limit, and every task exactly once.
pub async fn batch_claim_respects_limit<B: Backend>(b: &B) {
    let s = b.store();
    let ids = s.task_insert_many((0..25).map(|n| task("k", n)).collect()).await.unwrap();
    assert_eq!(ids.len(), 25);
    let mut seen = HashSet::new();
    for want in [10, 10, 5, 0] {
        let got = s.task_claim(claim(10)).await.unwrap().tasks;
        assert_eq!(got.len(), want);
        for c in got {
            assert!(seen.insert(c.lease.task_id), "claimed twice");
        }
    }
    assert_eq!(seen, ids.into_iter().collect());
}

/// Lower priority first, then earlier `run_at`: claimed one at a time, the order shows.
pub async fn claims_by_priority_then_run_at<B: Backend>(b: &B) {
    let s = b.store();
    let now = chrono::Utc::now() - chrono::Duration::seconds(10);
    let mk = |p: i16, secs: i64| NewTask {
        priority: p,
        run_at: Some(now + chrono::Duration::seconds(secs)),
        ..task("k", 0)
    };
    let lazy = s.task_insert(mk(5, 0)).await.unwrap();
    let late_urgent = s.task_insert(mk(1, 5)).await.unwrap();
    let early_urgent = s.task_insert(mk(1, 1)).await.unwrap();
    let middle = s.task_insert(mk(3, -5)).await.unwrap();
    let mut order = Vec::new();
    for _ in 0..4 {
        order.push(claim_one(&s).await.lease.task_id);
    }
    assert_eq!(order, vec![early_urgent, late_urgent, middle, lazy]);
    // a batch claim takes the best ones
    let ids = [s.task_insert(mk(9, 0)).await.unwrap(), s.task_insert(mk(0, 0)).await.unwrap()];
    let got = s.task_claim(claim(1)).await.unwrap().tasks;
    assert_eq!(got[0].lease.task_id, ids[1]);
}

/// A task is not claimed before its `run_at` (set directly or by a delay).
pub async fn future_run_at_waits<B: Backend>(b: &B) {
    let s = b.store();
    let delayed = s.task_insert(NewTask { delay: Some(Duration::from_secs(3600)), ..task("k", 0) }).await.unwrap();
    let at = chrono::Utc::now() + chrono::Duration::hours(1);
    let scheduled = s.task_insert(NewTask { run_at: Some(at), ..task("k", 1) }).await.unwrap();
    assert!(s.task_claim(claim(10)).await.unwrap().tasks.is_empty());
    let rec = s.task_get(delayed).await.unwrap();
    assert!(rec.run_at > chrono::Utc::now() + chrono::Duration::minutes(59));
    b.make_due(scheduled).await;
    assert_eq!(claim_one(&s).await.lease.task_id, scheduled);
    b.make_due(delayed).await;
    assert_eq!(claim_one(&s).await.lease.task_id, delayed);
}

/// A failed attempt is recorded with its message and attempt, and the task waits for its backoff.
pub async fn retry_records_error_and_backs_off<B: Backend>(b: &B) {
    let s = b.store();
    let id = s.task_insert(task("k", 0)).await.unwrap();
    let c = claim_one(&s).await;
    let state = s
        .task_retry(TaskRetryParams { lease: c.lease, error: "boom".into(), retry_in: Some(Duration::from_secs(600)) })
        .await
        .unwrap();
    assert_eq!(state, TaskState::Available);
    let rec = s.task_get(id).await.unwrap();
    assert_eq!(rec.errors.len(), 1);
    assert_eq!((rec.errors[0].attempt, rec.errors[0].message.as_str()), (1, "boom"));
    assert!(rec.run_at > chrono::Utc::now() + chrono::Duration::minutes(9));
    assert!(s.task_claim(claim(10)).await.unwrap().tasks.is_empty(), "claimed during its backoff");
    b.make_due(id).await;
    let c2 = claim_one(&s).await;
    assert_eq!(c2.attempt, 2);
    assert!(c2.lease.fence > c.lease.fence);
}

/// A retry without a delay (out of attempts) discards the task with the error recorded.
pub async fn retry_without_delay_discards<B: Backend>(b: &B) {
    let s = b.store();
    let id = s.task_insert(NewTask { max_attempts: 1, ..task("k", 0) }).await.unwrap();
    let c = claim_one(&s).await;
    let st = s.task_retry(TaskRetryParams { lease: c.lease, error: "last".into(), retry_in: None }).await.unwrap();
    assert_eq!(st, TaskState::Discarded);
    let rec = s.task_get(id).await.unwrap();
    assert_eq!((rec.state, rec.errors.len()), (TaskState::Discarded, 1));
    assert!(rec.finalized_at.is_some());
}

/// Snoozing puts the task back to sleep without counting the attempt.
pub async fn snooze_does_not_count_an_attempt<B: Backend>(b: &B) {
    let s = b.store();
    let id = s.task_insert(task("k", 0)).await.unwrap();
    let c = claim_one(&s).await;
    s.task_snooze(TaskSnoozeParams { lease: c.lease, delay: Duration::from_secs(600) }).await.unwrap();
    let rec = s.task_get(id).await.unwrap();
    assert_eq!((rec.state, rec.attempt, rec.errors.len()), (TaskState::Available, 0, 0));
    assert!(s.task_claim(claim(10)).await.unwrap().tasks.is_empty());
    b.make_due(id).await;
    assert_eq!(claim_one(&s).await.attempt, 1);
}

/// Cancelling by id stops an available task from running, and fences out a running one.
pub async fn cancel_by_id<B: Backend>(b: &B) {
    let s = b.store();
    let waiting = s.task_insert(task("k", 0)).await.unwrap();
    assert_eq!(s.task_cancel(TaskCancelParams { id: waiting }).await.unwrap(), TaskState::Cancelled);
    assert!(s.task_claim(claim(10)).await.unwrap().tasks.is_empty());
    let running = s.task_insert(task("k", 1)).await.unwrap();
    let c = claim_one(&s).await;
    assert_eq!(s.task_cancel(TaskCancelParams { id: running }).await.unwrap(), TaskState::Cancelled);
    let renewed = s.lease_renew(LeaseRenewParams { leases: vec![(c.lease, Duration::from_secs(30))] }).await.unwrap();
    assert_eq!(renewed, LeaseRenewal::default(), "a cancelled task's lease was renewed");
    let st = s
        .task_complete_many(TaskCompleteParams { tasks: vec![(c.lease, None)], delete_completed: false })
        .await
        .unwrap();
    assert_eq!(st, vec![CompletionStatus::LeaseLost]);
    assert_eq!(s.task_get(running).await.unwrap().state, TaskState::Cancelled);
    // cancelling a finished task changes nothing
    assert_eq!(s.task_cancel(TaskCancelParams { id: running }).await.unwrap(), TaskState::Cancelled);
}

/// A task enqueued in a transaction that rolls back never exists; a committed one does.
pub async fn rolled_back_enqueue_leaves_no_task<B: Backend>(b: &B) {
    let s = b.store();
    let gone = b.insert_in_tx(task("k", 0), false).await.unwrap();
    assert!(matches!(s.task_get(gone).await, Err(Error::NotFound(id)) if id == gone));
    assert!(s.task_claim(claim(10)).await.unwrap().tasks.is_empty());
    let kept = b.insert_in_tx(task("k", 1), true).await.unwrap();
    assert_eq!(claim_one(&s).await.lease.task_id, kept);
}

/// Every claim gets a token greater than every earlier one, takeovers included.
pub async fn fencing_tokens_strictly_increase<B: Backend>(b: &B) {
    let s = b.store();
    s.task_insert_many((0..20).map(|n| task("k", n)).collect()).await.unwrap();
    let mut last = FencingToken(i64::MIN);
    for round in 0..4 {
        let got = s.task_claim(claim(5)).await.unwrap().tasks;
        assert_eq!(got.len(), 5);
        let mut fences: Vec<FencingToken> = got.iter().map(|c| c.lease.fence).collect();
        fences.sort();
        fences.dedup();
        assert_eq!(fences.len(), 5, "round {round}: a token repeated");
        assert!(fences[0] > last, "round {round}: token {} after {}", fences[0], last);
        last = fences[4];
        // take the first one over, as after a crash
        b.expire_lease(got[0].lease.task_id).await;
        let again = claim_one(&s).await;
        assert_eq!(again.lease.task_id, got[0].lease.task_id);
        assert!(again.taken_over && again.lease.fence > last);
        last = again.lease.fence;
        s.task_complete_many(TaskCompleteParams { tasks: vec![(again.lease, None)], delete_completed: false })
            .await
            .unwrap();
        let rest = got[1..].iter().map(|c| (c.lease, None)).collect();
        s.task_complete_many(TaskCompleteParams { tasks: rest, delete_completed: false }).await.unwrap();
    }
}

/// A holder whose lease was taken over can neither complete, fail, snooze, release nor renew, and
/// the writes it made in its completion transaction are rolled back.
pub async fn zombie_cannot_write<B: Backend>(b: &B) {
    let s = b.store();
    let id = s.task_insert(task("k", 0)).await.unwrap();
    let zombie = claim_one(&s).await;
    b.expire_lease(id).await;
    let fresh = claim_one(&s).await;
    assert!(fresh.taken_over && fresh.lease.fence > zombie.lease.fence);
    assert_eq!(fresh.attempt, 2);

    let lost = |r: Result<()>| assert!(matches!(r, Err(Error::LeaseLost { task_id, .. }) if task_id == id), "{r:?}");
    lost(b.complete_with_effect(zombie.lease).await);
    assert_eq!(b.effect_count(id).await, 0, "a zombie's effect survived");
    let st = s
        .task_complete_many(TaskCompleteParams { tasks: vec![(zombie.lease, None)], delete_completed: false })
        .await
        .unwrap();
    assert_eq!(st, vec![CompletionStatus::LeaseLost]);
    lost(s.task_retry(TaskRetryParams { lease: zombie.lease, error: "x".into(), retry_in: None }).await.map(|_| ()));
    lost(s.task_snooze(TaskSnoozeParams { lease: zombie.lease, delay: Duration::ZERO }).await);
    let finish = TaskFinishParams { lease: zombie.lease, state: TaskState::Discarded, reason: "x".into() };
    lost(s.task_finish(finish).await);
    let released = s.task_release(TaskReleaseParams { leases: vec![zombie.lease], lease_lost: true }).await.unwrap();
    assert!(released.is_empty());
    let renewed =
        s.lease_renew(LeaseRenewParams { leases: vec![(zombie.lease, Duration::from_secs(30))] }).await.unwrap();
    assert_eq!(renewed, LeaseRenewal::default());

    let rec = s.task_get(id).await.unwrap();
    assert_eq!((rec.state, rec.fence, rec.lease_losses), (TaskState::Running, Some(fresh.lease.fence), 1));
    b.complete_with_effect(fresh.lease).await.unwrap();
    assert_eq!(b.effect_count(id).await, 1);
    let rec = s.task_get(id).await.unwrap();
    assert_eq!(rec.state, TaskState::Completed);
    // the worker's own completion after the handler's transactional one is recognised
    let st = s
        .task_complete_many(TaskCompleteParams { tasks: vec![(fresh.lease, None)], delete_completed: false })
        .await
        .unwrap();
    assert_eq!(st, vec![CompletionStatus::AlreadyCompleted]);
}

/// Renewal extends only leases that still carry their token.
pub async fn renewal_is_fenced<B: Backend>(b: &B) {
    let s = b.store();
    s.task_insert_many(vec![task("k", 0), task("k", 1)]).await.unwrap();
    let got = s.task_claim(claim(2)).await.unwrap().tasks;
    let before = s.task_get(got[0].lease.task_id).await.unwrap().lease_expires_at.unwrap();
    let forged = TaskLease { task_id: got[1].lease.task_id, fence: FencingToken(got[1].lease.fence.0 - 1_000_000) };
    let leases = vec![(got[0].lease, Duration::from_secs(120)), (forged, Duration::from_secs(120))];
    let renewed = s.lease_renew(LeaseRenewParams { leases }).await.unwrap();
    assert_eq!(renewed, LeaseRenewal { renewed: vec![got[0].lease], busy: vec![] });
    let after = s.task_get(got[0].lease.task_id).await.unwrap().lease_expires_at.unwrap();
    assert!(after > before + chrono::Duration::seconds(60), "{before} -> {after}");
    // a stale and the current lease of one task in one renewal (a holder that took over its own stalled
    // task): only the current one is renewed, so the stalled attempt learns that it lost its lease
    b.expire_lease(got[1].lease.task_id).await;
    let fresh = claim_one(&s).await;
    assert_eq!(fresh.lease.task_id, got[1].lease.task_id);
    let leases = vec![(got[1].lease, Duration::from_secs(120)), (fresh.lease, Duration::from_secs(120))];
    let renewed = s.lease_renew(LeaseRenewParams { leases }).await.unwrap();
    assert_eq!(renewed, LeaseRenewal { renewed: vec![fresh.lease], busy: vec![] });
}

/// A released task is available at once; the attempt is not counted unless the lease was lost.
pub async fn release_makes_available_at_once<B: Backend>(b: &B) {
    let s = b.store();
    let id = s.task_insert(task("k", 0)).await.unwrap();
    let c = claim_one(&s).await;
    let rel = s.task_release(TaskReleaseParams { leases: vec![c.lease], lease_lost: false }).await.unwrap();
    assert_eq!(rel, vec![c.lease]);
    let rec = s.task_get(id).await.unwrap();
    assert_eq!((rec.state, rec.attempt, rec.lease_losses), (TaskState::Available, 0, 0));
    let c2 = claim_one(&s).await;
    s.task_release(TaskReleaseParams { leases: vec![c2.lease], lease_lost: true }).await.unwrap();
    let rec = s.task_get(id).await.unwrap();
    assert_eq!((rec.state, rec.attempt, rec.lease_losses), (TaskState::Available, 1, 1));
}

/// Bad tasks are refused before anything is written.
pub async fn invalid_tasks_are_rejected<B: Backend>(b: &B) {
    let s = b.store();
    for bad in [
        NewTask { kind: String::new(), ..task("k", 0) },
        NewTask { queue: String::new(), ..task("k", 0) },
        NewTask { max_attempts: 0, ..task("k", 0) },
        NewTask { lease_ttl: Some(Duration::from_millis(10)), ..task("k", 0) },
        // no store keeps a NUL character (PostgreSQL's text and jsonb refuse it)
        NewTask { kind: "k\0".into(), ..task("k", 0) },
        NewTask { queue: "q\0".into(), ..task("k", 0) },
        NewTask::new("k", serde_json::json!({ "text": "a\u{0}b" })),
        NewTask::new("k", serde_json::json!([{ "a\u{0}": 1 }])),
        NewTask { idempotency: Some(Idempotency::new("key\0")), ..task("k", 0) },
    ] {
        assert!(matches!(s.task_insert(bad.clone()).await, Err(Error::InvalidInput(_))), "{bad:?}");
        let batch = vec![task("k", 1), bad];
        assert!(matches!(s.task_insert_many(batch).await, Err(Error::InvalidInput(_))));
    }
    assert!(s.task_claim(claim(10)).await.unwrap().tasks.is_empty(), "a rejected batch left tasks behind");
}

/// Letters that no compression shortens, `len` bytes of them.
fn incompressible(len: usize) -> String {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect()
}

/// Every name a store keeps as an index key (queue, kind, idempotency and effect keys, leader lease and
/// schedule names, the queues a worker waits on) is taken up to [`MAX_NAME_LEN`] bytes, and refused
/// beyond with the same typed error on every store, before anything is written. Without the check,
/// PostgreSQL refuses an index entry of about 2.7 kB with a database error while SQLite takes it.
pub async fn names_have_one_length_limit<B: Backend>(b: &B) {
    let s = b.store();
    let mut wakeups = s.wakeup_subscribe().await.unwrap();
    let longest = "é".repeat(MAX_NAME_LEN / 2);
    let too_long = [format!("{longest}x"), incompressible(3_000)];

    let fits = NewTask { queue: longest.clone(), kind: longest.clone(), ..task("k", 0) };
    let key = Some(Idempotency::new(incompressible(MAX_NAME_LEN)));
    let keyed = NewTask { id: TaskId::new(), idempotency: key, ..fits.clone() };
    s.task_insert_many(vec![fits.clone()]).await.unwrap();
    assert!(!s.task_insert_idempotent(keyed).await.unwrap().existing);
    let params = TaskClaimParams { queues: vec![longest.clone()], ..claim(10) };
    let claimed = s.task_claim(params).await.unwrap().tasks;
    assert_eq!(claimed.len(), 2);
    assert!(claimed.iter().all(|t| t.queue == longest && t.kind == longest));

    for name in &too_long {
        for bad in [
            NewTask { queue: name.clone(), ..task("k", 1) },
            NewTask { kind: name.clone(), ..task("k", 1) },
            NewTask { idempotency: Some(Idempotency::new(name.clone())), ..task("k", 1) },
        ] {
            let refused = s.task_insert(bad.clone()).await;
            assert!(matches!(&refused, Err(Error::InvalidInput(m)) if m.contains("at most")), "{refused:?}");
            if bad.idempotency.is_none() {
                let refused = s.task_insert_many(vec![task("k", 2), bad]).await;
                assert!(matches!(&refused, Err(Error::InvalidInput(_))), "{refused:?}");
            }
        }
        let lease = LeaderAcquireParams { name: name.clone(), holder: "suite".into(), ttl: Duration::from_secs(30) };
        let refused = s.leader_acquire(lease).await;
        assert!(matches!(&refused, Err(Error::InvalidInput(_))), "{refused:?}");
        let def = crate::cron_cases::every_second(name, MissedPolicy::Skip, OverlapPolicy::Skip);
        let leader = LeaderToken { name: "suite".into(), holder: "suite".into(), token: FencingToken(1) };
        let refused = s.schedule_upsert(leader, def).await;
        assert!(matches!(&refused, Err(Error::InvalidConfig(_))), "{refused:?}");
        let refused = b.effect_once(claimed[0].lease, name, serde_json::json!(1), true).await;
        assert!(matches!(&refused, Err(Error::InvalidInput(_))), "{refused:?}");
    }
    // a NUL character, which PostgreSQL's text refuses, is refused alike by every store
    let nul = "a\0b".to_owned();
    let lease = LeaderAcquireParams { name: nul.clone(), holder: "suite".into(), ttl: Duration::from_secs(30) };
    let refused = s.leader_acquire(lease).await;
    assert!(matches!(&refused, Err(Error::InvalidInput(m)) if m.contains("NUL")), "{refused:?}");
    let refused = b.effect_once(claimed[0].lease, &nul, serde_json::json!(1), true).await;
    assert!(matches!(&refused, Err(Error::InvalidInput(m)) if m.contains("NUL")), "{refused:?}");
    let lease = LeaderAcquireParams { name: longest.clone(), holder: "suite".into(), ttl: Duration::from_secs(30) };
    let token = s.leader_acquire(lease).await.unwrap().expect("a free lease is taken");
    let leader = LeaderToken { name: longest.clone(), holder: "suite".into(), token };
    let def = crate::cron_cases::every_second(&longest, MissedPolicy::Skip, OverlapPolicy::Skip);
    s.schedule_upsert(leader.clone(), def.clone()).await.unwrap();
    assert!(b.effect_once(claimed[0].lease, &longest, serde_json::json!(1), true).await.unwrap().0);
    wakeups.announce(std::slice::from_ref(&longest), Duration::from_secs(5), None).await.unwrap();
    assert!(s.schedule_control(&longest, ScheduleAction::Pause).await.unwrap().paused);
    let at = chrono::Utc::now();
    let fits = crate::cron_cases::tick(leader.clone(), &def, at, TickOutcome::Skipped);
    assert!(s.schedule_tick_record(fits).await.unwrap());

    for name in &too_long {
        let refused = wakeups.announce(std::slice::from_ref(name), Duration::from_secs(5), None).await;
        assert!(matches!(&refused, Err(Error::InvalidInput(_))), "{refused:?}");
        let refused = s.schedule_control(name, ScheduleAction::Pause).await;
        assert!(matches!(&refused, Err(Error::InvalidInput(_))), "{refused:?}");
        let other = ScheduleDef { name: name.clone(), ..def.clone() };
        let refused = s.schedule_tick_record(crate::cron_cases::tick(leader.clone(), &other, at, TickOutcome::Skipped));
        let refused = refused.await;
        assert!(matches!(&refused, Err(Error::InvalidInput(_))), "{refused:?}");
        assert!(s.leader_get(name).await.unwrap().is_none(), "a refused leader lease was written");
    }

    // nothing of the refused names was written
    let depth = s.task_depth().await.unwrap();
    assert_eq!(depth.iter().map(|d| d.queue.as_str()).collect::<Vec<_>>(), vec![longest.as_str()], "{depth:?}");
    assert_eq!(s.schedule_list().await.unwrap().len(), 1);
    assert!(s.task_claim(claim(10)).await.unwrap().tasks.is_empty(), "a refused batch left tasks behind");
}

/// Reading or cancelling an unknown id is `NotFound`.
pub async fn missing_task_is_not_found<B: Backend>(b: &B) {
    let s = b.store();
    let id = TaskId::new();
    assert!(matches!(s.task_get(id).await, Err(Error::NotFound(x)) if x == id));
    assert!(matches!(s.task_cancel(TaskCancelParams { id }).await, Err(Error::NotFound(_))));
}

pub(crate) fn worker<B: Backend>(b: &B, probe: Probe) -> leasehold::WorkerBuilder<B::Store, Probe> {
    Worker::builder_with_state(b.store(), probe)
        .register::<Echo>()
        .register::<Flaky>()
        .register::<Panics>()
        .register::<Steer>()
        .register::<UntilCancelled>()
        .register::<HandsOnItsToken>()
        .register::<CompletesInTx>()
        .poll_interval(Duration::from_millis(200))
        .retry_policy(RetryPolicy {
            base: Duration::from_millis(50),
            factor: 1.0,
            max: Duration::from_millis(50),
            jitter: 0.0,
        })
}

pub(crate) async fn wait_state<S: TaskStore>(s: &S, id: TaskId, want: TaskState) -> TaskRecord {
    wait::until(&format!("task {id} to become {want}"), WAIT, || async {
        let rec = s.task_get(id).await.unwrap();
        (rec.state == want).then_some(rec)
    })
    .await
}

/// A worker runs a job and stores its result.
pub async fn worker_completes_with_result<B: Backend>(b: &B) {
    let client = Client::new(b.store());
    let w = worker(b, Probe::default()).build().unwrap();
    w.start().await;
    let ids = client.enqueue_many((0..20).map(|n| Echo { n }), EnqueueOptions::default()).await.unwrap();
    for (n, id) in ids.iter().enumerate() {
        let rec = wait_state(client.store(), *id, TaskState::Completed).await;
        assert_eq!(rec.result, Some(serde_json::json!(n)));
        assert_eq!(client.result::<usize>(*id).await.unwrap(), Some(n), "the enqueuer reads the typed result");
    }
    w.stop().await;
    let st = w.stats();
    assert_eq!((st.completed, st.lease_lost, st.retried), (20, 0, 0));
}

/// Errors are recorded per attempt and retried with backoff until the job succeeds, or discarded.
pub async fn worker_retries_errors_with_backoff<B: Backend>(b: &B) {
    let client = Client::new(b.store());
    let w = worker(b, Probe::default()).build().unwrap();
    w.start().await;
    let ok = client.enqueue(Flaky { failures: 2 }).await.unwrap();
    let out = client.enqueue_with(Flaky { failures: 5 }, EnqueueOptions::default().max_attempts(3)).await.unwrap();
    let rec = wait_state(client.store(), ok, TaskState::Completed).await;
    assert_eq!(rec.attempt, 3);
    let msgs: Vec<_> = rec.errors.iter().map(|e| (e.attempt, e.message.as_str())).collect();
    assert_eq!(msgs, vec![(1, "planned failure 1"), (2, "planned failure 2")]);
    let rec = wait_state(client.store(), out, TaskState::Discarded).await;
    assert_eq!((rec.attempt, rec.errors.len()), (3, 3));
    w.stop().await;
    assert_eq!(w.stats().retried, 4);
}

/// A panic is caught, recorded as an error, and the worker keeps going.
pub async fn worker_records_panics<B: Backend>(b: &B) {
    let client = Client::new(b.store());
    let w = worker(b, Probe::default()).build().unwrap();
    w.start().await;
    let id = client.enqueue_with(Panics, EnqueueOptions::default().max_attempts(1)).await.unwrap();
    let rec = wait_state(client.store(), id, TaskState::Discarded).await;
    assert!(rec.errors[0].message.contains("planned panic"), "{:?}", rec.errors);
    let after = client.enqueue(Echo { n: 7 }).await.unwrap();
    wait_state(client.store(), after, TaskState::Completed).await;
    w.stop().await;
    assert_eq!(w.stats().panics, 1);
}

/// Snooze, retry-after, cancel and fail each end where they say.
pub async fn worker_follows_outcomes<B: Backend>(b: &B) {
    let client = Client::new(b.store());
    let probe = Probe::default();
    let w = worker(b, probe).build().unwrap();
    w.start().await;
    let snooze = client.enqueue(Steer::Snooze(3_600_000)).await.unwrap();
    let retry = client.enqueue(Steer::RetryAfter(3_600_000)).await.unwrap();
    let cancel = client.enqueue(Steer::Cancel).await.unwrap();
    let fail = client.enqueue(Steer::Fail).await.unwrap();
    let rec = wait_state(client.store(), cancel, TaskState::Cancelled).await;
    assert_eq!(rec.errors[0].message, "told to cancel");
    let rec = wait_state(client.store(), fail, TaskState::Discarded).await;
    assert_eq!((rec.attempt, rec.errors[0].message.as_str()), (1, "told to fail"));
    let rec = wait::until("the retry to be recorded", WAIT, || async {
        let r = client.task(retry).await.unwrap();
        (!r.errors.is_empty()).then_some(r)
    })
    .await;
    assert_eq!(rec.state, TaskState::Available);
    assert!(rec.run_at > chrono::Utc::now() + chrono::Duration::minutes(50));
    let rec = wait::until("the snooze to be recorded", WAIT, || async {
        let r = client.task(snooze).await.unwrap();
        (r.state == TaskState::Available && r.run_at > chrono::Utc::now() + chrono::Duration::minutes(50)).then_some(r)
    })
    .await;
    assert_eq!((rec.attempt, rec.errors.len()), (0, 0));
    w.stop().await;
    let st = w.stats();
    assert_eq!((st.snoozed, st.retried, st.cancelled, st.discarded), (1, 1, 1, 1));
}

/// A job's result or error that holds a NUL character, which no store keeps: the result discards the
/// task at once with an error that says so (another attempt would return it again), an error is written
/// with the character replaced, and the completions beside them are kept (written together, PostgreSQL
/// refused the whole batch).
pub async fn worker_records_results_and_errors_the_store_cannot_keep<B: Backend>(b: &B) {
    let client = Client::new(b.store());
    // claimed first, beside the first echoes, whose completions come at about the same time
    let result = client.enqueue(Steer::CompleteWithNul).await.unwrap();
    let failed = client.enqueue(Steer::FailWithNul).await.unwrap();
    let echoes = client.enqueue_many((0..20).map(|n| Echo { n }), EnqueueOptions::default()).await.unwrap();
    let w = worker(b, Probe::default()).build().unwrap();
    w.start().await;
    let rec = wait_state(client.store(), result, TaskState::Discarded).await;
    assert!(rec.errors[0].message.contains("NUL character"), "{:?}", rec.errors);
    assert_eq!((rec.attempt, rec.result), (1, None));
    let rec = wait_state(client.store(), failed, TaskState::Discarded).await;
    assert_eq!(rec.errors[0].message, "told to fail \u{FFFD}");
    for id in echoes {
        wait_state(client.store(), id, TaskState::Completed).await;
    }
    w.stop().await;
    let st = w.stats();
    assert_eq!((st.completed, st.discarded, st.write_errors, st.lease_lost), (20, 2, 0, 0));
}

/// A payload that does not decode is discarded at once with the decoding error.
pub async fn worker_discards_undecodable_payloads<B: Backend>(b: &B) {
    let s = b.store();
    let w = worker(b, Probe::default()).build().unwrap();
    w.start().await;
    let id = s.task_insert(NewTask::new("echo", serde_json::json!({ "n": "not a number" }))).await.unwrap();
    let rec = wait_state(&s, id, TaskState::Discarded).await;
    assert_eq!(rec.attempt, 1);
    assert!(rec.errors[0].message.contains("does not decode as job kind \"echo\""), "{:?}", rec.errors);
    w.stop().await;
}

/// A task of a kind this worker does not know fails with a recorded error and is retried (another
/// worker, or a later deploy, may know it); the worker carries on.
pub async fn worker_retries_unknown_kinds<B: Backend>(b: &B) {
    let s = b.store();
    let w = worker(b, Probe::default()).build().unwrap();
    w.start().await;
    let id = s
        .task_insert(NewTask { max_attempts: 2, ..NewTask::new("nobody_runs_this", serde_json::json!({})) })
        .await
        .unwrap();
    let rec = wait_state(&s, id, TaskState::Discarded).await;
    assert_eq!(rec.errors.len(), 2);
    assert!(rec.errors[0].message.contains("unknown job kind"), "{:?}", rec.errors);
    let after = Client::new(s.clone()).enqueue(Echo { n: 1 }).await.unwrap();
    wait_state(&s, after, TaskState::Completed).await;
    w.stop().await;
}

/// An idle worker starts a new task on the enqueue's wake-up, long before its next poll.
pub async fn worker_wakes_on_enqueue<B: Backend>(b: &B) {
    let client = Client::new(b.store());
    let w = worker(b, Probe::default()).poll_interval(Duration::from_secs(120)).build().unwrap();
    w.start().await;
    // the first task may be found by the worker's first claim; once it is done, the worker is idle
    // and listening
    let first = client.enqueue(Echo { n: 1 }).await.unwrap();
    wait_state(client.store(), first, TaskState::Completed).await;
    for n in 0..3 {
        let id = client.enqueue(Echo { n }).await.unwrap();
        // far below the 120 s poll interval: only a wake-up explains it
        wait::until("a woken worker to run the task", Duration::from_secs(10), || async {
            (client.task(id).await.unwrap().state == TaskState::Completed).then_some(())
        })
        .await;
    }
    w.stop().await;
}

/// When a renewal finds the lease gone (here: cancelled by an operator), the job's cancellation
/// token fires at the next heartbeat, long before its trust window would end, and nothing more is
/// written.
pub async fn worker_cancels_job_when_lease_lost<B: Backend>(b: &B) {
    let client = Client::new(b.store());
    let w = heartbeat_watching_worker(b);
    w.start().await;
    let id = client.enqueue(UntilCancelled { max_ms: 120_000 }).await.unwrap();
    cancel_once_running(&client, &w, id).await;
    w.stop().await;
    assert!(w.stats().lease_lost >= 1);
    let rec = client.task(id).await.unwrap();
    assert_eq!((rec.state, rec.errors.len()), (TaskState::Cancelled, 0));
}

/// The token a job hands to its sub-tasks fires when the attempt's lease is lost; a job that cancels that
/// token itself stops only what it handed it to: the attempt is not cancelled and completes.
pub async fn worker_hands_jobs_a_token_that_fires_with_the_lease_and_cancels_only_itself<B: Backend>(b: &B) {
    let client = Client::new(b.store());
    let w = heartbeat_watching_worker(b);
    w.start().await;
    let own = client.enqueue(HandsOnItsToken { cancel_own: true, max_ms: 0 }).await.unwrap();
    assert_eq!(wait_state(client.store(), own, TaskState::Completed).await.errors.len(), 0);
    assert!(!w.state().saw_cancel(own), "cancelling the job's own token cancelled the attempt");
    let lost = client.enqueue(HandsOnItsToken { cancel_own: false, max_ms: 120_000 }).await.unwrap();
    cancel_once_running(&client, &w, lost).await;
    w.stop().await;
}

/// A worker that learns of a lost lease at its next heartbeat (every 200 ms), long before its trust in a
/// lease of 60 s would end (55 s, with a margin of 5).
fn heartbeat_watching_worker<B: Backend>(b: &B) -> leasehold::Worker<B::Store, Probe> {
    worker(b, Probe::default())
        .lease_ttl(Duration::from_secs(60))
        .heartbeat_interval(Duration::from_millis(200))
        .trust_margin(Duration::from_secs(5))
        .cancel_grace(Duration::from_secs(1))
        .build()
        .unwrap()
}

/// Once the job of `id` started, cancels its task as an operator would, and waits for the job to see its
/// cancellation (recorded in the probe). Trust in the lease would last 55 s: only the renewal that found
/// the lease gone explains a cancellation within seconds.
async fn cancel_once_running<S: TaskStore>(client: &Client<S>, w: &leasehold::Worker<S, Probe>, id: TaskId) {
    wait::until("the job to start", WAIT, || async { w.state().started(id).then_some(()) }).await;
    assert_eq!(client.cancel(id).await.unwrap(), TaskState::Cancelled);
    wait::until("the job to see its cancellation", Duration::from_secs(5), || async {
        w.state().saw_cancel(id).then_some(())
    })
    .await;
}

/// A graceful stop cancels jobs still running at its deadline and releases their tasks at once,
/// without counting the attempt.
pub async fn worker_shutdown_releases_tasks<B: Backend>(b: &B) {
    let client = Client::new(b.store());
    let w = worker(b, Probe::default()).build().unwrap();
    w.start().await;
    let id = client.enqueue(UntilCancelled { max_ms: 60_000 }).await.unwrap();
    wait_state(client.store(), id, TaskState::Running).await;
    w.stop_within(Duration::from_millis(100)).await;
    let rec = client.task(id).await.unwrap();
    assert_eq!((rec.state, rec.attempt, rec.lease_losses), (TaskState::Available, 0, 0));
    assert!(rec.run_at <= chrono::Utc::now() + chrono::Duration::seconds(1));
    assert_eq!(w.stats().released, 1);
    assert_eq!(w.running_tasks().await, 0);
    w.stop().await; // a second stop is harmless
}

/// A handler that completes its task inside its own transaction (its effect committed with the
/// completion) is not completed twice, and the worker counts it completed.
pub async fn worker_honours_transactional_completion<B: Backend>(b: &B) {
    let probe = Probe { completer: Some(b.transactional_completer()), ..Probe::default() };
    let w = worker(b, probe).build().unwrap();
    w.start().await;
    let id = Client::new(b.store()).enqueue(CompletesInTx).await.unwrap();
    wait_state(&b.store(), id, TaskState::Completed).await;
    w.stop().await;
    assert_eq!(b.effect_count(id).await, 1);
    let st = w.stats();
    assert_eq!((st.completed, st.lease_lost, st.write_errors), (1, 0, 0));
}

/// A task whose own lease is far shorter than the worker's runs to completion under the worker's
/// default settings: margin, heartbeat and grace scale down with the lease.
pub async fn worker_keeps_short_task_leases<B: Backend>(b: &B) {
    let client = Client::new(b.store());
    let w = Worker::builder_with_state(b.store(), Probe::default()).register::<UntilCancelled>().build().unwrap();
    w.start().await;
    let opts = EnqueueOptions::default().lease_ttl(Duration::from_millis(1_500));
    let id = client.enqueue_with(UntilCancelled { max_ms: 3_500 }, opts).await.unwrap();
    let rec = wait_state(client.store(), id, TaskState::Completed).await;
    w.stop().await;
    assert!(!w.state().saw_cancel(id), "the job was cancelled");
    assert_eq!((rec.attempt, rec.lease_losses, w.stats().lease_lost), (1, 0, 0));
}

/// A panic while decoding the payload (user code too) is caught like a panic in the job: recorded,
/// retried or discarded, and the worker's slot is freed.
pub async fn worker_survives_a_panic_while_decoding<B: Backend>(b: &B) {
    let client = Client::new(b.store());
    let w = worker(b, Probe::default()).register::<PanicsOnDecode>().concurrency(1).build().unwrap();
    w.start().await;
    let id = client.enqueue_with(PanicsOnDecode, EnqueueOptions::default().max_attempts(1)).await.unwrap();
    let rec = wait_state(client.store(), id, TaskState::Discarded).await;
    let msg = &rec.errors[0].message;
    assert!(msg.contains("while decoding the payload") && msg.contains("planned panic"), "{msg}");
    let next = client.enqueue(Echo { n: 1 }).await.unwrap();
    wait_state(client.store(), next, TaskState::Completed).await;
    w.stop().await;
    assert_eq!(w.stats().panics, 1);
}

/// In one completion batch, the stale holder and the current one of the same task are told apart.
pub async fn completion_batch_tells_holders_apart<B: Backend>(b: &B) {
    let s = b.store();
    let id = s.task_insert(task("k", 0)).await.unwrap();
    let zombie = claim_one(&s).await;
    b.expire_lease(id).await;
    let fresh = claim_one(&s).await;
    let st = s
        .task_complete_many(TaskCompleteParams {
            tasks: vec![(zombie.lease, None), (fresh.lease, Some(serde_json::json!(1)))],
            delete_completed: false,
        })
        .await
        .unwrap();
    assert_eq!(st, vec![CompletionStatus::LeaseLost, CompletionStatus::Completed]);
    let st = s
        .task_complete_many(TaskCompleteParams {
            tasks: vec![(fresh.lease, None), (zombie.lease, None)],
            delete_completed: false,
        })
        .await
        .unwrap();
    assert_eq!(st, vec![CompletionStatus::AlreadyCompleted, CompletionStatus::LeaseLost]);
}

/// A task whose holder lost the lease on its last attempt is discarded by the next claim, not run again
/// forever.
pub async fn takeover_on_the_last_attempt_discards<B: Backend>(b: &B) {
    let s = b.store();
    let id = s.task_insert(NewTask { max_attempts: 2, ..task("k", 0) }).await.unwrap();
    claim_one(&s).await;
    b.expire_lease(id).await;
    assert_eq!(claim_one(&s).await.attempt, 2);
    b.expire_lease(id).await;
    let batch = s.task_claim(claim(10)).await.unwrap();
    assert!(batch.tasks.is_empty(), "an exhausted task was claimed again");
    let cause = DiscardCause::LeaseLostOnLastAttempt;
    assert_eq!(
        batch.discarded,
        vec![ClaimDiscard { task_id: id, queue: DEFAULT_QUEUE.into(), kind: "k".into(), cause }]
    );
    let rec = s.task_get(id).await.unwrap();
    assert_eq!((rec.state, rec.attempt, rec.lease_losses), (TaskState::Discarded, 2, 2));
    assert_eq!(rec.errors.last().map(|e| e.message.as_str()), Some(LEASE_LOST_ON_LAST_ATTEMPT));
}

/// A task that was finished while its holder still ran keeps the holder's token (an operator's cancel,
/// or a claim that discarded it on its last attempt), so only its state tells that the lease ended: the
/// holder's writes with that very token are all refused, and the task stays as it was finished.
pub async fn a_finished_task_refuses_its_holders_own_token<B: Backend>(b: &B) {
    let s = b.store();
    let cancelled = s.task_insert(task("k", 0)).await.unwrap();
    let by_operator = claim_one(&s).await;
    s.task_cancel(TaskCancelParams { id: cancelled }).await.unwrap();
    let discarded = s.task_insert(NewTask { max_attempts: 1, ..task("k", 1) }).await.unwrap();
    let on_last_attempt = claim_one(&s).await;
    b.expire_lease(discarded).await;
    assert!(s.task_claim(claim(10)).await.unwrap().tasks.is_empty());
    for (id, holder, state) in
        [(cancelled, by_operator, TaskState::Cancelled), (discarded, on_last_attempt, TaskState::Discarded)]
    {
        let before = s.task_get(id).await.unwrap();
        assert_eq!((before.state, before.fence), (state, Some(holder.lease.fence)), "the finish kept the token");
        let lease = holder.lease;
        let lost =
            |r: Result<()>| assert!(matches!(r, Err(Error::LeaseLost { task_id, .. }) if task_id == id), "{r:?}");
        lost(b.complete_with_effect(lease).await);
        assert_eq!(b.effect_count(id).await, 0, "a finished task's holder left an effect");
        for result in [None, Some(serde_json::json!("late"))] {
            let st = s
                .task_complete_many(TaskCompleteParams { tasks: vec![(lease, result)], delete_completed: false })
                .await
                .unwrap();
            assert_eq!(st, vec![CompletionStatus::LeaseLost]);
        }
        let retry_in = Some(Duration::ZERO);
        lost(s.task_retry(TaskRetryParams { lease, error: "late".into(), retry_in }).await.map(|_| ()));
        lost(s.task_retry(TaskRetryParams { lease, error: "late".into(), retry_in: None }).await.map(|_| ()));
        lost(s.task_snooze(TaskSnoozeParams { lease, delay: Duration::ZERO }).await);
        for finish_as in [TaskState::Cancelled, TaskState::Discarded] {
            lost(s.task_finish(TaskFinishParams { lease, state: finish_as, reason: "late".into() }).await);
        }
        for lease_lost in [false, true] {
            let released = s.task_release(TaskReleaseParams { leases: vec![lease], lease_lost }).await.unwrap();
            assert!(released.is_empty(), "a finished task was released");
        }
        let renewed = s.lease_renew(LeaseRenewParams { leases: vec![(lease, Duration::from_secs(30))] }).await.unwrap();
        assert_eq!(renewed, LeaseRenewal::default(), "a finished task's lease was renewed");
        let after = s.task_get(id).await.unwrap();
        assert_eq!(
            (after.state, after.attempt, after.errors.len(), after.result, after.lease_expires_at),
            (state, before.attempt, before.errors.len(), None, None),
            "a late write changed the finished task"
        );
        assert!(s.task_claim(claim(10)).await.unwrap().tasks.is_empty(), "a finished task came back");
    }
}

/// A task taken over keeps its place in claim order (priority, then `run_at`): it comes before every task
/// due after it, though tasks whose leases expired before its own are due later than a backlog (on
/// PostgreSQL, as long as fewer than a thousand leases expired before its own).
pub async fn a_taken_over_task_keeps_its_place_in_claim_order<B: Backend>(b: &B) {
    let s = b.store();
    let ago = |minutes: i64| Some(chrono::Utc::now() - chrono::Duration::minutes(minutes));
    // four tasks due later than the backlog below, then the earliest task, all five claimed; inserted in
    // this order, the four come first wherever the leases' expiries tie (SQLite keeps milliseconds)
    let mut later =
        s.task_insert_many((1..=4).map(|n| NewTask { run_at: ago(1), ..task("k", n) }).collect()).await.unwrap();
    assert_eq!(s.task_claim(claim(4)).await.unwrap().tasks.len(), 4);
    let early = s.task_insert(NewTask { run_at: ago(10), ..task("k", 0) }).await.unwrap();
    assert_eq!(claim_one(&s).await.lease.task_id, early);
    let mut backlog =
        s.task_insert_many((5..=10).map(|n| NewTask { run_at: ago(5), ..task("k", n) }).collect()).await.unwrap();
    // the later tasks' leases expire first, the earliest task's last
    for id in &later {
        b.expire_lease(*id).await;
    }
    b.expire_lease(early).await;

    let mut order = Vec::new();
    for _ in 0..11 {
        let c = claim_one(&s).await;
        order.push((c.lease.task_id, c.taken_over));
    }
    assert_eq!(order[0], (early, true), "the earliest task, taken over, before the backlog");
    let sorted = |from: usize, to: usize| {
        let mut ids: Vec<TaskId> = order[from..to].iter().map(|(id, _)| *id).collect();
        ids.sort();
        ids
    };
    backlog.sort();
    later.sort();
    assert_eq!(sorted(1, 7), backlog, "then the backlog");
    assert_eq!(sorted(7, 11), later, "then the later tasks, taken over");
    assert!(order[7..].iter().all(|(_, taken_over)| *taken_over));
}

/// A claim counts the expired tasks it discards towards its limit and says that it reached it: more may be
/// due, though fewer tasks came back than it asked for (a worker then claims again at once, where after a
/// short batch it may wait for a wake-up or its next poll).
pub async fn discarded_tasks_count_towards_a_claims_limit<B: Backend>(b: &B) {
    let s = b.store();
    let exhausted = s.task_insert(NewTask { max_attempts: 1, ..task("k", 0) }).await.unwrap();
    claim_one(&s).await;
    b.expire_lease(exhausted).await;
    for n in 1..=3 {
        s.task_insert(task("k", n)).await.unwrap();
    }
    let first = s.task_claim(claim(3)).await.unwrap();
    assert_eq!(first.tasks.len(), 2, "the exhausted task is discarded, two available tasks claimed");
    // listed once, however many tasks the answer holds
    assert_eq!(first.discarded.iter().map(|d| d.task_id).collect::<Vec<_>>(), vec![exhausted]);
    assert!(first.reached_limit, "the discarded task counts towards the limit");
    let second = s.task_claim(claim(3)).await.unwrap();
    assert_eq!((second.tasks.len(), second.reached_limit), (1, false), "one task was left");
    assert!(second.discarded.is_empty());
    assert!(!s.task_claim(claim(3)).await.unwrap().reached_limit);
    assert_eq!(s.task_get(exhausted).await.unwrap().state, TaskState::Discarded);
}

/// One worker with many slots runs a thousand tasks, each exactly once.
pub async fn worker_runs_many_tasks_at_once<B: Backend>(b: &B) {
    const N: u32 = 1_000;
    let client = Client::new(b.store());
    let w = worker(b, Probe::default()).concurrency(64).build().unwrap();
    let mut ids = Vec::new();
    for chunk in 0..4 {
        let jobs = (chunk * N / 4..(chunk + 1) * N / 4).map(|n| Echo { n });
        ids.extend(client.enqueue_many(jobs, EnqueueOptions::default()).await.unwrap());
    }
    w.start().await;
    wait::until("every task to complete", Duration::from_secs(60), || async {
        (w.stats().completed >= u64::from(N)).then_some(())
    })
    .await;
    w.stop().await;
    let st = w.stats();
    assert_eq!((st.claimed, st.completed, st.lease_lost, st.write_errors), (u64::from(N), u64::from(N), 0, 0));
    for (n, id) in ids.iter().enumerate().step_by(97) {
        let rec = client.task(*id).await.unwrap();
        assert_eq!((rec.state, rec.attempt, rec.result), (TaskState::Completed, 1, Some(serde_json::json!(n))));
    }
}

pub(crate) fn keyed(kind: &str, n: i64, key: &str) -> NewTask {
    NewTask { idempotency: Some(Idempotency::new(key)), ..task(kind, n) }
}

/// The same key with the same job returns the task that holds it, and its result once completed.
pub async fn idempotent_enqueue_returns_the_holder_and_its_result<B: Backend>(b: &B) {
    let s = b.store();
    let first = s.task_insert_idempotent(keyed("k", 1, "order-1")).await.unwrap();
    assert!(!first.existing);
    let again = s.task_insert_idempotent(keyed("k", 1, "order-1")).await.unwrap();
    assert_eq!(
        (again.id, again.existing, again.state, again.result.clone()),
        (first.id, true, TaskState::Available, None)
    );
    let c = claim_one(&s).await;
    s.task_complete_many(TaskCompleteParams {
        tasks: vec![(c.lease, Some(serde_json::json!({ "ok": 7 })))],
        delete_completed: false,
    })
    .await
    .unwrap();
    let done = s.task_insert_idempotent(keyed("k", 1, "order-1")).await.unwrap();
    assert_eq!((done.id, done.existing, done.state), (first.id, true, TaskState::Completed));
    assert_eq!(done.result, Some(serde_json::json!({ "ok": 7 })));
    assert_eq!(s.task_insert(keyed("k", 1, "order-1")).await.unwrap(), first.id, "task_insert honours the key too");
    assert!(s.task_claim(claim(10)).await.unwrap().tasks.is_empty(), "a duplicate was inserted");
    assert_eq!(s.task_get(first.id).await.unwrap().idempotency_key.as_deref(), Some("order-1"));
}

/// The same key with another payload or kind is an error naming the holder; nothing is inserted.
pub async fn idempotent_enqueue_refuses_another_payload<B: Backend>(b: &B) {
    let s = b.store();
    let first = s.task_insert_idempotent(keyed("k", 1, "order-2")).await.unwrap();
    for other in [keyed("k", 2, "order-2"), keyed("other_kind", 1, "order-2")] {
        match s.task_insert_idempotent(other).await {
            Err(Error::IdempotencyConflict { key, existing }) => {
                assert_eq!((key.as_str(), existing), ("order-2", first.id))
            }
            r => panic!("expected an idempotency conflict, got {r:?}"),
        }
    }
    assert_eq!(s.task_claim(claim(10)).await.unwrap().tasks.len(), 1);
}

/// A holder that ended in a state chosen to free the key (discarded, by default) lets the next enqueue
/// insert a new task; the old task keeps its history. A completed holder keeps the key.
pub async fn idempotency_key_is_freed_by_the_states_chosen<B: Backend>(b: &B) {
    let s = b.store();
    let first = s.task_insert_idempotent(keyed("k", 1, "order-3")).await.unwrap();
    let c = claim_one(&s).await;
    s.task_retry(TaskRetryParams { lease: c.lease, error: "no stock".into(), retry_in: None }).await.unwrap();
    let second = s.task_insert_idempotent(keyed("k", 1, "order-3")).await.unwrap();
    assert!(!second.existing && second.id != first.id, "{second:?}");
    let old = s.task_get(first.id).await.unwrap();
    assert_eq!((old.state, old.idempotency_key, old.errors.len()), (TaskState::Discarded, None, 1));
    // a completed holder counts: the key stays taken
    let c = claim_one(&s).await;
    s.task_complete_many(TaskCompleteParams { tasks: vec![(c.lease, None)], delete_completed: false }).await.unwrap();
    let third = s.task_insert_idempotent(keyed("k", 1, "order-3")).await.unwrap();
    assert_eq!((third.id, third.existing), (second.id, true));
    // chosen otherwise: a discarded holder keeps its key too
    let strict = Idempotency { reuse_after: vec![], ..Idempotency::new("order-4") };
    let held = s.task_insert_idempotent(NewTask { idempotency: Some(strict.clone()), ..task("k", 4) }).await.unwrap();
    let c = claim_one(&s).await;
    s.task_retry(TaskRetryParams { lease: c.lease, error: "x".into(), retry_in: None }).await.unwrap();
    let again = s.task_insert_idempotent(NewTask { idempotency: Some(strict), ..task("k", 4) }).await.unwrap();
    assert_eq!((again.id, again.existing, again.state), (held.id, true, TaskState::Discarded));
}

/// A key is remembered for its retention after its task finished, then reused; `None` keeps it forever.
pub async fn idempotency_key_is_remembered_for_its_retention<B: Backend>(b: &B) {
    let s = b.store();
    let minute = Idempotency { retain: Some(Duration::from_secs(60)), ..Idempotency::new("r-1") };
    let forever = Idempotency { retain: None, ..Idempotency::new("r-2") };
    let a = s.task_insert_idempotent(NewTask { idempotency: Some(minute.clone()), ..task("k", 1) }).await.unwrap();
    let f = s.task_insert_idempotent(NewTask { idempotency: Some(forever.clone()), ..task("k", 2) }).await.unwrap();
    let got = s.task_claim(claim(2)).await.unwrap().tasks;
    s.task_complete_many(TaskCompleteParams {
        tasks: got.iter().map(|c| (c.lease, None)).collect(),
        delete_completed: false,
    })
    .await
    .unwrap();
    let within = s.task_insert_idempotent(NewTask { idempotency: Some(minute.clone()), ..task("k", 1) }).await.unwrap();
    assert_eq!((within.id, within.existing), (a.id, true));
    b.finish_long_ago(a.id).await;
    b.finish_long_ago(f.id).await;
    let after = s.task_insert_idempotent(NewTask { idempotency: Some(minute), ..task("k", 1) }).await.unwrap();
    assert!(!after.existing && after.id != a.id);
    let kept = s.task_insert_idempotent(NewTask { idempotency: Some(forever), ..task("k", 2) }).await.unwrap();
    assert_eq!((kept.id, kept.existing), (f.id, true));
}

/// Many concurrent enqueues of one key make exactly one task.
pub async fn idempotent_enqueues_race_to_one_task<B: Backend>(b: &B) {
    let s = b.store();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let s = s.clone();
        set.spawn(async move { s.task_insert_idempotent(keyed("k", 1, "race")).await.unwrap() });
    }
    let all: Vec<Enqueued> = set.join_all().await;
    assert_eq!(all.iter().filter(|e| !e.existing).count(), 1, "{all:?}");
    assert!(all.iter().all(|e| e.id == all[0].id));
    assert_eq!(s.task_claim(claim(100)).await.unwrap().tasks.len(), 1);
}

/// A batch carrying idempotency keys is refused whole.
pub async fn idempotency_keys_are_refused_in_batches<B: Backend>(b: &B) {
    let s = b.store();
    let r = s.task_insert_many(vec![task("k", 1), keyed("k", 2, "batch")]).await;
    assert!(matches!(r, Err(Error::InvalidInput(_))), "{r:?}");
    assert!(s.task_claim(claim(10)).await.unwrap().tasks.is_empty());
    let r = s.task_insert(NewTask { idempotency: Some(Idempotency::new("")), ..task("k", 1) }).await;
    assert!(matches!(r, Err(Error::InvalidInput(_))), "{r:?}");
}

/// An effect recorded with its key runs once: a retried or taken-over attempt gets the stored
/// outcome; a rolled-back attempt leaves the key free.
pub async fn effect_record_runs_an_effect_once<B: Backend>(b: &B) {
    let s = b.store();
    let id = s.task_insert(task("k", 0)).await.unwrap();
    let first = claim_one(&s).await;
    let (fresh, _) = b.effect_once(first.lease, "charge:1", serde_json::json!("rolled back"), false).await.unwrap();
    assert!(fresh);
    assert_eq!(b.effect_count(id).await, 0, "a rolled-back effect survived");
    let (fresh, out) = b.effect_once(first.lease, "charge:1", serde_json::json!({ "receipt": 1 }), true).await.unwrap();
    assert!(fresh);
    assert_eq!(out, serde_json::json!({ "receipt": 1 }));
    // the attempt crashes before completing; the next one must not charge again
    b.expire_lease(id).await;
    let second = claim_one(&s).await;
    let (fresh, out) =
        b.effect_once(second.lease, "charge:1", serde_json::json!({ "receipt": 2 }), true).await.unwrap();
    assert!(!fresh);
    assert_eq!(out, serde_json::json!({ "receipt": 1 }), "the recorded outcome comes back");
    assert_eq!(b.effect_count(id).await, 1);
}

/// Only the holder of a task's current lease claims an effect key: a holder whose lease was taken over,
/// or whose task finished, gets `LeaseLost`, claims nothing and learns no outcome, and the key stays
/// as it was for the holder that counts.
pub async fn effect_claims_are_refused_to_a_lost_lease<B: Backend>(b: &B) {
    let s = b.store();
    let id = s.task_insert(task("k", 0)).await.unwrap();
    let first = claim_one(&s).await;
    b.expire_lease(id).await;
    let second = claim_one(&s).await;
    let is_lost = |r: &Result<(bool, serde_json::Value)>, lease: TaskLease| matches!(r, Err(Error::LeaseLost { task_id, fence }) if *task_id == lease.task_id && *fence == lease.fence);
    let stale = b.effect_once(first.lease, "charge:lost", serde_json::json!("stale"), true).await;
    assert!(is_lost(&stale, first.lease), "{stale:?}");
    assert_eq!(b.effect_count(id).await, 0, "a lost lease's effect was written");
    let (fresh, _) = b.effect_once(second.lease, "charge:lost", serde_json::json!("current"), true).await.unwrap();
    assert!(fresh, "the stale holder's refused claim left the key taken");
    let stale = b.effect_once(first.lease, "charge:lost", serde_json::json!("stale"), true).await;
    assert!(is_lost(&stale, first.lease), "a lost lease learned the recorded outcome: {stale:?}");
    // a holder whose task finished under its own token holds nothing either
    s.task_complete_many(TaskCompleteParams { tasks: vec![(second.lease, None)], delete_completed: false })
        .await
        .unwrap();
    let done = b.effect_once(second.lease, "charge:after", serde_json::json!("late"), true).await;
    assert!(is_lost(&done, second.lease), "{done:?}");
    assert_eq!(b.effect_count(id).await, 1);
}

/// A row guarded by fencing tokens accepts each newer holder and refuses every older one.
pub async fn fenced_application_writes_refuse_older_tokens<B: Backend>(b: &B) {
    let s = b.store();
    s.task_insert_many(vec![task("k", 0), task("k", 1)]).await.unwrap();
    let older = claim_one(&s).await;
    let newer = claim_one(&s).await;
    assert!(newer.lease.fence > older.lease.fence);
    b.fenced_write(older.lease, "report", "from the older holder").await.unwrap();
    b.fenced_write(newer.lease, "report", "from the newer holder").await.unwrap();
    b.fenced_write(newer.lease, "report", "from the newer holder, again").await.unwrap();
    let stale = b.fenced_write(older.lease, "report", "late write").await;
    assert!(matches!(stale, Err(Error::LeaseLost { task_id, .. }) if task_id == older.lease.task_id), "{stale:?}");
    assert_eq!(b.fenced_read("report").await.as_deref(), Some("from the newer holder, again"));
}

/// A keyed task sent again as the very same value (same id) is answered as itself, even after its key
/// was freed: never a fake "inserted", never a primary-key error.
pub async fn the_same_keyed_task_sent_again_is_answered_as_itself<B: Backend>(b: &B) {
    let s = b.store();
    let t = keyed("k", 1, "resend");
    let first = s.task_insert_idempotent(t.clone()).await.unwrap();
    assert!(s.task_insert_idempotent(t.clone()).await.unwrap().existing);
    let c = claim_one(&s).await;
    s.task_retry(TaskRetryParams { lease: c.lease, error: "x".into(), retry_in: None }).await.unwrap();
    // discarded frees the key, but this is the same task, not a new submission
    let again = s.task_insert_idempotent(t).await.unwrap();
    assert_eq!((again.id, again.existing, again.state), (first.id, true, TaskState::Discarded));
    assert!(s.task_claim(claim(10)).await.unwrap().tasks.is_empty());
}

/// A keyed enqueue inside the caller's transaction: rolled back, the key stays free; committed, it holds.
pub async fn keyed_enqueue_in_a_transaction<B: Backend>(b: &B) {
    let s = b.store();
    b.insert_in_tx(keyed("k", 1, "in-tx"), false).await.unwrap();
    let kept = b.insert_in_tx(keyed("k", 1, "in-tx"), true).await.unwrap();
    let dup = b.insert_in_tx(keyed("k", 1, "in-tx"), true).await.unwrap();
    assert_eq!(dup, kept);
    assert_eq!(s.task_insert_idempotent(keyed("k", 1, "in-tx")).await.unwrap().id, kept);
    assert_eq!(s.task_claim(claim(10)).await.unwrap().tasks.len(), 1);
}

/// Concurrent attempts at one effect key: exactly one does the effect, every other gets its outcome.
pub async fn effect_claims_race_to_one_effect<B: Backend>(b: &B) {
    let s = b.store();
    let id = s.task_insert(task("k", 0)).await.unwrap();
    let lease = claim_one(&s).await.lease;
    let attempts = (0..8).map(|i| b.effect_once(lease, "ship:7", serde_json::json!({ "by": i }), true));
    let results: Vec<(bool, serde_json::Value)> =
        futures::future::join_all(attempts).await.into_iter().map(|r| r.unwrap()).collect();
    let fresh: Vec<_> = results.iter().filter(|(fresh, _)| *fresh).collect();
    assert_eq!(fresh.len(), 1, "{results:?}");
    assert!(results.iter().all(|(_, out)| *out == fresh[0].1), "{results:?}");
    assert_eq!(b.effect_count(id).await, 1);
}

/// The reads behind the contention and depth metrics: whether anything is claimable (due, or an
/// expired lease), and how many tasks each queue holds per live state.
pub async fn due_and_depth_are_read_without_claiming<B: Backend>(b: &B) {
    let s = b.store();
    let default = || vec![DEFAULT_QUEUE.to_owned()];
    assert!(!s.task_due_exists(default()).await.unwrap(), "an empty store has nothing due");
    assert!(s.task_depth().await.unwrap().is_empty());
    s.task_insert_many((0..3).map(|n| task("k", n)).collect()).await.unwrap();
    s.task_insert(NewTask { delay: Some(Duration::from_secs(3600)), ..task("k", 9) }).await.unwrap();
    s.task_insert(NewTask { queue: "other".into(), ..task("k", 10) }).await.unwrap();
    assert!(s.task_due_exists(default()).await.unwrap());
    let claimed = s.task_claim(claim(10)).await.unwrap().tasks;
    assert_eq!(claimed.len(), 3);
    assert!(!s.task_due_exists(default()).await.unwrap(), "only a future task is left in the default queue");
    assert!(s.task_due_exists(vec!["other".into()]).await.unwrap());
    assert!(!s.task_due_exists(Vec::new()).await.unwrap());
    let mut depth: Vec<(String, TaskState, u64)> =
        s.task_depth().await.unwrap().into_iter().map(|d| (d.queue, d.state, d.count)).collect();
    depth.sort_by_key(|d| (d.0.clone(), d.1.as_str()));
    assert_eq!(
        depth,
        vec![
            (DEFAULT_QUEUE.to_owned(), TaskState::Available, 1),
            (DEFAULT_QUEUE.to_owned(), TaskState::Running, 3),
            ("other".to_owned(), TaskState::Available, 1),
        ]
    );
    // an expired lease is claimable again
    b.expire_lease(claimed[0].lease.task_id).await;
    assert!(s.task_due_exists(default()).await.unwrap());
}

/// Claims racing for the same due tasks: each task goes to one claimer, and at least one claim reports
/// that it met the others (skipped rows they held, or waited for their lock).
pub async fn concurrent_claims_report_contention<B: Backend>(b: &B) {
    let s = b.store();
    let mut contended = false;
    for round in 0..20 {
        s.task_insert_many((0..8).map(|n| task("k", round * 100 + n)).collect()).await.unwrap();
        let claims = futures::future::join_all((0..8).map(|_| s.task_claim(claim(2)))).await;
        let mut seen = HashSet::new();
        for batch in claims {
            let batch = batch.unwrap();
            contended |= batch.contended;
            for t in &batch.tasks {
                assert!(seen.insert(t.lease.task_id), "a task was claimed twice");
            }
            let done = batch.tasks.iter().map(|t| (t.lease, None)).collect();
            s.task_complete_many(TaskCompleteParams { tasks: done, delete_completed: false }).await.unwrap();
        }
        // whatever the race left unclaimed goes now
        loop {
            let rest = s.task_claim(claim(100)).await.unwrap().tasks;
            if rest.is_empty() {
                break;
            }
            let done = rest.iter().map(|t| (t.lease, None)).collect();
            s.task_complete_many(TaskCompleteParams { tasks: done, delete_completed: false }).await.unwrap();
        }
        if contended {
            return;
        }
    }
    panic!("twenty rounds of eight racing claims never reported contention");
}

/// Retention deletes tasks that finished long enough ago, in batches; never a live task, a recent one,
/// or one whose idempotency key is still remembered.
pub async fn retention_prunes_old_finished_tasks_only<B: Backend>(b: &B) {
    let s = b.store();
    let finish = |state: TaskState| {
        let s = s.clone();
        async move {
            let id = s.task_insert(task("k", 0)).await.unwrap();
            let c = claim_one(&s).await;
            assert_eq!(c.lease.task_id, id);
            if state == TaskState::Completed {
                s.task_complete_many(TaskCompleteParams { tasks: vec![(c.lease, None)], delete_completed: false })
                    .await
                    .unwrap();
            } else {
                s.task_finish(TaskFinishParams { lease: c.lease, state, reason: "done".into() }).await.unwrap();
            }
            id
        }
    };
    let old: Vec<TaskId> = vec![
        finish(TaskState::Completed).await,
        finish(TaskState::Cancelled).await,
        finish(TaskState::Discarded).await,
    ];
    let recent = finish(TaskState::Completed).await;
    let running = s.task_insert(task("k", 1)).await.unwrap();
    assert_eq!(claim_one(&s).await.lease.task_id, running);
    let keyed = |key: &str, retain: Option<Duration>| NewTask {
        idempotency: Some(Idempotency { retain, ..Idempotency::new(key) }),
        ..task("k", 2)
    };
    let mut kept_for_key = Vec::new();
    for (key, retain) in [("forever", None), ("a-day", Some(Duration::from_secs(86_400)))] {
        let id = s.task_insert_idempotent(keyed(key, retain)).await.unwrap().id;
        let c = claim_one(&s).await;
        s.task_complete_many(TaskCompleteParams { tasks: vec![(c.lease, None)], delete_completed: false })
            .await
            .unwrap();
        kept_for_key.push(id);
    }
    let available = s.task_insert(task("k", 3)).await.unwrap();
    for id in old.iter().chain(&kept_for_key) {
        b.finish_long_ago(*id).await;
    }

    let prune = |limit| s.task_prune(TaskPruneParams { older_than: Duration::from_secs(1800), limit });
    assert_eq!(prune(2).await.unwrap(), 2, "a batch is bounded by its limit");
    assert_eq!(prune(1000).await.unwrap(), 1);
    assert_eq!(prune(1000).await.unwrap(), 0);
    for id in &old {
        assert!(matches!(s.task_get(*id).await, Err(Error::NotFound(_))), "an old finished task was kept");
    }
    for id in [recent, running, available].iter().chain(&kept_for_key) {
        s.task_get(*id).await.unwrap_or_else(|e| panic!("task {id} was pruned: {e}"));
    }
}

/// A keyed task is pruned once its key's retention has passed after it finished, which frees the key;
/// and the holder of a task cancelled while it ran, then pruned, is still refused: with no row left to
/// carry its token, every write answers that the lease was lost.
pub async fn retention_frees_keys_and_keeps_pruned_holders_fenced<B: Backend>(b: &B) {
    let s = b.store();
    let key = Idempotency { retain: Some(Duration::from_secs(60)), ..Idempotency::new("a-minute") };
    let keyed = NewTask { idempotency: Some(key), ..task("k", 0) };
    let first = s.task_insert_idempotent(keyed.clone()).await.unwrap().id;
    let c = claim_one(&s).await;
    s.task_complete_many(TaskCompleteParams { tasks: vec![(c.lease, None)], delete_completed: false }).await.unwrap();
    let cancelled = s.task_insert(task("k", 1)).await.unwrap();
    let holder = claim_one(&s).await;
    assert_eq!(holder.lease.task_id, cancelled);
    s.task_cancel(TaskCancelParams { id: cancelled }).await.unwrap();
    for id in [first, cancelled] {
        b.finish_long_ago(id).await;
    }
    let pruned = s.task_prune(TaskPruneParams { older_than: Duration::from_secs(1800), limit: 1000 }).await;
    assert_eq!(pruned.unwrap(), 2);
    for id in [first, cancelled] {
        assert!(matches!(s.task_get(id).await, Err(Error::NotFound(_))), "task {id} was kept");
    }
    let again = s.task_insert_idempotent(NewTask { id: TaskId::new(), ..keyed }).await.unwrap();
    assert!(!again.existing && again.id != first, "the key was still held after its retention: {again:?}");

    let lease = holder.lease;
    let st = s.task_complete_many(TaskCompleteParams { tasks: vec![(lease, None)], delete_completed: false }).await;
    assert_eq!(st.unwrap(), vec![CompletionStatus::LeaseLost]);
    let lost = |r: Result<()>| {
        assert!(matches!(r, Err(Error::LeaseLost { task_id, .. }) if task_id == cancelled), "{r:?}");
    };
    lost(s.task_retry(TaskRetryParams { lease, error: "late".into(), retry_in: None }).await.map(|_| ()));
    lost(s.task_snooze(TaskSnoozeParams { lease, delay: Duration::ZERO }).await);
    lost(s.task_finish(TaskFinishParams { lease, state: TaskState::Discarded, reason: "late".into() }).await);
    let released = s.task_release(TaskReleaseParams { leases: vec![lease], lease_lost: true }).await.unwrap();
    assert!(released.is_empty());
    let renewed = s.lease_renew(LeaseRenewParams { leases: vec![(lease, Duration::from_secs(30))] }).await.unwrap();
    assert_eq!(renewed, LeaseRenewal::default());
    assert!(matches!(s.task_get(cancelled).await, Err(Error::NotFound(_))), "a late write brought the task back");
}

/// A worker with a retention deletes the tasks it finished once they are that old, and keeps the live
/// ones.
pub async fn worker_prunes_finished_tasks_after_its_retention<B: Backend>(b: &B) {
    let client = Client::new(b.store());
    let w = worker(b, Probe::default()).retention(Some(Duration::from_secs(1))).build().unwrap();
    w.start().await;
    let done = client.enqueue(Echo { n: 1 }).await.unwrap();
    let later =
        client.enqueue_with(Echo { n: 2 }, EnqueueOptions::default().delay(Duration::from_secs(3600))).await.unwrap();
    wait_state(client.store(), done, TaskState::Completed).await;
    wait::until("the finished task to be pruned", WAIT, || async {
        matches!(client.task(done).await, Err(Error::NotFound(_))).then_some(())
    })
    .await;
    assert_eq!(client.task(later).await.unwrap().state, TaskState::Available, "a live task was pruned");
    w.stop().await;
}

/// A batch keeps every task's own fields, whether its tasks differ (kind, queue, priority, attempts,
/// lease, delay) or are alike but for their payloads.
pub async fn batches_keep_each_tasks_fields<B: Backend>(b: &B) {
    let s = b.store();
    let mixed = vec![
        NewTask { priority: 3, max_attempts: 2, ..task("a", 1) },
        NewTask { queue: "other".into(), lease_ttl: Some(Duration::from_secs(90)), ..task("b", 2) },
        NewTask { delay: Some(Duration::from_secs(3600)), ..task("a", 3) },
    ];
    let alike: Vec<NewTask> = (10..13).map(|n| NewTask { priority: 7, max_attempts: 4, ..task("c", n) }).collect();
    // batches whose tasks differ only in id and payload bind the other columns once: each one must land
    let later = Some(Duration::from_secs(3600));
    let alike_later: Vec<NewTask> =
        (20..23).map(|n| NewTask { queue: "later".into(), delay: later, ..task("d", n) }).collect();
    let ttl = Some(Duration::from_secs(45));
    let alike_ttl: Vec<NewTask> =
        (30..33).map(|n| NewTask { queue: "ttl".into(), lease_ttl: ttl, ..task("e", n) }).collect();
    for batch in [mixed, alike, alike_later, alike_ttl] {
        let ids = s.task_insert_many(batch.clone()).await.unwrap();
        assert_eq!(ids, batch.iter().map(|t| t.id).collect::<Vec<_>>());
        for (id, t) in ids.iter().zip(&batch) {
            let rec = s.task_get(*id).await.unwrap();
            assert_eq!(
                (rec.kind.as_str(), rec.queue.as_str(), &rec.payload, rec.priority, rec.max_attempts),
                (t.kind.as_str(), t.queue.as_str(), &t.payload, t.priority, t.max_attempts),
                "{id}"
            );
            let due_later = rec.run_at > chrono::Utc::now() + chrono::Duration::minutes(30);
            assert_eq!(due_later, t.delay.is_some(), "{id}: run_at {}", rec.run_at);
        }
    }
    let other = TaskClaimParams { queues: vec!["other".into()], ..claim(10) };
    let got = s.task_claim(other).await.unwrap().tasks;
    assert_eq!((got.len(), got[0].lease_ttl), (1, Duration::from_secs(90)));
    let with_ttl = TaskClaimParams { queues: vec!["ttl".into()], ..claim(10) };
    let got = s.task_claim(with_ttl).await.unwrap().tasks;
    assert_eq!(got.iter().map(|t| t.lease_ttl).collect::<Vec<_>>(), vec![Duration::from_secs(45); 3]);
}

/// Queue names are data, whatever characters they hold: quotes, backslashes, braces, SQL.
pub async fn any_queue_name_is_claimed<B: Backend>(b: &B) {
    let s = b.store();
    let names = [
        "it's",
        r"back\slash",
        "{limit}",
        "{queues}",
        "q'); DROP TABLE x; --",
        "line\nbreak",
        "a\n--\n'b",
        "ünïcode ✓",
    ];
    for name in names {
        s.task_insert(NewTask { queue: name.to_owned(), ..task("k", 0) }).await.unwrap();
    }
    for name in names {
        let got = s.task_claim(TaskClaimParams { queues: vec![name.to_owned()], ..claim(10) }).await.unwrap().tasks;
        assert_eq!(got.iter().map(|t| t.queue.as_str()).collect::<Vec<_>>(), vec![name], "{name}");
    }
    let all = s.task_claim(TaskClaimParams { queues: names.map(str::to_owned).to_vec(), ..claim(10) }).await;
    assert!(all.unwrap().tasks.is_empty(), "every task was claimed once");
}

/// A claim that names a queue twice claims each of its tasks once: the limit counts tasks, and every
/// token stays unique and greater than the last claim's.
pub async fn a_queue_named_twice_is_claimed_once<B: Backend>(b: &B) {
    let s = b.store();
    s.task_insert_many((0..6).map(|n| task("k", n)).collect()).await.unwrap();
    let twice = TaskClaimParams { queues: vec![DEFAULT_QUEUE.to_owned(), DEFAULT_QUEUE.to_owned()], ..claim(4) };
    let first = s.task_claim(twice).await.unwrap().tasks;
    let mut ids: Vec<TaskId> = first.iter().map(|t| t.lease.task_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!((first.len(), ids.len()), (4, 4), "four tasks, each once");
    let rest = s.task_claim(claim(4)).await.unwrap().tasks;
    assert_eq!(rest.len(), 2);
    let mut fences: Vec<FencingToken> = first.iter().chain(&rest).map(|t| t.lease.fence).collect();
    let newest_first = first.iter().map(|t| t.lease.fence).max().unwrap();
    assert!(rest.iter().all(|t| t.lease.fence > newest_first), "{first:?} then {rest:?}");
    fences.sort();
    fences.dedup();
    assert_eq!(fences.len(), 6, "a token was handed out twice: {first:?} then {rest:?}");
}
