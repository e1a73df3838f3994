//! Each job runs in one `leasehold.job` span carrying its task id, kind, queue, attempt and fencing
//! token, with its outcome and error recorded on it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

use leasehold::sqlite::SqliteStore;
use leasehold::{Client, Job, JobContext, JobResult, Outcome, Worker};

#[derive(Serialize, Deserialize)]
struct Flaky;

impl Job for Flaky {
    const KIND: &'static str = "flaky";
    type State = ();
    async fn run(self, ctx: JobContext<()>) -> JobResult {
        if ctx.attempt() == 1 { Err("first try fails".into()) } else { Ok(Outcome::Complete) }
    }
}

type Spans = Arc<Mutex<HashMap<u64, HashMap<String, String>>>>;

struct Capture(Spans);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}").trim_matches('"').to_owned());
    }
}

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        if attrs.metadata().name() == "leasehold.job" {
            let mut fields = HashMap::new();
            attrs.record(&mut Fields(&mut fields));
            self.0.lock().unwrap().insert(id.into_u64(), fields);
        }
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        if let Some(fields) = self.0.lock().unwrap().get_mut(&id.into_u64()) {
            values.record(&mut Fields(fields));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_span_carries_the_task_and_its_outcome() {
    let spans: Spans = Arc::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Capture(spans.clone()))).unwrap();

    let dir = std::env::temp_dir().join(format!("leasehold-span-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = SqliteStore::open(dir.join("span.sqlite")).await.unwrap();
    let id = Client::new(store.clone()).enqueue(Flaky).await.unwrap();
    let worker = Worker::builder(store.clone())
        .register::<Flaky>()
        .poll_interval(Duration::from_millis(50))
        .retry_policy(leasehold::RetryPolicy { base: Duration::from_millis(10), jitter: 0.0, ..Default::default() })
        .build()
        .unwrap();
    worker.start().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while Client::new(store.clone()).task(id).await.unwrap().state != leasehold::TaskState::Completed {
        assert!(tokio::time::Instant::now() < deadline, "the task never completed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.stop().await;
    let _ = std::fs::remove_dir_all(&dir);

    let mut runs: Vec<HashMap<String, String>> = spans.lock().unwrap().values().cloned().collect();
    runs.sort_by_key(|f| f["attempt"].clone());
    assert_eq!(runs.len(), 2, "one span per execution: {runs:?}");
    for (n, f) in runs.iter().enumerate() {
        assert_eq!(f["task_id"], id.to_string());
        assert_eq!((f["kind"].as_str(), f["queue"].as_str()), ("flaky", "default"));
        assert_eq!(f["attempt"], (n + 1).to_string());
        assert!(f["fence"].parse::<i64>().is_ok_and(|t| t > 0), "fence: {:?}", f.get("fence"));
    }
    assert_eq!(runs[0]["outcome"], "retried");
    assert_eq!(runs[0]["error"], "first try fails");
    assert_eq!(runs[1]["outcome"], "completed");
    assert!(runs[1]["fence"].parse::<i64>().unwrap() > runs[0]["fence"].parse::<i64>().unwrap());
}
