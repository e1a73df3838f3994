//! How cost grows (`--growth`): claim latency and drain throughput with a backlog of 10k tasks and with
//! a large one (1M by default, `--backlog N`), and steady throughput while a second connection holds a
//! long REPEATABLE READ transaction open that pins the MVCC horizon, against the same run's baseline.
//! Dead tuples and table and index sizes are reported after each phase.
//!
//! Backlogs are written straight into `leasehold.tasks` by one `INSERT ... SELECT generate_series`
//! statement (the columns of `migrations/postgres`, defaults for the rest), then vacuumed and
//! analyzed, as a backlog that built up over time would be by autovacuum.

use std::time::{Duration, Instant};

use sqlx::PgPool;

use leasehold::core::{DEFAULT_MAX_ATTEMPTS, DEFAULT_QUEUE, TaskClaimParams, TaskCompleteParams};
use leasehold::postgres::PgStore;
use leasehold::{Job, TaskStore};

use crate::framework::Finished;
use crate::jobs::Noop;
use crate::report::{Figures, Row, Section, Target, Unit, thousands};
use crate::timing::{Percentiles, ms, rate};
use crate::{GROWTH_BASE_BACKLOG, Profile, Res, db, framework};

/// `$1` available no-op tasks of kind `$2`, queue `$3`, attempts `$4`, due in order over the past day;
/// ids are sequential, as time-ordered UUID v7 ids are.
const FILL: &str = "
INSERT INTO leasehold.tasks (id, kind, queue, payload, max_attempts, run_at)
SELECT lpad(to_hex(g), 32, '0')::uuid, $2, $3, 'null'::jsonb, $4,
       now() - interval '1 day' + g * interval '1 millisecond'
  FROM generate_series(1, $1::bigint) AS g";

/// Tasks claimed by each timed claim.
const CLAIM_SIZE: u32 = 10;
/// PostgreSQL publishes a backend's table statistics at most about once a second: wait that long
/// before reading dead tuples.
const STATS_SETTLE: Duration = Duration::from_millis(1_500);

/// Names of the figures of one backlog.
fn claim_p50(n: u64) -> String {
    format!("growth.backlog_{n}.claim10_p50_ms")
}
fn claim_p99(n: u64) -> String {
    format!("growth.backlog_{n}.claim10_p99_ms")
}
fn drain(n: u64) -> String {
    format!("growth.backlog_{n}.drain_jobs_per_s")
}
fn dead(phase: &str) -> String {
    format!("growth.{phase}.dead_tuples")
}
fn table_bytes(phase: &str) -> String {
    format!("growth.{phase}.table_bytes")
}
fn index_bytes(phase: &str) -> String {
    format!("growth.{phase}.index_bytes")
}
const STEADY_BASELINE: &str = "growth.horizon.baseline_jobs_per_s";
const LONG_KEEP: &str = "growth.long.keep_all_jobs_per_s";
const LONG_PRUNE: &str = "growth.long.retention_jobs_per_s";
/// The retention of the long run that prunes: the shortest a worker accepts.
const SHORT_RETENTION: Duration = Duration::from_secs(1);
const STEADY_PINNED: &str = "growth.horizon.pinned_jobs_per_s";

/// Measures every backlog, then the pinned horizon; answers a line for the report.
pub(crate) async fn run(
    admin: &PgPool,
    store: &PgStore,
    p: &Profile,
    backlogs: &[u64],
    figs: &mut Figures,
) -> Res<String> {
    let pool = store.pool();
    for &n in backlogs {
        let backlog = thousands(n as f64);
        eprintln!("[growth] backlog of {backlog}: filling leasehold.tasks, then VACUUM (ANALYZE)");
        db::truncate_tasks(pool).await?;
        let filled = Instant::now();
        fill(pool, n).await?;
        sqlx::raw_sql("VACUUM (ANALYZE) leasehold.tasks").execute(pool).await?;
        eprintln!("[growth] backlog of {backlog}: filled in {:.1?}; timing claims of 10", filled.elapsed());

        let (latency, claimed) = claim_latency(store, p.growth_claim_samples).await?;
        figs.put(&claim_p50(n), latency.p50);
        figs.put(&claim_p99(n), latency.p99);

        eprintln!("[growth] backlog of {backlog}: a worker drains for up to {:?}", p.growth_drain);
        let (done, elapsed) =
            framework::drain_for(store, n.saturating_sub(claimed), p.growth_drain, Finished::Kept).await?;
        figs.put(&drain(n), rate(done, elapsed));
        table_figures(pool, &format!("backlog_{n}"), figs).await?;
    }
    db::truncate_tasks(pool).await?;

    // a long steady run keeping every finished task, then the same pruning them after a second
    for (label, retention, key) in [("keep_all", None, LONG_KEEP), ("retention", Some(SHORT_RETENTION), LONG_PRUNE)] {
        eprintln!("[growth] long steady run for {:?}, {label}", p.growth_long);
        figs.put(key, framework::steady_keeping(store, retention, p.steady_warmup, p.growth_long).await?);
        table_figures(pool, &format!("long_{label}"), figs).await?;
        db::truncate_tasks(pool).await?;
    }

    eprintln!("[growth] steady worker with a producer for {:?}: baseline", p.growth_pinned);
    figs.put(STEADY_BASELINE, framework::steady(store, p.steady_warmup, p.growth_pinned).await?);
    table_figures(pool, "horizon_baseline", figs).await?;
    db::truncate_tasks(pool).await?;

    eprintln!("[growth] the same while a REPEATABLE READ transaction pins the MVCC horizon");
    let mut pin = admin.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ").await?;
    // the first statement takes the transaction's snapshot, which holds the horizon until it ends
    let xmin: Option<String> =
        sqlx::query_scalar("SELECT backend_xmin::text FROM pg_stat_activity WHERE pid = pg_backend_pid()")
            .fetch_one(&mut *pin)
            .await?;
    let pinned = framework::steady(store, p.steady_warmup, p.growth_pinned).await;
    let stats = table_figures(pool, "horizon_pinned", figs).await;
    pin.rollback().await?;
    figs.put(STEADY_PINNED, pinned?);
    stats?;
    db::truncate_tasks(pool).await?;

    Ok(format!(
        "growth: backlogs {}; claims of {CLAIM_SIZE} timed {} times per backlog; horizon pinned at xmin {}",
        backlogs.iter().map(|n| thousands(*n as f64)).collect::<Vec<_>>().join(" and "),
        p.growth_claim_samples,
        xmin.as_deref().unwrap_or("(none: the horizon was not pinned)"),
    ))
}

/// Writes `n` available no-op tasks in one statement.
async fn fill(pool: &PgPool, n: u64) -> Res<()> {
    sqlx::query(FILL)
        .bind(i64::try_from(n)?)
        .bind(Noop::KIND)
        .bind(DEFAULT_QUEUE)
        .bind(DEFAULT_MAX_ATTEMPTS)
        .execute(pool)
        .await?;
    Ok(())
}

/// Times `samples` single claims of 10 through the store, each followed by the completion of what it
/// claimed (not timed); answers the percentiles in ms and the tasks claimed.
async fn claim_latency(store: &PgStore, samples: usize) -> Res<(Percentiles, u64)> {
    let mut out = Vec::with_capacity(samples);
    let mut claimed = 0u64;
    for _ in 0..samples {
        let params = TaskClaimParams {
            queues: vec![DEFAULT_QUEUE.to_owned()],
            limit: CLAIM_SIZE,
            default_lease_ttl: Duration::from_secs(30),
            worker_id: "leasehold-bench".to_owned(),
        };
        let started = Instant::now();
        let tasks = store.task_claim(params).await?.tasks;
        out.push(ms(started.elapsed()));
        claimed += tasks.len() as u64;
        let tasks = tasks.into_iter().map(|t| (t.lease, None)).collect();
        store.task_complete_many(TaskCompleteParams { tasks, delete_completed: false }).await?;
    }
    Ok((Percentiles::of(out), claimed))
}

/// Records dead tuples and the table's and its indexes' sizes after `phase`.
async fn table_figures(pool: &PgPool, phase: &str, figs: &mut Figures) -> Res<()> {
    tokio::time::sleep(STATS_SETTLE).await;
    let dead_tuples: i64 = sqlx::query_scalar(
        "SELECT n_dead_tup FROM pg_stat_user_tables WHERE schemaname = 'leasehold' AND relname = 'tasks'",
    )
    .fetch_one(pool)
    .await?;
    let (total, indexes): (i64, i64) =
        sqlx::query_as("SELECT pg_total_relation_size('leasehold.tasks'), pg_indexes_size('leasehold.tasks')")
            .fetch_one(pool)
            .await?;
    figs.put(&dead(phase), dead_tuples as f64);
    figs.put(&table_bytes(phase), total as f64);
    figs.put(&index_bytes(phase), indexes as f64);
    Ok(())
}

/// The growth table: each large backlog against the 10k one, the pinned horizon against its baseline.
pub(crate) fn section(backlogs: &[u64]) -> Section {
    let base = GROWTH_BASE_BACKLOG;
    let base_text = thousands(base as f64);
    let mut rows = Vec::new();
    for &n in backlogs.iter().filter(|n| **n != base) {
        let large = thousands(n as f64);
        let (small_phase, large_phase) = (format!("backlog_{base}"), format!("backlog_{n}"));
        rows.push(Row::new(
            &format!("growth.claim_p50.{n}"),
            format!("claim of {CLAIM_SIZE} p50, backlog {large} / {base_text}"),
            Unit::Millis,
            &claim_p50(n),
            &claim_p50(base),
            Some(Target::AtMost(2.0)),
        ));
        rows.push(Row::new(
            &format!("growth.claim_p99.{n}"),
            format!("claim of {CLAIM_SIZE} p99, backlog {large} / {base_text}"),
            Unit::Millis,
            &claim_p99(n),
            &claim_p99(base),
            None,
        ));
        rows.push(Row::new(
            &format!("growth.drain.{n}"),
            format!("drain, jobs/s, backlog {large} / {base_text}"),
            Unit::Rate,
            &drain(n),
            &drain(base),
            None,
        ));
        rows.extend(table_rows(
            &format!("growth.backlog.{n}"),
            &format!("backlog {large} / {base_text}"),
            &large_phase,
            &small_phase,
        ));
    }
    if backlogs.len() == 1 {
        // no larger backlog: show the one measured on its own
        let n = backlogs[0];
        rows.push(Row::limit_only(
            &format!("growth.claim_p50.{n}"),
            format!("claim of {CLAIM_SIZE} p50, backlog {}", thousands(n as f64)),
            Unit::Millis,
            &claim_p50(n),
        ));
        rows.push(Row::limit_only(
            &format!("growth.drain.{n}"),
            format!("drain, jobs/s, backlog {}", thousands(n as f64)),
            Unit::Rate,
            &drain(n),
        ));
    }
    rows.push(Row::new(
        "growth.long",
        "long steady run, jobs/s: finished tasks pruned after 1 s / kept".to_owned(),
        Unit::Rate,
        LONG_PRUNE,
        LONG_KEEP,
        None,
    ));
    rows.extend(table_rows("growth.long", "pruned after 1 s / kept", "long_retention", "long_keep_all"));
    rows.push(Row::new(
        "growth.horizon",
        "steady, producer running, jobs/s: MVCC horizon pinned / not pinned".to_owned(),
        Unit::Rate,
        STEADY_PINNED,
        STEADY_BASELINE,
        Some(Target::AtLeast(0.5)),
    ));
    rows.extend(table_rows("growth.horizon", "horizon pinned / not pinned", "horizon_pinned", "horizon_baseline"));
    Section {
        title: "PostgreSQL: how cost grows (one pass)".to_owned(),
        ours_column: "measured",
        limit_column: "baseline",
        rows,
    }
}

/// Dead tuples and sizes after phase `ours` against phase `base`.
fn table_rows(id: &str, what: &str, ours: &str, base: &str) -> Vec<Row> {
    vec![
        Row::new(
            &format!("{id}.dead_tuples"),
            format!("dead tuples after, {what}"),
            Unit::Count,
            &dead(ours),
            &dead(base),
            None,
        ),
        Row::new(
            &format!("{id}.table_bytes"),
            format!("table size with indexes and TOAST, {what}"),
            Unit::Bytes,
            &table_bytes(ours),
            &table_bytes(base),
            None,
        ),
        Row::new(
            &format!("{id}.index_bytes"),
            format!("index size, {what}"),
            Unit::Bytes,
            &index_bytes(ours),
            &index_bytes(base),
            None,
        ),
    ]
}
