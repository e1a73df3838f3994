//! Testing your own handler with the fault kit: real worker processes, paused past their lease,
//! killed, and cut off from the database, and every invoice sent exactly once.

use std::time::Duration;

use leasehold::Client;
use leasehold_testkit::faults::{StoreClock, drop_connections, pause_for};
use leasehold_testkit::pg::TestDb;
use leasehold_testkit::process::{ProcessOptions, WorkerProcess};
use leasehold_testkit::wait;

use jobs::SendInvoice;

mod jobs {
    //! The job's arguments, as the test enqueues them (the same shape as the binary's).
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    pub(crate) struct SendInvoice {
        pub(crate) invoice: i64,
        pub(crate) work_ms: u64,
    }

    impl leasehold::Job for SendInvoice {
        const KIND: &'static str = "send-invoice";
        type State = ();
        async fn run(self, _ctx: leasehold::JobContext<()>) -> leasehold::JobResult {
            unreachable!("only the worker processes run it")
        }
    }
}

const BIN: &str = env!("CARGO_BIN_EXE_example-fault-kit");
const INVOICES: i64 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invoice_is_sent_once_through_pauses_kills_and_dropped_connections() {
    let db = TestDb::create().await;
    let opts = ProcessOptions {
        lease: Duration::from_secs(1),
        heartbeat: Duration::from_millis(200),
        margin: Duration::from_millis(400),
        grace: Duration::from_millis(150),
        poll: Duration::from_millis(100),
        ..ProcessOptions::default()
    };
    let mut a = WorkerProcess::spawn(BIN, db.url(), "invoices-a", &opts);
    let b = WorkerProcess::spawn(BIN, db.url(), "invoices-b", &opts);
    let client = Client::new(db.store());
    for invoice in 0..INVOICES {
        client.enqueue(SendInvoice { invoice, work_ms: 300 }).await.unwrap();
    }

    // a pause past the lease: b takes a's tasks over; a's late writes are refused when it wakes
    wait::until("a to hold a task", Duration::from_secs(10), || async {
        holds(db.pool(), "invoices-a").await.then_some(())
    })
    .await;
    pause_for(&a, opts.lease * 3);
    // b loses its connections mid-work; its pool reconnects and its leases hold or are taken over
    let cut = drop_connections(db.pool(), "invoices-b").await.unwrap();
    assert!(cut > 0, "b had no connection to cut");
    // a crash: a is killed (after its pause) and a fresh process takes its place
    tokio::time::sleep(opts.lease * 3 + Duration::from_millis(200)).await;
    a.kill();
    let c = WorkerProcess::spawn(BIN, db.url(), "invoices-c", &opts);
    // the store's clock jumps past one running task's lease: someone takes it over at once
    let running: Option<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM leasehold.tasks WHERE state = 'running' LIMIT 1")
            .fetch_optional(db.pool())
            .await
            .unwrap();
    if let Some(id) = running {
        StoreClock(db.pool()).expire_lease(leasehold::TaskId(id)).await.unwrap();
    }

    wait::until("every invoice task to complete", Duration::from_secs(60), || async {
        let done: i64 = sqlx::query_scalar("SELECT count(*) FROM leasehold.tasks WHERE state = 'completed'")
            .fetch_one(db.pool())
            .await
            .unwrap();
        (done == INVOICES).then_some(())
    })
    .await;
    let (rows, distinct): (i64, i64) = sqlx::query_as("SELECT count(*), count(DISTINCT invoice) FROM sent_invoices")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!((rows, distinct), (INVOICES, INVOICES), "an invoice was sent twice or not at all");
    let stale: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sent_invoices s JOIN leasehold.tasks t ON (t.payload->>'invoice')::bigint = s.invoice
          WHERE t.fence <> s.fence",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(stale, 0, "an invoice was sent under a token that did not complete its task");
    let _ = (b.terminate(), c.terminate());
}

async fn holds(pool: &sqlx::PgPool, worker: &str) -> bool {
    sqlx::query_scalar::<_, bool>(
        "SELECT EXISTS (SELECT 1 FROM leasehold.tasks WHERE state = 'running' AND claimed_by = $1)",
    )
    .bind(worker)
    .fetch_one(pool)
    .await
    .unwrap()
}
