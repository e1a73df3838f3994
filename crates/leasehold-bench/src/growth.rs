//! How cost grows (`--growth`): claim latency and drain throughput with a backlog of 10k tasks and with
//! a large one (1M by default, `--backlog N`), and steady throughput while a second connection holds a
//! long REPEATABLE READ transaction open that pins the MVCC horizon, against the same run's baseline.
//! Dead tuples and table and index sizes are reported after each phase.
//!
//! Backlogs are written straight into `leasehold.tasks` by one `INSERT ... SELECT generate_series`
//! statement (the columns of `migrations/postgres`, defaults for the rest), then vacuumed and
//! analyzed, as a backlog that built up over time would be by autovacuum.
//!
//! The figures' names (`Names`), the timed claims and the table's rows are shared with SQLite's
//! growth phases (`sqlite_growth.rs`).

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

/// The names of one backend's growth figures: `growth.*` on PostgreSQL, `sqlite_growth.*` on SQLite.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Names(pub(crate) &'static str);

/// PostgreSQL's growth figures.
const PG: Names = Names("growth");

impl Names {
    pub(crate) fn claim_p50(self, n: u64) -> String {
        format!("{}.backlog_{n}.claim10_p50_ms", self.0)
    }
    pub(crate) fn claim_p99(self, n: u64) -> String {
        format!("{}.backlog_{n}.claim10_p99_ms", self.0)
    }
    pub(crate) fn drain(self, n: u64) -> String {
        format!("{}.backlog_{n}.drain_jobs_per_s", self.0)
    }
    /// A size or count (`what`) read after `phase`.
    pub(crate) fn after(self, phase: &str, what: &str) -> String {
        format!("{}.{phase}.{what}", self.0)
    }
    pub(crate) fn steady_baseline(self) -> String {
        format!("{}.horizon.baseline_jobs_per_s", self.0)
    }
    pub(crate) fn steady_pinned(self) -> String {
        format!("{}.horizon.pinned_jobs_per_s", self.0)
    }
    pub(crate) fn long_keep(self) -> String {
        format!("{}.long.keep_all_jobs_per_s", self.0)
    }
    pub(crate) fn long_prune(self) -> String {
        format!("{}.long.retention_jobs_per_s", self.0)
    }
}

/// What PostgreSQL's phases read after them: the figure's name, its label, its unit.
const PG_AFTER: [(&str, &str, Unit); 3] = [
    ("dead_tuples", "dead tuples after", Unit::Count),
    ("table_bytes", "table size with indexes and TOAST", Unit::Bytes),
    ("index_bytes", "index size", Unit::Bytes),
];

/// The retention of the long run that prunes: the shortest a worker accepts.
pub(crate) const SHORT_RETENTION: Duration = Duration::from_secs(1);

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
        figs.put(&PG.claim_p50(n), latency.p50);
        figs.put(&PG.claim_p99(n), latency.p99);

        eprintln!("[growth] backlog of {backlog}: a worker drains for up to {:?}", p.growth_drain);
        let (done, elapsed) =
            framework::drain_for(store, n.saturating_sub(claimed), p.growth_drain, Finished::Kept).await?;
        figs.put(&PG.drain(n), rate(done, elapsed));
        table_figures(pool, &format!("backlog_{n}"), figs).await?;
    }
    db::truncate_tasks(pool).await?;

    // a long steady run keeping every finished task, then the same pruning them after a second
    for (label, retention, key) in
        [("keep_all", None, PG.long_keep()), ("retention", Some(SHORT_RETENTION), PG.long_prune())]
    {
        eprintln!("[growth] long steady run for {:?}, {label}", p.growth_long);
        figs.put(&key, framework::steady_keeping(store, retention, p.steady_warmup, p.growth_long).await?);
        table_figures(pool, &format!("long_{label}"), figs).await?;
        db::truncate_tasks(pool).await?;
    }

    eprintln!("[growth] steady worker with a producer for {:?}: baseline", p.growth_pinned);
    figs.put(&PG.steady_baseline(), framework::steady(store, p.steady_warmup, p.growth_pinned).await?);
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
    figs.put(&PG.steady_pinned(), pinned?);
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
pub(crate) async fn claim_latency<S: TaskStore>(store: &S, samples: usize) -> Res<(Percentiles, u64)> {
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
    for ((name, _, _), value) in PG_AFTER.iter().zip([dead_tuples as f64, total as f64, indexes as f64]) {
        figs.put(&PG.after(phase, name), value);
    }
    Ok(())
}

/// PostgreSQL's growth table: each large backlog against the 10k one, the pinned horizon against its
/// baseline.
pub(crate) fn section(backlogs: &[u64]) -> Section {
    Section {
        title: "PostgreSQL: how cost grows (one pass)".to_owned(),
        ours_column: "measured",
        limit_column: "baseline",
        rows: rows(PG, backlogs, &PG_AFTER, "MVCC horizon pinned / not pinned"),
    }
}

/// The rows of a growth table: each large backlog against the 10k one, pruning against keeping, the
/// pinned run against its baseline; `after` names what was read after each phase, `pinned` what pinned.
pub(crate) fn rows(names: Names, backlogs: &[u64], after: &[(&str, &str, Unit)], pinned: &str) -> Vec<Row> {
    let g = names.0;
    let base = GROWTH_BASE_BACKLOG;
    let base_text = thousands(base as f64);
    let mut rows = Vec::new();
    for &n in backlogs.iter().filter(|n| **n != base) {
        let large = thousands(n as f64);
        rows.push(Row::new(
            &format!("{g}.claim_p50.{n}"),
            format!("claim of {CLAIM_SIZE} p50, backlog {large} / {base_text}"),
            Unit::Millis,
            &names.claim_p50(n),
            &names.claim_p50(base),
            Some(Target::AtMost(2.0)),
        ));
        rows.push(Row::new(
            &format!("{g}.claim_p99.{n}"),
            format!("claim of {CLAIM_SIZE} p99, backlog {large} / {base_text}"),
            Unit::Millis,
            &names.claim_p99(n),
            &names.claim_p99(base),
            None,
        ));
        rows.push(Row::new(
            &format!("{g}.drain.{n}"),
            format!("drain, jobs/s, backlog {large} / {base_text}"),
            Unit::Rate,
            &names.drain(n),
            &names.drain(base),
            None,
        ));
        let (large_phase, small_phase) = (format!("backlog_{n}"), format!("backlog_{base}"));
        rows.extend(after_rows(
            names,
            after,
            &format!("{g}.backlog.{n}"),
            &format!("backlog {large} / {base_text}"),
            &large_phase,
            &small_phase,
        ));
    }
    if backlogs.len() == 1 {
        // no larger backlog: show the one measured on its own
        let n = backlogs[0];
        rows.push(Row::limit_only(
            &format!("{g}.claim_p50.{n}"),
            format!("claim of {CLAIM_SIZE} p50, backlog {}", thousands(n as f64)),
            Unit::Millis,
            &names.claim_p50(n),
        ));
        rows.push(Row::limit_only(
            &format!("{g}.drain.{n}"),
            format!("drain, jobs/s, backlog {}", thousands(n as f64)),
            Unit::Rate,
            &names.drain(n),
        ));
    }
    rows.push(Row::new(
        &format!("{g}.long"),
        "long steady run, jobs/s: finished tasks pruned after 1 s / kept".to_owned(),
        Unit::Rate,
        &names.long_prune(),
        &names.long_keep(),
        None,
    ));
    rows.extend(after_rows(
        names,
        after,
        &format!("{g}.long"),
        "pruned after 1 s / kept",
        "long_retention",
        "long_keep_all",
    ));
    rows.push(Row::new(
        &format!("{g}.horizon"),
        format!("steady, producer running, jobs/s: {pinned}"),
        Unit::Rate,
        &names.steady_pinned(),
        &names.steady_baseline(),
        Some(Target::AtLeast(0.5)),
    ));
    rows.extend(after_rows(names, after, &format!("{g}.horizon"), pinned, "horizon_pinned", "horizon_baseline"));
    rows
}

/// What was read after phase `ours` against phase `base`.
fn after_rows(names: Names, after: &[(&str, &str, Unit)], id: &str, what: &str, ours: &str, base: &str) -> Vec<Row> {
    after
        .iter()
        .map(|&(name, label, unit)| {
            Row::new(
                &format!("{id}.{name}"),
                format!("{label}, {what}"),
                unit,
                &names.after(ours, name),
                &names.after(base, name),
                None,
            )
        })
        .collect()
}
