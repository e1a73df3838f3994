//! Contenders for singleton keys, for the fault suite's lock scenario: `CONTENDERS` tasks in this
//! process each take one of `KEYS` named leases (the store's leased lock, with a fencing token) again
//! and again, waiting while another holds it, and while holding it add one to the key's counter with a
//! write fenced by the token.
//!
//! Environment: `LEASEHOLD_DATABASE_URL`, `CONTENDER_NAME`, `CONTENDERS`, `KEYS`, `ACQUISITIONS` (per
//! contender), `LEASE_MS`, `SEED`. Prints `ready`, then on finishing one line:
//! `done <acquired> <busy> <fenced-out> <p50 µs> <p99 µs> <overlaps> <late holds>` (acquire latency;
//! overlaps: times a holder found another inside; late holds: holds that outlasted their lease).

use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use leasehold::ScheduleStore;
use leasehold::core::schedule::{LeaderAcquireParams, LeaderToken};
use leasehold::postgres::PgStore;

fn env(name: &str) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{name} is not set"))
}

#[derive(Default)]
struct Tally {
    acquired: u64,
    busy: u64,
    fenced_out: u64,
    /// Times a holder found another inside the key's critical section.
    overlaps: u64,
    /// Holds that outlasted their lease (a starved process): the only excuse for an overlap.
    late: u64,
    latencies_us: Vec<u64>,
}

#[tokio::main]
async fn main() {
    let url = std::env::var("LEASEHOLD_DATABASE_URL").expect("LEASEHOLD_DATABASE_URL");
    let name = std::env::var("CONTENDER_NAME").expect("CONTENDER_NAME");
    let (contenders, keys, rounds) = (env("CONTENDERS"), env("KEYS"), env("ACQUISITIONS"));
    let ttl = Duration::from_millis(env("LEASE_MS"));
    let seed = env("SEED");
    let opts: PgConnectOptions = url.parse().expect("a PostgreSQL URL");
    let pool = PgPoolOptions::new()
        .max_connections(contenders as u32 + 2)
        .connect_with(opts.application_name(&name))
        .await
        .expect("connect");
    let store = PgStore::from_pool(pool.clone());
    println!("ready");
    let tasks: Vec<_> = (0..contenders)
        .map(|c| {
            let (store, pool, holder) = (store.clone(), pool.clone(), format!("{name}-{c}"));
            tokio::spawn(async move {
                let mut rng = seed.wrapping_mul(6364136223846793005).wrapping_add(c * 1442695040888963407 + 1);
                let mut t = Tally::default();
                for _ in 0..rounds {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let key = format!("key-{}", rng % keys);
                    // wait for the key: try, and on finding it held try again shortly
                    let started = Instant::now();
                    let (token, sent) = loop {
                        let sent = Instant::now();
                        let params = LeaderAcquireParams { name: key.clone(), holder: holder.clone(), ttl };
                        match store.leader_acquire(params).await.expect("acquire") {
                            Some(token) => break (token, sent),
                            None => {
                                t.busy += 1;
                                tokio::time::sleep(Duration::from_millis(1)).await;
                            }
                        }
                    };
                    t.latencies_us.push(started.elapsed().as_micros() as u64);
                    t.acquired += 1;
                    // a check that does not rely on the token: how many are inside right now
                    let inside: i32 = sqlx::query_scalar(
                        "UPDATE lock_counters SET holders = holders + 1 WHERE key = $1 RETURNING holders",
                    )
                    .bind(&key)
                    .fetch_one(&pool)
                    .await
                    .expect("enter");
                    if inside > 1 {
                        t.overlaps += 1;
                    }
                    // the protected write: one more on the key's counter, refused to an older token
                    let mut tx = pool.begin().await.expect("begin");
                    let done = sqlx::query(
                        "UPDATE lock_counters SET value = value + 1, last_token = $2 WHERE key = $1 AND last_token < $2",
                    )
                    .bind(&key)
                    .bind(token.0)
                    .execute(&mut *tx)
                    .await
                    .expect("increment");
                    if done.rows_affected() == 1 {
                        sqlx::query("INSERT INTO lock_log (key, token, holder) VALUES ($1, $2, $3)")
                            .bind(&key)
                            .bind(token.0)
                            .bind(&holder)
                            .execute(&mut *tx)
                            .await
                            .expect("log");
                        tx.commit().await.expect("commit");
                    } else {
                        t.fenced_out += 1;
                        tx.rollback().await.expect("rollback");
                    }
                    sqlx::query("UPDATE lock_counters SET holders = holders - 1 WHERE key = $1")
                        .bind(&key)
                        .execute(&pool)
                        .await
                        .expect("leave");
                    if sent.elapsed() >= ttl {
                        t.late += 1;
                    }
                    store
                        .leader_release(LeaderToken { name: key, holder: holder.clone(), token })
                        .await
                        .expect("release");
                }
                t
            })
        })
        .collect();
    let mut all = Tally::default();
    for task in tasks {
        let t = task.await.expect("a contender");
        all.acquired += t.acquired;
        all.busy += t.busy;
        all.fenced_out += t.fenced_out;
        all.overlaps += t.overlaps;
        all.late += t.late;
        all.latencies_us.extend(t.latencies_us);
    }
    all.latencies_us.sort_unstable();
    let pct = |q: f64| {
        all.latencies_us.get(((all.latencies_us.len().max(1) - 1) as f64 * q).round() as usize).copied().unwrap_or(0)
    };
    println!(
        "done {} {} {} {} {} {} {}",
        all.acquired,
        all.busy,
        all.fenced_out,
        pct(0.5),
        pct(0.99),
        all.overlaps,
        all.late
    );
}
