//! What the code emits, caught by a recording recorder while a worker, a scheduler and a client work:
//! every metric is in the catalog, with the catalog's type and exactly its label names.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use metrics_util::MetricKind;
use metrics_util::debugging::DebuggingRecorder;
use serde::{Deserialize, Serialize};

use leasehold::cron::{Schedule, Scheduler};
use leasehold::guard::{expect_fenced, expect_version};
use leasehold::sqlite::SqliteStore;
use leasehold::telemetry::{CATALOG, MetricType};
use leasehold::{Client, EnqueueOptions, Job, JobContext, JobResult, Outcome, Worker};

#[derive(Serialize, Deserialize)]
struct Mixed {
    n: u32,
}

impl Job for Mixed {
    const KIND: &'static str = "mixed";
    type State = ();
    fn options() -> leasehold::JobOptions {
        leasehold::JobOptions { max_attempts: Some(2), ..Default::default() }
    }
    async fn run(self, ctx: JobContext<()>) -> JobResult {
        match self.n % 4 {
            0 if ctx.attempt() == 1 => Err("first try fails".into()),
            1 => Ok(Outcome::Fail("never works".into())),
            2 => Ok(Outcome::Cancel("not needed any more".into())),
            _ => Ok(Outcome::Complete),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_emitted_metric_is_in_the_catalog_with_its_labels() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let dir = std::env::temp_dir().join(format!("leasehold-emitted-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = SqliteStore::open(dir.join("emitted.sqlite")).await.unwrap();
    let client = Client::new(store.clone());
    let ids = client.enqueue_many((0..12).map(|n| Mixed { n }), EnqueueOptions::default()).await.unwrap();
    let keyed = || EnqueueOptions::default().idempotency_key("once");
    client.enqueue_idempotent(Mixed { n: 3 }, keyed()).await.unwrap();
    client.enqueue_idempotent(Mixed { n: 3 }, keyed()).await.unwrap();
    assert!(client.enqueue_idempotent(Mixed { n: 7 }, keyed()).await.is_err());
    let _ = expect_version(0, "row", 1);
    let lease = leasehold::TaskLease { task_id: ids[0], fence: leasehold::FencingToken(1) };
    let _ = expect_fenced(0, lease);

    let worker = Worker::builder(store.clone())
        .register::<Mixed>()
        .poll_interval(Duration::from_millis(50))
        .depth_sample_interval(Some(Duration::from_millis(100)))
        .retry_policy(leasehold::RetryPolicy { base: Duration::from_millis(10), jitter: 0.0, ..Default::default() })
        .build()
        .unwrap();
    let scheduler = Scheduler::builder(store.clone())
        .schedule(Schedule::builder("every-second", "* * * * * *").job(&Mixed { n: 3 }).unwrap())
        .build()
        .unwrap();
    worker.start().await;
    scheduler.start().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut settled = true;
        for id in &ids {
            settled &= client.task(*id).await.unwrap().state.is_final();
        }
        if settled
            && snapshotter.snapshot().into_vec().iter().any(|(k, ..)| k.key().name() == "leasehold_cron_ticks_total")
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the tasks never settled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    scheduler.stop().await;
    worker.stop().await;
    let _ = std::fs::remove_dir_all(&dir);

    let mut emitted: BTreeMap<String, (MetricKind, BTreeSet<String>)> = BTreeMap::new();
    let mut problems = Vec::new();
    for (key, ..) in snapshotter.snapshot().into_vec() {
        let name = key.key().name().to_owned();
        let labels: BTreeSet<String> = key.key().labels().map(|l| l.key().to_owned()).collect();
        let Some(def) = CATALOG.iter().find(|m| m.name == name) else {
            problems.push(format!("{name} is emitted but not in the catalog"));
            continue;
        };
        let kind = match def.kind {
            MetricType::Counter => MetricKind::Counter,
            MetricType::Gauge => MetricKind::Gauge,
            MetricType::Histogram => MetricKind::Histogram,
        };
        if key.kind() != kind {
            problems.push(format!("{name} is emitted as a {:?}, catalogued as a {}", key.kind(), def.kind.as_str()));
        }
        let want: BTreeSet<String> = def.labels.iter().map(|l| (*l).to_owned()).collect();
        if labels != want {
            problems.push(format!("{name} is emitted with labels {labels:?}, catalogued with {want:?}"));
        }
        emitted.insert(name, (key.kind(), labels));
    }
    assert!(problems.is_empty(), "the code and the catalog disagree:\n{}", problems.join("\n"));
    // everything this workload drives was seen
    for name in [
        "leasehold_claims_total",
        "leasehold_claim_duration_seconds",
        "leasehold_claim_batch_size",
        "leasehold_task_outcomes_total",
        "leasehold_task_duration_seconds",
        "leasehold_queue_wait_seconds",
        "leasehold_queue_depth",
        "leasehold_tasks_in_flight",
        "leasehold_completion_batch_size",
        "leasehold_tasks_enqueued_total",
        "leasehold_idempotency_total",
        "leasehold_version_conflicts_total",
        "leasehold_stale_writes_rejected_total",
        "leasehold_lock_acquisitions_total",
        "leasehold_lock_wait_seconds",
        "leasehold_leader_changes_total",
        "leasehold_cron_ticks_total",
        "leasehold_leases_lost_total",
    ] {
        assert!(emitted.contains_key(name), "{name} was never emitted");
    }
}
