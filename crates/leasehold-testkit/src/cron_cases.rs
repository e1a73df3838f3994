//! Conformance cases for singleton scheduled jobs: the leader lease, the per-tick ledger, and whole
//! scheduler passes at injected times. Expanded by [`crate::conformance_tests!`] with the rest.

use std::time::Duration;

use chrono::{DateTime, Utc};

use leasehold::Client;
use leasehold::cron::{MissedPolicy, OverlapPolicy, Schedule, Scheduler, TickOutcome};
use leasehold_core::schedule::*;
use leasehold_core::*;

use crate::backend::Backend;
use crate::jobs::Echo;

fn acquire(holder: &str) -> LeaderAcquireParams {
    LeaderAcquireParams { name: "suite-lease".into(), holder: holder.into(), ttl: Duration::from_secs(30) }
}

/// The leader lease: one holder at a time, the same term while it renews, a new greater token after
/// it expires; a stale or released term's writes (ticks, definitions) refused, and its release a no-op.
pub async fn leader_terms_are_fenced<B: Backend>(b: &B) {
    let s = b.store();
    let t1 = s.leader_acquire(acquire("a")).await.unwrap().expect("a leads");
    assert_eq!(s.leader_acquire(acquire("b")).await.unwrap(), None, "two leaders at once");
    assert_eq!(s.leader_acquire(acquire("a")).await.unwrap(), Some(t1), "a renewal began a new term");
    b.expire_leader("suite-lease").await;
    let t2 = s.leader_acquire(acquire("b")).await.unwrap().expect("b takes over after expiry");
    assert!(t2 > t1);
    assert_eq!(s.leader_get("suite-lease").await.unwrap().map(|r| (r.holder, r.token)), Some(("b".into(), t2)));
    let current = LeaderToken { name: "suite-lease".into(), holder: "b".into(), token: t2 };
    let def = every_second("fenced", MissedPolicy::Skip, OverlapPolicy::Allow);
    let written = s.schedule_upsert(current.clone(), def.clone()).await.unwrap();
    let stale = LeaderToken { name: "suite-lease".into(), holder: "a".into(), token: t1 };
    let r = s.schedule_tick_record(tick(stale.clone(), &def, Utc::now(), TickOutcome::Enqueued)).await;
    assert!(matches!(r, Err(Error::LeadershipLost { .. })), "{r:?}");
    // a stale term's definitions are refused: neither written over the current term's, nor retired
    let older = ScheduleDef { expression: "*/5 * * * * *".into(), ..def.clone() };
    let r = s.schedule_upsert(stale.clone(), older).await;
    assert!(matches!(r, Err(Error::LeadershipLost { .. })), "{r:?}");
    let r = s.schedule_upsert(stale.clone(), every_second("stale-only", MissedPolicy::Skip, OverlapPolicy::Allow));
    assert!(matches!(r.await, Err(Error::LeadershipLost { .. })), "a stale term defined a schedule");
    let r = s.schedule_retire(stale.clone(), Vec::new()).await;
    assert!(matches!(r, Err(Error::LeadershipLost { .. })), "{r:?}");
    assert_eq!(s.schedule_list().await.unwrap(), vec![written], "a stale term changed the definitions");
    // a stale term's release leaves the current term alone
    s.leader_release(stale).await.unwrap();
    assert_eq!(s.leader_get("suite-lease").await.unwrap().map(|r| r.token), Some(t2), "a stale release ended b's term");
    assert!(s.schedule_tick_record(tick(current.clone(), &def, Utc::now(), TickOutcome::Skipped)).await.unwrap());
    // a released term is over: its writes are refused like an expired one's
    s.leader_release(current.clone()).await.unwrap();
    let r = s.schedule_tick_record(tick(
        current.clone(),
        &def,
        Utc::now() + chrono::Duration::seconds(1),
        TickOutcome::Enqueued,
    ));
    assert!(matches!(r.await, Err(Error::LeadershipLost { .. })), "a released term recorded a tick");
    let r = s.schedule_retire(current, Vec::new()).await;
    assert!(matches!(r, Err(Error::LeadershipLost { .. })), "a released term retired the schedules");
    assert!(s.task_claim(claim_all()).await.unwrap().tasks.is_empty(), "a refused tick left its run");
    assert!(s.leader_acquire(acquire("a")).await.unwrap().is_some(), "a released lease is free at once");
}

/// A tick is written to the ledger once, with one task, however often it is recorded.
pub async fn a_tick_is_recorded_once<B: Backend>(b: &B) {
    let s = b.store();
    let token = s.leader_acquire(acquire("a")).await.unwrap().unwrap();
    let leader = LeaderToken { name: "suite-lease".into(), holder: "a".into(), token };
    let def = every_second("once", MissedPolicy::Skip, OverlapPolicy::Allow);
    s.schedule_upsert(leader.clone(), def.clone()).await.unwrap();
    let at = Utc::now();
    assert!(s.schedule_tick_record(tick(leader.clone(), &def, at, TickOutcome::Enqueued)).await.unwrap());
    assert!(!s.schedule_tick_record(tick(leader, &def, at, TickOutcome::Enqueued)).await.unwrap());
    let claimed = s.task_claim(claim_all()).await.unwrap().tasks;
    assert_eq!(claimed.len(), 1, "a tick enqueued twice");
    let rec = &s.schedule_list().await.unwrap()[0];
    assert_eq!(rec.last_task, Some(claimed[0].lease.task_id));
    assert!(rec.last_tick.unwrap() >= at - chrono::Duration::milliseconds(1));
}

/// Definitions: a new one starts now, a changed one keeps its progress, a removed one is marked;
/// pause, resume and trigger are recorded; an unknown name is `ScheduleNotFound`.
pub async fn schedules_are_defined_and_controlled<B: Backend>(b: &B) {
    let s = b.store();
    let token = s.leader_acquire(acquire("a")).await.unwrap().unwrap();
    let leader = LeaderToken { name: "suite-lease".into(), holder: "a".into(), token };
    let before = Utc::now() - chrono::Duration::seconds(1);
    let a =
        s.schedule_upsert(leader.clone(), every_second("a", MissedPolicy::Skip, OverlapPolicy::Skip)).await.unwrap();
    assert!(a.last_tick.unwrap() >= before && !a.paused && !a.removed);
    let changed = ScheduleDef { expression: "*/5 * * * * *".into(), ..a.def.clone() };
    let a2 = s.schedule_upsert(leader.clone(), changed).await.unwrap();
    assert_eq!((a2.def.expression.as_str(), a2.last_tick), ("*/5 * * * * *", a.last_tick));
    s.schedule_upsert(leader.clone(), every_second("b", MissedPolicy::Skip, OverlapPolicy::Skip)).await.unwrap();
    s.schedule_retire(leader, vec!["a".into()]).await.unwrap();
    let all = s.schedule_list().await.unwrap();
    assert_eq!(
        all.iter().map(|r| (r.def.name.as_str(), r.removed)).collect::<Vec<_>>(),
        vec![("a", false), ("b", true)]
    );
    assert!(s.schedule_control("a", ScheduleAction::Pause).await.unwrap().paused);
    assert!(!s.schedule_control("a", ScheduleAction::Resume).await.unwrap().paused);
    assert!(s.schedule_control("a", ScheduleAction::Trigger).await.unwrap().trigger_at.is_some());
    assert!(matches!(s.schedule_control("nope", ScheduleAction::Pause).await, Err(Error::ScheduleNotFound(_))));
}

/// Whole passes at injected times: on-time ticks run once; a second scheduler on the same store does
/// not lead and enqueues nothing; missed ticks follow the policy.
pub async fn scheduler_runs_each_tick_once_and_follows_the_missed_policy<B: Backend>(b: &B) {
    let client = Client::new(b.store());
    let coalesce =
        Schedule::builder("coalesce", "* * * * * *").missed(MissedPolicy::Coalesce).overlap(OverlapPolicy::Allow);
    let catch_up = Schedule::builder("catch-up", "* * * * * *")
        .missed(MissedPolicy::catch_up(Duration::from_secs(60), 100))
        .overlap(OverlapPolicy::Allow);
    let make = |holder: &str| {
        Scheduler::builder(b.store())
            .schedule(coalesce.clone().job(&Echo { n: 1 }).unwrap())
            .schedule(catch_up.clone().job(&Echo { n: 2 }).unwrap())
            .holder(holder)
            .build()
            .unwrap()
    };
    let (one, two) = (make("one"), make("two"));
    let first = one.run_once(Utc::now()).await.unwrap();
    assert!(first.leading);
    let start = last_tick(&client, "coalesce").await;
    let now = start + chrono::Duration::milliseconds(2_500);
    let report = one.run_once(now).await.unwrap();
    // two or three whole seconds fall in the 2.5 s, by the sub-second phase of the start
    let on_time = report.ticks.len();
    assert!((4..=6).contains(&on_time), "{:?}", report.ticks);
    assert!(report.ticks.iter().all(|t| t.2 == TickOutcome::Enqueued), "{:?}", report.ticks);
    assert!(!two.run_once(now).await.unwrap().leading, "two leaders");
    assert!(one.run_once(now).await.unwrap().ticks.is_empty(), "a tick ran twice");
    // no leader for 60 s: ticks within the on-time window (lease + pause + 2 s = 18 s) still run on
    // time; older ones are missed, and coalesce runs them once while catch-up runs each of them
    let later = now + chrono::Duration::seconds(60);
    let report = one.run_once(later).await.unwrap();
    let c = outcomes(&report.ticks, "coalesce");
    assert_eq!(c.iter().filter(|o| **o == TickOutcome::CaughtUp).count(), 1, "{c:?}");
    assert!(c.iter().filter(|o| **o == TickOutcome::Missed).count() >= 35, "{c:?}");
    assert!(c.iter().filter(|o| **o == TickOutcome::Enqueued).count() >= 17, "{c:?}");
    let u = outcomes(&report.ticks, "catch-up");
    assert!(u.len() >= 58 && u.iter().all(|o| o.runs()), "{u:?}");
    let runs = report.ticks.iter().filter(|t| t.2.runs()).count();
    let queued = b.store().task_claim(claim_all()).await.unwrap().tasks.len();
    assert_eq!(queued, runs + on_time, "every run is one task");
}

/// Overlap policies at injected times: skip while the previous run is unfinished, buffer one and run
/// it when the previous finishes, cancel the previous.
pub async fn scheduler_follows_the_overlap_policy<B: Backend>(b: &B) {
    let s = b.store();
    let client = Client::new(s.clone());
    let sched =
        |name: &str, overlap| Schedule::builder(name, "* * * * * *").overlap(overlap).job(&Echo { n: 0 }).unwrap();
    let scheduler = Scheduler::builder(s.clone())
        .schedule(sched("skip", OverlapPolicy::Skip))
        .schedule(sched("buffer", OverlapPolicy::BufferOne))
        .schedule(sched("cancel", OverlapPolicy::CancelPrevious))
        .holder("solo")
        .build()
        .unwrap();
    scheduler.run_once(Utc::now()).await.unwrap();
    let start = last_tick(&client, "skip").await;
    // three or four ticks in one pass (by the sub-second phase), no worker running: the first runs, the
    // others meet an unfinished run
    let report = scheduler.run_once(start + chrono::Duration::milliseconds(3_200)).await.unwrap();
    use TickOutcome::*;
    // each schedule started from the store's `now` when it was written, so a second boundary between
    // two of those writes gives one of them a tick more: each is checked against its own count
    let expect = |name: &str, first: &[TickOutcome], then: TickOutcome| {
        let got = outcomes(&report.ticks, name);
        assert!(got.len() == 3 || got.len() == 4, "{name}: {:?}", report.ticks);
        let want: Vec<_> = first.iter().copied().chain(std::iter::repeat_n(then, got.len() - first.len())).collect();
        assert_eq!(got, want, "{name}");
    };
    expect("skip", &[Enqueued], Skipped);
    expect("buffer", &[Enqueued, Buffered], Skipped);
    expect("cancel", &[], Enqueued);
    let record = |name: &str| {
        let (name, client) = (name.to_owned(), client.clone());
        async move { client.schedules().await.unwrap().into_iter().find(|i| i.record.def.name == name).unwrap().record }
    };
    let buffer = record("buffer").await;
    assert!(buffer.buffered_tick.is_some());
    // claimable runs: one per schedule; "cancel" cancelled its first two, "skip" and "buffer" made no more
    let claimed = s.task_claim(claim_all()).await.unwrap().tasks;
    assert_eq!(claimed.len(), 3, "{claimed:?}");
    let cancel_last = record("cancel").await.last_task.unwrap();
    assert!(claimed.iter().any(|c| c.lease.task_id == cancel_last), "the latest run was cancelled");
    // finish the buffer schedule's run: the held tick runs at the next pass
    let prev = claimed.iter().find(|c| Some(c.lease.task_id) == buffer.last_task).unwrap().lease;
    s.task_complete_many(TaskCompleteParams { tasks: vec![(prev, None)], delete_completed: false }).await.unwrap();
    let report = scheduler.run_once(start + chrono::Duration::milliseconds(3_200)).await.unwrap();
    assert_eq!(outcomes(&report.ticks, "buffer"), vec![CaughtUp]);
    assert!(record("buffer").await.buffered_tick.is_none());
}

/// Pause stops firing, trigger runs once now, and a schedule missing from the leader's code stops.
pub async fn scheduler_obeys_pause_trigger_and_removal<B: Backend>(b: &B) {
    let s = b.store();
    let client = Client::new(s.clone());
    let def =
        |name: &str| Schedule::builder(name, "* * * * * *").overlap(OverlapPolicy::Allow).job(&Echo { n: 0 }).unwrap();
    let full =
        Scheduler::builder(s.clone()).schedule(def("kept")).schedule(def("dropped")).holder("old").build().unwrap();
    full.run_once(Utc::now()).await.unwrap();
    client.pause_schedule("kept").await.unwrap();
    let report = full.run_once(Utc::now() + chrono::Duration::seconds(2)).await.unwrap();
    assert!(outcomes(&report.ticks, "kept").is_empty(), "a paused schedule fired");
    client.resume_schedule("kept").await.unwrap();
    client.trigger_schedule("kept").await.unwrap();
    full.stop().await; // hands leadership over
    // a new deploy without "dropped"
    let next = Scheduler::builder(s.clone()).schedule(def("kept")).holder("new").build().unwrap();
    let report = next.run_once(Utc::now()).await.unwrap();
    assert!(report.leading);
    assert_eq!(outcomes(&report.ticks, "kept").first(), Some(&TickOutcome::Triggered));
    // the old deploy, which still defines "dropped", no longer leads
    assert!(!full.run_once(Utc::now() + chrono::Duration::seconds(3)).await.unwrap().leading);
    let infos = client.schedules().await.unwrap();
    let dropped = infos.iter().find(|i| i.record.def.name == "dropped").unwrap();
    assert!(dropped.record.removed && dropped.next_tick.is_none());
    let kept = infos.iter().find(|i| i.record.def.name == "kept").unwrap();
    assert!(kept.next_tick.is_some() && kept.record.trigger_at.is_none());
}

/// A started scheduler that is dropped without `stop` stops leading: its lease is no longer renewed, and
/// another instance takes over once it expires, where the dropped one's loop used to lead on unseen.
pub async fn a_dropped_scheduler_stops_leading<B: Backend>(b: &B) {
    let make = |holder: &str| {
        Scheduler::builder(b.store())
            .schedule(Schedule::builder("dropped", "0 0 0 1 1 *").job(&Echo { n: 0 }).unwrap())
            .holder(holder)
            .lease(Duration::from_secs(1), Duration::from_millis(200), Duration::from_millis(300))
            .build()
            .unwrap()
    };
    let first = make("first");
    let lease = leasehold::cron::SchedulerConfig::DEFAULT_LEASE_NAME;
    first.start().await;
    let s = b.store();
    let held = crate::wait::until("the first scheduler to lead", Duration::from_secs(10), || async {
        s.leader_get(lease).await.unwrap().filter(|r| r.holder.starts_with("first"))
    })
    .await;
    drop(first);
    let second = make("second");
    let report = crate::wait::until("the second scheduler to lead", Duration::from_secs(10), || async {
        Some(second.run_once(Utc::now()).await.unwrap()).filter(|r| r.leading)
    })
    .await;
    assert!(report.leading);
    let now = s.leader_get(lease).await.unwrap().unwrap();
    assert!(now.holder.starts_with("second") && now.token > held.token);
}

/// A schedule that ticks every second, running the `echo` job.
pub fn every_second(name: &str, missed: MissedPolicy, overlap: OverlapPolicy) -> ScheduleDef {
    ScheduleDef {
        name: name.into(),
        expression: "* * * * * *".into(),
        time_zone: "UTC".into(),
        kind: "echo".into(),
        payload: serde_json::json!({ "n": 1 }),
        queue: DEFAULT_QUEUE.into(),
        max_attempts: 3,
        missed,
        overlap,
    }
}

/// `leader`'s record of `def`'s tick `at`, with `outcome` (and the run it enqueues, when it runs).
pub fn tick(leader: LeaderToken, def: &ScheduleDef, at: DateTime<Utc>, outcome: TickOutcome) -> ScheduleTickParams {
    ScheduleTickParams {
        leader,
        schedule: def.name.clone(),
        tick: at,
        manual: false,
        outcome,
        task: Some(NewTask::new(def.kind.clone(), def.payload.clone())),
        advance_to: at,
        buffer: BufferChange::Keep,
        clear_trigger: false,
        cancel: None,
    }
}

fn claim_all() -> TaskClaimParams {
    TaskClaimParams {
        queues: vec![DEFAULT_QUEUE.into()],
        limit: 1_000,
        default_lease_ttl: Duration::from_secs(30),
        worker_id: "suite".into(),
    }
}

async fn last_tick<S: ScheduleStore>(client: &Client<S>, name: &str) -> DateTime<Utc> {
    let infos = client.schedules().await.unwrap();
    infos.into_iter().find(|i| i.record.def.name == name).and_then(|i| i.record.last_tick).expect("a last tick")
}

fn outcomes(ticks: &[(String, DateTime<Utc>, TickOutcome)], name: &str) -> Vec<TickOutcome> {
    ticks.iter().filter(|t| t.0 == name).map(|t| t.2).collect()
}
