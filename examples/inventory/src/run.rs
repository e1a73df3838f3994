//! The orchestrator: sets up the shop, submits the orders, starts worker processes and injects faults,
//! then checks the invariants and prints the figures.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::postgres::PgPoolOptions;

use leasehold::postgres::PgStore;
use leasehold::sqlite::SqliteStore;
use leasehold::{BoxError, Client, EnqueueOptions, TaskStore};
use leasehold_testkit::process::{ProcessOptions, WorkerProcess};

use crate::shop::{Db, Order, SCHEMA};

const DEFAULT_FILE: &str = "inventory.sqlite";
const SKUS: [&str; 5] = ["apple", "brick", "cable", "drill", "easel"];
const INITIAL_STOCK: i64 = 60;

struct Config {
    orders: usize,
    workers: usize,
    kills: usize,
    pauses: usize,
    seed: u64,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T, BoxError> {
    match std::env::var(name) {
        Ok(v) => v.parse().map_err(|_| format!("{name}={v} is not a valid number").into()),
        Err(_) => Ok(default),
    }
}

pub(crate) async fn run() -> Result<(), BoxError> {
    let seed = env_or("SEED", u64::from(std::process::id()) * 7919)?;
    let cfg = Config {
        orders: env_or("ORDERS", 300)?,
        workers: env_or("WORKERS", 3)?,
        kills: env_or("KILLS", 4)?,
        pauses: env_or("PAUSES", 3)?,
        seed,
    };
    match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => {
            let pool = PgPoolOptions::new().max_connections(8).connect(&url).await?;
            let store = PgStore::from_pool(pool.clone());
            store.migrate().await?;
            sqlx::raw_sql(SCHEMA).execute(&pool).await?;
            orchestrate(store, Db::Pg(pool), url, "leasehold.tasks", &cfg).await
        }
        Ok(url) => {
            let store = SqliteStore::connect(&url).await?;
            sqlx::raw_sql(SCHEMA).execute(store.pool()).await?;
            orchestrate(store.clone(), Db::Sqlite(store), url, "leasehold_tasks", &cfg).await
        }
        Err(_) => {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{DEFAULT_FILE}{suffix}"));
            }
            let store = SqliteStore::open(DEFAULT_FILE).await?;
            sqlx::raw_sql(SCHEMA).execute(store.pool()).await?;
            let url = format!("sqlite://{DEFAULT_FILE}");
            orchestrate(store.clone(), Db::Sqlite(store), url, "leasehold_tasks", &cfg).await
        }
    }
}

/// Queries that read the run back, on either backend (the SQL is the same but for the task table).
struct Reader<'a> {
    db: &'a Db,
    tasks: &'static str,
}

impl Reader<'_> {
    async fn scalar(&self, sql: String) -> Result<i64, BoxError> {
        let sql = sqlx::AssertSqlSafe(sql);
        Ok(match self.db {
            Db::Pg(p) => sqlx::query_scalar(sql).fetch_one(p).await?,
            Db::Sqlite(s) => sqlx::query_scalar(sql).fetch_one(s.pool()).await?,
        })
    }

    /// Order tasks that have not reached a final state.
    async fn unfinished(&self) -> Result<i64, BoxError> {
        self.scalar(format!(
            "SELECT count(*) FROM {} WHERE kind = 'order' AND state NOT IN ('completed', 'discarded', 'cancelled')",
            self.tasks
        ))
        .await
    }

    /// Order tasks that ended without completing: an invariant broke somewhere.
    async fn failed(&self) -> Result<i64, BoxError> {
        self.scalar(format!(
            "SELECT count(*) FROM {} WHERE kind = 'order' AND state IN ('discarded', 'cancelled')",
            self.tasks
        ))
        .await
    }

    async fn settled(&self) -> Result<i64, BoxError> {
        self.scalar(format!("SELECT count(*) FROM {} WHERE kind = 'order' AND state = 'completed'", self.tasks)).await
    }

    /// Workers holding running order tasks now.
    async fn busy_workers(&self) -> Result<Vec<String>, BoxError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT DISTINCT claimed_by FROM {} WHERE kind = 'order' AND state = 'running' AND claimed_by IS NOT NULL",
            self.tasks
        ));
        Ok(match self.db {
            Db::Pg(p) => sqlx::query_scalar(sql).fetch_all(p).await?,
            Db::Sqlite(s) => sqlx::query_scalar(sql).fetch_all(s.pool()).await?,
        })
    }

    /// Order tasks running under `worker`'s name.
    async fn held_by(&self, worker: &str) -> Result<i64, BoxError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {} WHERE kind = 'order' AND state = 'running' AND claimed_by = $1",
            self.tasks
        ));
        Ok(match self.db {
            Db::Pg(p) => sqlx::query_scalar(sql).bind(worker).fetch_one(p).await?,
            Db::Sqlite(s) => sqlx::query_scalar(sql).bind(worker).fetch_one(s.pool()).await?,
        })
    }

    async fn stock(&self) -> Result<BTreeMap<String, i64>, BoxError> {
        let sql = "SELECT sku, stock FROM inventory_products";
        let rows: Vec<(String, i64)> = match self.db {
            Db::Pg(p) => sqlx::query_as(sql).fetch_all(p).await?,
            Db::Sqlite(s) => sqlx::query_as(sql).fetch_all(s.pool()).await?,
        };
        Ok(rows.into_iter().collect())
    }

    /// (order_id, sku, qty, status, reason)
    async fn orders(&self) -> Result<Vec<(String, String, i64, String, Option<String>)>, BoxError> {
        let sql = "SELECT order_id, sku, qty, status, reason FROM inventory_orders";
        Ok(match self.db {
            Db::Pg(p) => sqlx::query_as(sql).fetch_all(p).await?,
            Db::Sqlite(s) => sqlx::query_as(sql).fetch_all(s.pool()).await?,
        })
    }

    async fn replays_stopped(&self) -> Result<i64, BoxError> {
        let json_true = match self.db {
            Db::Pg(_) => "'true'",
            Db::Sqlite(_) => "1",
        };
        self.scalar(format!(
            "SELECT count(*) FROM {} WHERE kind = 'order' AND (result ->> 'replay') = {json_true}",
            self.tasks
        ))
        .await
    }
}

async fn orchestrate<S: TaskStore>(
    store: S,
    db: Db,
    url: String,
    tasks: &'static str,
    cfg: &Config,
) -> Result<(), BoxError> {
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let client = Client::new(store);
    let reader = Reader { db: &db, tasks };
    for sku in SKUS {
        let sql = "INSERT INTO inventory_products (sku, stock, version) VALUES ($1, $2, 0)";
        match &db {
            Db::Pg(p) => sqlx::query(sql).bind(sku).bind(INITIAL_STOCK).execute(p).await.map(drop)?,
            Db::Sqlite(s) => sqlx::query(sql).bind(sku).bind(INITIAL_STOCK).execute(s.pool()).await.map(drop)?,
        }
    }
    println!(
        "inventory: {} products x {INITIAL_STOCK}, {} orders, {} worker processes, {} kills, {} pauses, seed {}",
        SKUS.len(),
        cfg.orders,
        cfg.workers,
        cfg.kills,
        cfg.pauses,
        cfg.seed
    );

    let run_id = &uuid::Uuid::now_v7().simple().to_string()[20..];
    let mut submitted: HashSet<String> = HashSet::new();
    let (mut duplicates, mut replays) = (0usize, 0usize);
    for i in 0..cfg.orders {
        let order = Order {
            order_id: format!("{run_id}-{i:05}"),
            sku: SKUS[rng.random_range(0..SKUS.len())].to_owned(),
            qty: rng.random_range(1..=4),
            work_ms: rng.random_range(5..40),
        };
        let key = EnqueueOptions::default().idempotency_key(order.order_id.clone());
        let first = client.enqueue_idempotent(order.clone(), key.clone()).await?;
        if first.existing {
            return Err(format!("order {} was new but its key was taken", order.order_id).into());
        }
        submitted.insert(order.order_id.clone());
        if i % 7 == 3 {
            // the client retried the request: the key suppresses the duplicate
            let again = client.enqueue_idempotent(order.clone(), key).await?;
            if !again.existing || again.id != first.id {
                return Err(format!("a duplicate of order {} was not suppressed", order.order_id).into());
            }
            duplicates += 1;
        }
        if i % 20 == 11 {
            // an upstream system replays the order under a new key: the effect record stops it
            let other_key = EnqueueOptions::default().idempotency_key(format!("{}/replay", order.order_id));
            client.enqueue_idempotent(order, other_key).await?;
            replays += 1;
        }
    }

    // the whole backlog is in before the workers start, so every fault lands while work remains
    let bin = std::env::current_exe()?;
    let bin = bin.to_str().ok_or("the program's path is not UTF-8")?.to_owned();
    let mut faults = Faults {
        bin,
        url,
        opts: ProcessOptions { concurrency: 4, ..ProcessOptions::default() },
        workers: Vec::new(),
        started: 0,
        paused: Vec::new(),
        kills: 0,
        pauses: 0,
        on_work: 0,
    };
    for _ in 0..cfg.workers {
        faults.spawn();
    }
    let total_tasks = (submitted.len() + replays) as i64;
    let planned = cfg.kills + cfg.pauses;
    for f in 0..planned {
        let target = total_tasks * (f as i64 + 1) / (planned as i64 + 2);
        while reader.settled().await? < target {
            faults.resume_due();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let kill = faults.kills < cfg.kills && (faults.pauses >= cfg.pauses || rng.random_bool(0.5));
        faults.inject(&reader, &mut rng, kill).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let settled = reader.settled().await?;
        print!("\r  settled {settled:>4}/{total_tasks}   ");
        use std::io::Write;
        std::io::stdout().flush()?;
        faults.resume_due();
        if faults.paused.is_empty() && reader.unfinished().await? == 0 {
            break;
        }
        if Instant::now() > deadline {
            return Err("orders did not settle within 300 s".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!();
    let (kills, pauses, on_work) = (faults.kills, faults.pauses, faults.on_work);
    for w in faults.workers {
        w.terminate();
    }
    let injected = Injected { kills, pauses, on_work };
    check_and_report(&reader, cfg, &submitted, duplicates, replays, injected, started.elapsed()).await
}

/// What the fault loop did.
struct Injected {
    kills: usize,
    pauses: usize,
    /// Faults whose victim held a running order task at the signal.
    on_work: usize,
}

/// The worker processes and the faults injected into them.
struct Faults {
    bin: String,
    url: String,
    opts: ProcessOptions,
    workers: Vec<WorkerProcess>,
    started: usize,
    /// Stopped workers (by name) and when they are to continue.
    paused: Vec<(String, Instant)>,
    kills: usize,
    pauses: usize,
    on_work: usize,
}

impl Faults {
    fn spawn(&mut self) {
        let name = format!("shop-{}", self.started);
        self.workers.push(WorkerProcess::spawn(&self.bin, &self.url, &name, &self.opts));
        self.started += 1;
    }

    /// Sends `SIGCONT` to the stopped workers whose pause is over.
    fn resume_due(&mut self) {
        let now = Instant::now();
        let workers = &self.workers;
        self.paused.retain(|(name, until)| {
            if *until > now {
                return true;
            }
            if let Some(w) = workers.iter().find(|w| &w.name == name) {
                w.resume();
            }
            false
        });
    }

    /// Kills, or stops for 1.5 to 3 leases, a worker that holds order tasks: one that is running now
    /// (not stopped) and, when none is busy, waits up to 5 s for one to become so.
    async fn inject(&mut self, reader: &Reader<'_>, rng: &mut StdRng, kill: bool) -> Result<(), BoxError> {
        let give_up = Instant::now() + Duration::from_secs(5);
        let candidates = loop {
            let busy = reader.busy_workers().await?;
            let candidates: Vec<usize> = (0..self.workers.len())
                .filter(|&i| {
                    let name = &self.workers[i].name;
                    busy.contains(name) && !self.paused.iter().any(|(p, _)| p == name)
                })
                .collect();
            if !candidates.is_empty() || Instant::now() > give_up {
                break candidates;
            }
            self.resume_due();
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let victim = if candidates.is_empty() {
            rng.random_range(0..self.workers.len())
        } else {
            candidates[rng.random_range(0..candidates.len())]
        };
        let name = self.workers[victim].name.clone();
        if kill {
            let mut w = self.workers.swap_remove(victim);
            w.kill();
            self.paused.retain(|(p, _)| *p != name);
            self.kills += 1;
            self.spawn();
        } else {
            // its tasks are taken over while it is frozen; when it wakes, fencing refuses it
            self.workers[victim].pause();
            let until = Instant::now() + self.opts.lease.mul_f64(rng.random_range(1.5..3.0));
            self.paused.push((name.clone(), until));
            self.pauses += 1;
        }
        // a task still running under the victim's name after the signal was caught in progress
        if reader.held_by(&name).await? > 0 {
            self.on_work += 1;
        }
        Ok(())
    }
}

async fn check_and_report(
    reader: &Reader<'_>,
    cfg: &Config,
    submitted: &HashSet<String>,
    duplicates: usize,
    replays: usize,
    injected: Injected,
    elapsed: Duration,
) -> Result<(), BoxError> {
    let mut violations: Vec<String> = Vec::new();
    let orders = reader.orders().await?;
    let stock = reader.stock().await?;
    let mut taken: BTreeMap<String, i64> = BTreeMap::new();
    let mut seen: HashSet<&str> = HashSet::new();
    let (mut applied, mut rejected) = (0usize, 0usize);
    for (id, sku, qty, status, reason) in &orders {
        if !seen.insert(id.as_str()) {
            violations.push(format!("order {id} was applied twice"));
        }
        if !submitted.contains(id) {
            violations.push(format!("order {id} was never submitted"));
        }
        match (status.as_str(), reason) {
            ("applied", _) => {
                applied += 1;
                *taken.entry(sku.clone()).or_default() += qty;
            }
            ("rejected", Some(r)) if r.contains("insufficient stock") => rejected += 1,
            _ => violations.push(format!("order {id} is {status} without a recorded reason")),
        }
    }
    for id in submitted {
        if !seen.contains(id.as_str()) {
            violations.push(format!("order {id} was lost: neither applied nor rejected"));
        }
    }
    for (sku, left) in &stock {
        let expected = INITIAL_STOCK - taken.get(sku).copied().unwrap_or(0);
        if *left != expected {
            violations.push(format!("{sku}: stock {left}, expected {expected} (initial - accepted orders)"));
        }
        if *left < 0 {
            violations.push(format!("{sku}: negative stock {left}"));
        }
    }
    let failed = reader.failed().await?;
    if failed > 0 {
        violations.push(format!("{failed} order tasks ended discarded or cancelled instead of completing"));
    }
    let stopped = reader.replays_stopped().await?;
    if stopped != replays as i64 {
        violations.push(format!("{replays} replays submitted, {stopped} stopped by their effect record"));
    }
    let tasks = reader.tasks;
    let conflicts =
        reader.scalar("SELECT CAST(coalesce(sum(conflicts), 0) AS BIGINT) FROM inventory_orders".into()).await?;
    let retries = reader
        .scalar(format!("SELECT CAST(coalesce(sum(attempt - 1), 0) AS BIGINT) FROM {tasks} WHERE kind = 'order'"))
        .await?;
    let lost = reader
        .scalar(format!("SELECT CAST(coalesce(sum(lease_losses), 0) AS BIGINT) FROM {tasks} WHERE kind = 'order'"))
        .await?;

    println!("figures");
    println!("  orders                     {}", cfg.orders);
    println!("  applied / rejected         {applied} / {rejected} (rejected: insufficient stock)");
    println!("  duplicates suppressed      {duplicates} (same idempotency key at enqueue)");
    println!("  replays stopped            {stopped} of {replays} (effect record)");
    let Injected { kills, pauses, on_work } = injected;
    println!("  faults injected            {kills} kills, {pauses} pauses past the lease");
    println!("  faults on work in progress {on_work} of {}", kills + pauses);
    println!("  version conflicts retried  {conflicts}");
    println!("  task retries               {retries}");
    println!("  leases lost                {lost}");
    println!("  final stock                {stock:?}");
    println!("  time taken                 {elapsed:.2?}");
    if violations.is_empty() {
        println!("all checks passed: stock exact, never negative, no order applied twice, none lost");
        Ok(())
    } else {
        for v in &violations {
            println!("VIOLATION: {v}");
        }
        Err(format!("{} invariant violations", violations.len()).into())
    }
}
