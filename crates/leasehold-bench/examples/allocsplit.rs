use leasehold::postgres::PgStore;
use leasehold::core::TaskStore;
use leasehold::{Client, EnqueueOptions, Job, JobContext, JobResult, Outcome};
use serde::{Deserialize, Serialize};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[derive(Serialize, Deserialize)]
struct Noop;
impl Job for Noop {
    const KIND: &'static str = "bench_noop";
    type State = ();
    async fn run(self, _ctx: JobContext<()>) -> JobResult { Ok(Outcome::Complete) }
}

fn n(r: &Region<'_, System>) -> usize { let c = r.change(); c.allocations + c.reallocations }

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = "postgres://postgres@127.0.0.1:5432/lh_scratch";
    let pool = PgStore::pool_options().connect(url).await?;
    let store = PgStore::from_pool(pool);
    let client = Client::new(store.clone());
    let raw = sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(url).await?;
    let mut c = raw.acquire().await?;
    for _ in 0..20 { client.enqueue(Noop).await?; }
    for _ in 0..3 {
        let r = Region::new(GLOBAL); let t = leasehold::client::new_task(&Noop, &EnqueueOptions::default())?; let a = n(&r);
        let r = Region::new(GLOBAL); store.task_insert(t).await?; let b = n(&r);
        let r = Region::new(GLOBAL); client.enqueue(Noop).await?; let d = n(&r);
        let r = Region::new(GLOBAL); sqlx::query("INSERT INTO bench_raw.jobs (queue, payload) VALUES ('default', '{\"k\": 1}') RETURNING id").execute(&mut *c).await?; let e = n(&r);
        let r = Region::new(GLOBAL); sqlx::query("INSERT INTO bench_raw.jobs (queue, payload) VALUES ($1, $2)").bind("default").bind(sqlx::types::Json(serde_json::json!(null))).execute(&mut *c).await?; let f = n(&r);
        println!("new_task {a}  task_insert {b}  client.enqueue {d}  raw {e}  raw-2-binds {f}");
    }
    Ok(())
}
