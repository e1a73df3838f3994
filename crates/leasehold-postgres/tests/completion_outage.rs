//! Completions across a store outage: a job that finished while the store could not take its completion
//! is completed once it can, as long as the worker still trusts its lease, and is not run again.

use std::time::Duration;

use leasehold::{Client, EnqueueOptions, Job, JobContext, JobResult, Outcome, Worker};
use leasehold_core::*;
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

/// While the server answers every completion with an error of a server going away (SQLSTATE 57P01,
/// what each pooled connection answers once after a restart), for longer than the completer once tried
/// (about 1.3 s), twenty jobs return, ten to be completed and ten to be discarded: every outcome is
/// written once the server answers again, each on the task's first attempt, with no write counted as
/// failed. Before, the completer gave up after three tries, and the other outcomes were not tried again
/// at all: the tasks ran again once their leases expired. (A server that is down for good
/// is waited for inside the pool's connect, which retries a refused connection by itself; what fails at
/// once is a connection that broke, and a server going away.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_are_written_after_the_store_comes_back_while_the_leases_are_trusted() {
    let db = TestDb::create().await;
    let store = db.store();
    let client = Client::new(store.clone());
    let (open, gate) = watch::channel(false);
    let w = Worker::builder_with_state(store.clone(), gate)
        .register::<Gated>()
        .concurrency(20)
        .poll_interval(Duration::from_millis(200))
        .build()
        .unwrap();
    let ids =
        client.enqueue_many((0..20).map(|n| Gated { fail: n % 2 == 1 }), EnqueueOptions::default()).await.unwrap();
    w.start().await;
    wait::until("every job to start", Duration::from_secs(15), || async { (w.stats().claimed == 20).then_some(()) })
        .await;

    sqlx::raw_sql(
        "CREATE FUNCTION going_away() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'the server is going away' USING ERRCODE = '57P01'; END $$;
         CREATE TRIGGER going_away BEFORE UPDATE ON leasehold.tasks
            FOR EACH ROW WHEN (NEW.state IN ('completed', 'discarded')) EXECUTE FUNCTION going_away();",
    )
    .execute(db.pool())
    .await
    .unwrap();
    open.send(true).unwrap();
    // the jobs return at once; their completions are refused for as long as the trigger stays
    tokio::time::sleep(Duration::from_secs(3)).await;
    let refused: i64 = sqlx::query_scalar("SELECT count(*) FROM leasehold.tasks WHERE state <> 'running'")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(refused, 0, "an outcome got past the trigger");
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
