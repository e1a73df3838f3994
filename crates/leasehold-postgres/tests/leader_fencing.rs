//! A leader's tick is fenced by its term up to its commit: a takeover that commits while the old leader's
//! tick transaction is open either ends that tick or waits for it, never lets it land after the new
//! leader read the schedule.

use std::time::Duration;

use chrono::Utc;
use leasehold_core::schedule::{LeaderAcquireParams, LeaderToken, MissedPolicy, OverlapPolicy, TickOutcome};
use leasehold_core::*;
use leasehold_testkit::cron_cases::{every_second, tick};
use leasehold_testkit::pg::TestDb;
use leasehold_testkit::wait;

const LEASE: &str = "fencing-lease";

/// The takeover runs in a transaction of the test's own, left open while the old leader records its tick
/// (as a new leader's acquisition is, between its update of the leader row and its commit). The old
/// leader's tick must not commit under the term that is ending: it waits for the takeover and is then
/// refused, with nothing written. Checked without the lock, the old term's read of the leader row saw the
/// committed row of its own term and the tick was written (a run, a ledger row, the schedule advanced)
/// after the new leader had taken over.
#[tokio::test]
async fn a_tick_recorded_across_a_takeover_is_refused_whole() {
    let db = TestDb::create().await;
    let store = db.store();
    let acquire = LeaderAcquireParams { name: LEASE.into(), holder: "a".into(), ttl: Duration::from_secs(30) };
    let token = store.leader_acquire(acquire).await.unwrap().expect("a leads");
    let def = every_second("fenced-race", MissedPolicy::Skip, OverlapPolicy::Skip);
    let old = LeaderToken { name: LEASE.into(), holder: "a".into(), token };
    let before = store.schedule_upsert(old.clone(), def.clone()).await.unwrap();

    let mut takeover = db.pool().begin().await.unwrap();
    sqlx::query(
        "UPDATE leasehold.leaders SET holder = 'b', token = nextval('leasehold.fence_seq'),
                expires_at = now() + interval '30 seconds'
          WHERE name = $1",
    )
    .bind(LEASE)
    .execute(&mut *takeover)
    .await
    .unwrap();

    let recording = tokio::spawn({
        let store = store.clone();
        let params = tick(old, &def, Utc::now(), TickOutcome::Enqueued);
        async move { store.schedule_tick_record(params).await }
    });
    // the tick either ended (written before the takeover committed: the failure this test is for) or
    // waits on the leader row, which the takeover holds
    let waits = "SELECT count(*) FROM pg_stat_activity
                  WHERE datname = current_database() AND wait_event_type = 'Lock'";
    wait::until("the tick to end or to wait for the takeover", Duration::from_secs(10), || async {
        let waiting: i64 = sqlx::query_scalar(waits).fetch_one(db.pool()).await.unwrap();
        (waiting > 0 || recording.is_finished()).then_some(())
    })
    .await;
    takeover.commit().await.unwrap();

    let recorded = recording.await.unwrap();
    assert!(matches!(recorded, Err(Error::LeadershipLost { .. })), "the old term recorded its tick: {recorded:?}");
    let ledger: i64 =
        sqlx::query_scalar("SELECT count(*) FROM leasehold.schedule_ticks").fetch_one(db.pool()).await.unwrap();
    let tasks: i64 = sqlx::query_scalar("SELECT count(*) FROM leasehold.tasks").fetch_one(db.pool()).await.unwrap();
    assert_eq!((ledger, tasks), (0, 0), "the refused tick left a ledger row or a run");
    let after = store.schedule_list().await.unwrap().remove(0);
    assert_eq!((after.last_tick, after.last_task), (before.last_tick, None), "the refused tick advanced the schedule");
}
