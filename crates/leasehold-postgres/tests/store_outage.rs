//! A worker across a store that fails for a while: the outcome of a job that finished meanwhile is
//! written once the store answers, as long as the worker still trusts the lease, and is not run again; a
//! renewal that failed is tried again soon enough to keep the jobs running; a completion the store
//! refuses for good does not fail the others written with it.

use std::time::Duration;

use leasehold::{Client, EnqueueOptions, Job, JobContext, JobResult, Outcome, Worker};
use leasehold_core::*;
use leasehold_postgres::PgStore;
use leasehold_testkit::jobs::three_second_leases;
use leasehold_testkit::pg::TestDb;
use leasehold_testkit::wait;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// Completes once its gate opens, or fails (and is discarded) when told to.
#[derive(Serialize, Deserialize)]
struct Gated {
    fail: bool,
}

impl Job for Gated {
    const KIND: &'static str = "gated";
    type State = watch::Receiver<bool>;
    async fn run(self, ctx: JobContext<watch::Receiver<bool>>) -> JobResult {
        let mut gate = ctx.state().clone();
        gate.wait_for(|open| *open).await.ok();
        Ok(if self.fail { Outcome::Fail("told to fail".into()) } else { Outcome::Complete })
    }
}

/// Twenty gated jobs running on a worker of their own, on a fresh database.
struct Gates {
    db: TestDb,
    store: PgStore,
    w: Worker<PgStore, watch::Receiver<bool>>,
    ids: Vec<TaskId>,
    /// Opens every job's gate.
    open: watch::Sender<bool>,
}

/// Starts twenty [`Gated`] jobs (the `n`th told to fail when `fail(n)`) and waits until all run.
async fn twenty_gated(fail: impl Fn(u32) -> bool) -> Gates {
    let db = TestDb::create().await;
    let store = db.store();
    let (open, gate) = watch::channel(false);
    let w = Worker::builder_with_state(store.clone(), gate)
        .register::<Gated>()
        .concurrency(20)
        .poll_interval(Duration::from_millis(200))
        .build()
        .unwrap();
    let jobs = (0..20).map(|n| Gated { fail: fail(n) });
    let ids = Client::new(store.clone()).enqueue_many(jobs, EnqueueOptions::default()).await.unwrap();
    w.start().await;
    wait::until("every job to start", Duration::from_secs(15), || async { (w.stats().claimed == 20).then_some(()) })
        .await;
    Gates { db, store, w, ids, open }
}

/// While the server answers every completion with an error of a server going away (SQLSTATE 57P01,
/// what each pooled connection answers once after a restart), for longer than the completer once tried
/// (about 1.3 s), twenty jobs return, ten to be completed and ten to be discarded: every outcome is
/// written once the server answers again, each on the task's first attempt, with no write counted as
/// failed. Before, the completer gave up after three tries, and the other outcomes were not tried again
/// at all: the tasks ran again once their leases expired. (A server that is down for good is waited for
/// inside the pool's connect, which retries a refused connection by itself; what fails at once is a
/// connection that broke, and a server going away.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_are_written_after_the_store_comes_back_while_the_leases_are_trusted() {
    let Gates { db, store, w, ids, open } = twenty_gated(|n| n % 2 == 1).await;

    // counts the statements it refuses, completions and finishes apart (a sequence is not rolled back)
    sqlx::raw_sql(
        "CREATE SEQUENCE refused_completions; CREATE SEQUENCE refused_finishes;
         CREATE FUNCTION going_away() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             PERFORM nextval(CASE WHEN NEW.state = 'completed' THEN 'refused_completions' ELSE 'refused_finishes' END);
             RAISE EXCEPTION 'the server is going away' USING ERRCODE = '57P01';
         END $$;
         CREATE TRIGGER going_away BEFORE UPDATE ON leasehold.tasks
            FOR EACH ROW WHEN (NEW.state IN ('completed', 'discarded')) EXECUTE FUNCTION going_away();",
    )
    .execute(db.pool())
    .await
    .unwrap();
    open.send(true).unwrap();
    // the jobs return at once, and their outcomes are refused until each finish was tried six times (its
    // tries at 0, 50, 300, 800, 1,800 and 2,800 ms): longer than the completer's three retries once lasted
    let counts = "SELECT (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM refused_completions),
                         (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM refused_finishes)";
    wait::until("the outcomes to be refused for a while", Duration::from_secs(20), || async {
        let (completions, finishes): (i64, i64) = sqlx::query_as(counts).fetch_one(db.pool()).await.unwrap();
        (completions >= 6 && finishes >= 60).then_some(())
    })
    .await;
    let written: i64 = sqlx::query_scalar("SELECT count(*) FROM leasehold.tasks WHERE state <> 'running'")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(written, 0, "an outcome got past the trigger");
    sqlx::raw_sql("DROP TRIGGER going_away ON leasehold.tasks").execute(db.pool()).await.unwrap();

    wait::until("every outcome to be written", Duration::from_secs(20), || async {
        let mut done = 0;
        for id in &ids {
            if let Ok(rec) = store.task_get(*id).await {
                done += usize::from(matches!(rec.state, TaskState::Completed | TaskState::Discarded));
            }
        }
        (done == ids.len()).then_some(())
    })
    .await;
    for id in &ids {
        let rec = store.task_get(*id).await.unwrap();
        assert_eq!((rec.attempt, rec.lease_losses), (1, 0), "task {id} ran again");
    }
    w.stop().await;
    let st = w.stats();
    assert_eq!((st.completed, st.discarded, st.write_errors, st.lease_lost), (10, 10, 0, 0), "{st:?}");
}

/// One completion the store refuses (a value it will not take, SQLSTATE 22023) among twenty written
/// together: the batch is written in halves until the refused one is alone, so the other nineteen are
/// completed at once, and only the refused one is settled as a failed write (it runs again once its lease
/// expires). Before, the whole batch failed with it. (Which completions share a batch depends on when the
/// completer wakes: the first batch often holds one or two, the next the rest. In the rare run where the
/// refused one is alone in its batch, nothing needs splitting and the test checks only the outcome.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_the_store_refuses_does_not_fail_the_rest_of_its_batch() {
    let Gates { db, store, w, ids, open } = twenty_gated(|_| false).await;
    let refused = ids[7];
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             RAISE EXCEPTION 'not this one' USING ERRCODE = '22023';
         END $$;
         CREATE TRIGGER refuse BEFORE UPDATE ON leasehold.tasks
            FOR EACH ROW WHEN (NEW.id = '{refused}' AND NEW.state = 'completed') EXECUTE FUNCTION refuse();"
    )))
    .execute(db.pool())
    .await
    .unwrap();
    // the jobs return together, so their completions are queued together and written in one batch or few
    open.send(true).unwrap();
    wait::until("the refused completion to be settled", Duration::from_secs(20), || async {
        (w.stats().write_errors + w.stats().completed == 20).then_some(())
    })
    .await;
    let st = w.stats();
    assert_eq!((st.completed, st.write_errors), (19, 1), "{st:?}");
    for id in &ids {
        let state = store.task_get(*id).await.unwrap().state;
        let expected = if *id == refused { TaskState::Running } else { TaskState::Completed };
        assert_eq!(state, expected, "task {id}");
    }
    w.stop().await;
}

/// Two renewal rounds in a row refused (a server going away), then the store answers again before the
/// trust window ends: the job keeps running and completes on its first attempt. With `L` 3 s, `H` 1 s and
/// `M` 0.5 s, rounds a whole `H` apart after a failure put the third past the trust window (at 3 s,
/// against 2.5 s), and the job was cancelled though the store was back; a failed round is now tried again
/// after `H / 4`. Counted by the refused statements, not timed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_renewal_is_tried_again_before_the_trust_window_ends() {
    use leasehold_testkit::jobs::{Probe, UntilCancelled};

    let db = TestDb::create().await;
    let store = db.store();
    let client = Client::new(store.clone());
    sqlx::raw_sql(
        "CREATE SEQUENCE refused_renewals;
         CREATE FUNCTION refuse_renewals() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF nextval('refused_renewals') <= 2 THEN
                 RAISE EXCEPTION 'the server is going away' USING ERRCODE = '57P01';
             END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER refuse_renewals BEFORE UPDATE ON leasehold.tasks
            FOR EACH ROW WHEN (OLD.state = 'running' AND NEW.state = 'running') EXECUTE FUNCTION refuse_renewals();",
    )
    .execute(db.pool())
    .await
    .unwrap();
    let builder = Worker::builder_with_state(store.clone(), Probe::default()).register::<UntilCancelled>();
    let w = three_second_leases(builder).build().unwrap();
    // runs for 3.5 s unless cancelled: past the trust window of its claim's lease
    let id = client.enqueue(UntilCancelled { max_ms: 3_500 }).await.unwrap();
    w.start().await;
    let rec = wait::until("the job to finish", Duration::from_secs(20), || async {
        Some(store.task_get(id).await.unwrap()).filter(|r| r.state != TaskState::Running && r.attempt > 0)
    })
    .await;
    assert!(!w.state().saw_cancel(id), "the job was cancelled while the store was back");
    assert_eq!((rec.state, rec.attempt, rec.lease_losses), (TaskState::Completed, 1, 0));
    w.stop().await;
    assert_eq!(w.stats().renew_failures, 2);
}
