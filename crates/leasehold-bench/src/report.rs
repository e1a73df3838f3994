//! The figures' names, the comparisons the report makes (each leasehold figure next to its limit, with
//! the ratio and the target), the printed tables and the one `BENCH_JSON` line.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::timing::{Percentiles, median};
use crate::{BATCH_ROUNDS, CLIENTS, Profile, SQLITE_CLIENTS, WORKER_CONCURRENCY, batch_round_rows};

/// The names figures are recorded under (and appear under in the JSON line).
pub(crate) mod key {
    /// Single-row INSERT, 1 client, rows/s.
    pub(crate) const RAW_INSERT_1: &str = "pg.limit.insert_1_client";
    /// Single-row INSERT, [`crate::CLIENTS`] clients, rows/s.
    pub(crate) const RAW_INSERT_N: &str = "pg.limit.insert_n_clients";
    /// INSERT of 1,000 rows per statement, rows/s.
    pub(crate) const RAW_BATCH: &str = "pg.limit.insert_1000_per_statement";
    /// Claim 100 + complete until empty, jobs/s.
    pub(crate) const RAW_DRAIN: &str = "pg.limit.claim100_drain";
    /// Claim 100 + complete on a full queue (prefilled, vacuumed, never drained), jobs/s.
    pub(crate) const RAW_FULL: &str = "pg.limit.claim100_full_queue";
    /// WAL bytes per task of the raw drain.
    pub(crate) const RAW_DRAIN_WAL: &str = "pg.limit.drain_wal_bytes_per_task";
    /// Writing transactions per 100 tasks of the raw drain.
    pub(crate) const RAW_DRAIN_XACTS: &str = "pg.limit.drain_transactions_per_100_tasks";
    /// Heap allocations per task of the raw drain (the whole program's).
    pub(crate) const RAW_DRAIN_ALLOCS: &str = "pg.limit.drain_allocations_per_task";
    /// Heap allocations per row of the single-row INSERTs, 1 client.
    pub(crate) const RAW_INSERT_ALLOCS: &str = "pg.limit.insert_1_client_allocations_per_row";
    /// Claim 10 + complete, jobs/s.
    pub(crate) const RAW_CLAIM10: &str = "pg.limit.claim10";
    /// Claim 1 + complete, jobs/s.
    pub(crate) const RAW_CLAIM1: &str = "pg.limit.claim1";
    /// Claim 100 + complete with a producer running, jobs/s.
    pub(crate) const RAW_STEADY: &str = "pg.limit.steady_claim100";
    /// LISTEN/NOTIFY floor, ms (p50, p95, p99).
    pub(crate) const RAW_NOTIFY: [&str; 3] =
        ["pg.limit.notify_floor_p50_ms", "pg.limit.notify_floor_p95_ms", "pg.limit.notify_floor_p99_ms"];
    /// Lease row acquire + release, 1 client, pairs/s.
    pub(crate) const RAW_LEASE_1: &str = "pg.limit.lease_pairs_1_client";
    /// Lease row acquire + release, [`crate::CLIENTS`] clients, pairs/s.
    pub(crate) const RAW_LEASE_N: &str = "pg.limit.lease_pairs_n_clients";

    /// `Client::enqueue`, 1 client, tasks/s.
    pub(crate) const LH_ENQUEUE_1: &str = "pg.leasehold.enqueue_1_client";
    /// `Client::enqueue`, [`crate::CLIENTS`] clients, tasks/s.
    pub(crate) const LH_ENQUEUE_N: &str = "pg.leasehold.enqueue_n_clients";
    /// `Client::enqueue`, 1 client, while a worker waits on the queue (every enqueue notifies), tasks/s.
    pub(crate) const LH_ENQUEUE_1_NOTIFY: &str = "pg.leasehold.enqueue_1_client_notifying";
    /// WAL bytes per task of leasehold's drain.
    pub(crate) const LH_DRAIN_WAL: &str = "pg.leasehold.drain_wal_bytes_per_task";
    /// Heap allocations per task of leasehold's drain (the whole program's).
    pub(crate) const LH_DRAIN_ALLOCS: &str = "pg.leasehold.drain_allocations_per_task";
    /// Heap allocations per task of `Client::enqueue`, 1 client.
    pub(crate) const LH_ENQUEUE_ALLOCS: &str = "pg.leasehold.enqueue_1_client_allocations_per_task";
    /// Writing transactions per 100 tasks of leasehold's drain.
    pub(crate) const LH_DRAIN_XACTS: &str = "pg.leasehold.drain_transactions_per_100_tasks";
    /// `Client::enqueue_many` in chunks of 1,000, tasks/s.
    pub(crate) const LH_BATCH: &str = "pg.leasehold.enqueue_many_1000";
    /// Worker drain of pre-enqueued no-op tasks, jobs/s.
    pub(crate) const LH_DRAIN: &str = "pg.leasehold.drain";
    /// The same with a worker that deletes the tasks it completes, jobs/s.
    pub(crate) const LH_DRAIN_DELETING: &str = "pg.leasehold.drain_deleting";
    /// WAL bytes per task of the deleting drain.
    pub(crate) const LH_DRAIN_DELETING_WAL: &str = "pg.leasehold.drain_deleting_wal_bytes_per_task";
    /// Writing transactions per 100 tasks of the deleting drain.
    pub(crate) const LH_DRAIN_DELETING_XACTS: &str = "pg.leasehold.drain_deleting_transactions_per_100_tasks";
    /// Heap allocations per task of the deleting drain (the whole program's).
    pub(crate) const LH_DRAIN_DELETING_ALLOCS: &str = "pg.leasehold.drain_deleting_allocations_per_task";
    /// Worker with a producer running, jobs/s.
    pub(crate) const LH_STEADY: &str = "pg.leasehold.steady";
    /// Idle enqueue-to-start latency, ms (p50, p95, p99).
    pub(crate) const LH_LATENCY: [&str; 3] =
        ["pg.leasehold.idle_latency_p50_ms", "pg.leasehold.idle_latency_p95_ms", "pg.leasehold.idle_latency_p99_ms"];
    /// Leader lease acquire + release, 1 client, pairs/s.
    pub(crate) const LH_LEASE_1: &str = "pg.leasehold.lease_pairs_1_client";
    /// Leader lease acquire + release, [`crate::CLIENTS`] clients, pairs/s.
    pub(crate) const LH_LEASE_N: &str = "pg.leasehold.lease_pairs_n_clients";

    /// SQLite: single-row INSERT, 1 client, rows/s.
    pub(crate) const SQ_RAW_INSERT_1: &str = "sqlite.limit.insert_1_client";
    /// SQLite: INSERT of 1,000 rows per statement, rows/s.
    pub(crate) const SQ_RAW_BATCH: &str = "sqlite.limit.insert_1000_per_statement";
    /// SQLite: claim 100 + complete until empty, jobs/s.
    pub(crate) const SQ_RAW_DRAIN: &str = "sqlite.limit.claim100_drain";
    /// SQLite: `Client::enqueue`, 1 client, tasks/s.
    pub(crate) const SQ_LH_ENQUEUE_1: &str = "sqlite.leasehold.enqueue_1_client";
    /// SQLite: `Client::enqueue_many` in chunks of 1,000, tasks/s.
    pub(crate) const SQ_LH_BATCH: &str = "sqlite.leasehold.enqueue_many_1000";
    /// SQLite: worker drain, jobs/s.
    pub(crate) const SQ_LH_DRAIN: &str = "sqlite.leasehold.drain";
    /// SQLite: worker drain deleting the tasks it completes, jobs/s.
    pub(crate) const SQ_LH_DRAIN_DELETING: &str = "sqlite.leasehold.drain_deleting";
    /// SQLite: claim 100 + complete with a producer running, jobs/s.
    pub(crate) const SQ_RAW_STEADY: &str = "sqlite.limit.steady_claim100";
    /// SQLite: worker with a producer running, jobs/s.
    pub(crate) const SQ_LH_STEADY: &str = "sqlite.leasehold.steady";
    /// SQLite: insert, in-process signal, claim of one, ms (p50, p95, p99).
    pub(crate) const SQ_RAW_SIGNAL: [&str; 3] =
        ["sqlite.limit.signal_floor_p50_ms", "sqlite.limit.signal_floor_p95_ms", "sqlite.limit.signal_floor_p99_ms"];
    /// SQLite: idle enqueue-to-start latency, ms (p50, p95, p99).
    pub(crate) const SQ_LH_LATENCY: [&str; 3] = [
        "sqlite.leasehold.idle_latency_p50_ms",
        "sqlite.leasehold.idle_latency_p95_ms",
        "sqlite.leasehold.idle_latency_p99_ms",
    ];
    /// SQLite: lease row acquire + release, 1 client, pairs/s.
    pub(crate) const SQ_RAW_LEASE_1: &str = "sqlite.limit.lease_pairs_1_client";
    /// SQLite: leader lease acquire + release, 1 client, pairs/s.
    pub(crate) const SQ_LH_LEASE_1: &str = "sqlite.leasehold.lease_pairs_1_client";
}

/// Every figure measured, in the order of the passes.
#[derive(Default)]
pub(crate) struct Figures {
    values: BTreeMap<String, Vec<f64>>,
}

impl Figures {
    /// Records one pass's value of a figure.
    pub(crate) fn put(&mut self, key: &str, value: f64) {
        self.values.entry(key.to_owned()).or_default().push(value);
    }

    /// Records one pass's latency percentiles under three names.
    pub(crate) fn put_latency(&mut self, keys: [&str; 3], p: Percentiles) {
        for (key, value) in keys.into_iter().zip([p.p50, p.p95, p.p99]) {
            self.put(key, value);
        }
    }

    /// The median over the passes.
    pub(crate) fn median(&self, key: &str) -> Option<f64> {
        self.values.get(key).map(Vec::as_slice).map(median)
    }

    /// The median over the passes of `ours / limit`, each pass's pair measured minutes apart.
    pub(crate) fn ratio(&self, ours: &str, limit: &str) -> Option<f64> {
        let (ours, limit) = (self.values.get(ours)?, self.values.get(limit)?);
        let per_pass: Vec<f64> =
            ours.iter().zip(limit).filter(|(_, l)| **l > 0.0 && l.is_finite()).map(|(o, l)| o / l).collect();
        (!per_pass.is_empty()).then(|| median(&per_pass))
    }
}

/// How a figure is shown.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Unit {
    /// Per second (rows, tasks, jobs, pairs), as an integer.
    Rate,
    /// Milliseconds.
    Millis,
    /// A count.
    Count,
    /// A fraction, with one decimal.
    Decimal,
    /// Bytes, shown in MiB.
    Bytes,
}

/// The goal a ratio is held to.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Target {
    /// The ratio must be at least this.
    AtLeast(f64),
    /// The ratio must be at most this.
    AtMost(f64),
}

impl Target {
    fn met(self, ratio: f64) -> bool {
        match self {
            Self::AtLeast(t) => ratio >= t,
            Self::AtMost(t) => ratio <= t,
        }
    }

    fn text(self) -> String {
        match self {
            Self::AtLeast(t) => format!(">= {t:.2}x"),
            Self::AtMost(t) => format!("<= {t:.2}x"),
        }
    }
}

/// One line of a table: leasehold's figure, the figure it is compared with, the target of the ratio.
pub(crate) struct Row {
    /// The comparison's name in the JSON line.
    pub(crate) id: String,
    /// What is measured, with its unit.
    pub(crate) label: String,
    /// How values are shown.
    pub(crate) unit: Unit,
    /// The figure measured (leasehold's), if any.
    pub(crate) ours: Option<String>,
    /// The figure it is held against (the limit, or a baseline), if any.
    pub(crate) limit: Option<String>,
    /// The goal of `ours / limit`.
    pub(crate) target: Option<Target>,
}

impl Row {
    /// A comparison of `ours` with `limit`.
    pub(crate) fn new(id: &str, label: String, unit: Unit, ours: &str, limit: &str, target: Option<Target>) -> Self {
        Self { id: id.to_owned(), label, unit, ours: Some(ours.to_owned()), limit: Some(limit.to_owned()), target }
    }

    /// A figure of the limit alone, for reference.
    pub(crate) fn limit_only(id: &str, label: String, unit: Unit, limit: &str) -> Self {
        Self { id: id.to_owned(), label, unit, ours: None, limit: Some(limit.to_owned()), target: None }
    }
}

/// One table.
pub(crate) struct Section {
    /// Its heading.
    pub(crate) title: String,
    /// The heading of the measured column.
    pub(crate) ours_column: &'static str,
    /// The heading of the column it is compared with.
    pub(crate) limit_column: &'static str,
    /// Its lines.
    pub(crate) rows: Vec<Row>,
}

/// The PostgreSQL table: leasehold against the raw SQL limit.
pub(crate) fn postgres_section(p: &Profile) -> Section {
    let n = CLIENTS;
    let c = WORKER_CONCURRENCY;
    let tasks = thousands(p.drain_tasks as f64);
    let rows = vec![
        Row::new(
            "pg.drain",
            format!(
                "drain of {tasks} no-op tasks, jobs/s (worker, concurrency {c} / claim 100 + complete on a full \
                 queue, {n} clients)"
            ),
            Unit::Rate,
            key::LH_DRAIN,
            key::RAW_FULL,
            Some(Target::AtLeast(1.2)),
        ),
        Row::new(
            "pg.drain_same_tasks",
            format!(
                "drain of {tasks} no-op tasks, jobs/s (worker / claim 100 + complete of the same tasks until empty)"
            ),
            Unit::Rate,
            key::LH_DRAIN,
            key::RAW_DRAIN,
            None,
        ),
        Row::new(
            "pg.drain_deleting",
            format!(
                "drain of {tasks} no-op tasks, a worker that deletes the tasks it completes, jobs/s (/ claim 100 + \
                 complete on a full queue)"
            ),
            Unit::Rate,
            key::LH_DRAIN_DELETING,
            key::RAW_FULL,
            None,
        ),
        Row::new(
            "pg.drain_deleting_wal",
            "drain deleting completed tasks, WAL bytes per task (/ claim 100 + complete of the same tasks)".to_owned(),
            Unit::Count,
            key::LH_DRAIN_DELETING_WAL,
            key::RAW_DRAIN_WAL,
            None,
        ),
        Row::new(
            "pg.drain_wal",
            "drain, WAL bytes per task (worker / claim 100 + complete of the same tasks)".to_owned(),
            Unit::Count,
            key::LH_DRAIN_WAL,
            key::RAW_DRAIN_WAL,
            None,
        ),
        Row::new(
            "pg.drain_transactions",
            "drain, writing transactions per 100 tasks (worker / claim 100 + complete of the same tasks)".to_owned(),
            Unit::Decimal,
            key::LH_DRAIN_XACTS,
            key::RAW_DRAIN_XACTS,
            None,
        ),
        Row::new(
            "pg.drain_allocations",
            "drain, heap allocations per task in this program (worker / claim 100 + complete of the same tasks)"
                .to_owned(),
            Unit::Decimal,
            key::LH_DRAIN_ALLOCS,
            key::RAW_DRAIN_ALLOCS,
            None,
        ),
        Row::new(
            "pg.steady",
            format!("steady, producer running, jobs/s (worker, concurrency {c} / claim 100 + complete, {n} clients)"),
            Unit::Rate,
            key::LH_STEADY,
            key::RAW_STEADY,
            None,
        ),
        Row::new(
            "pg.batch_enqueue",
            format!(
                "batch enqueue, {BATCH_ROUNDS} alternating rounds of {}, rows/s (enqueue_many of 1,000 / INSERT of \
                 1,000 rows)",
                thousands(batch_round_rows(p) as f64)
            ),
            Unit::Rate,
            key::LH_BATCH,
            key::RAW_BATCH,
            Some(Target::AtLeast(0.5)),
        ),
        Row::new(
            "pg.single_enqueue_1",
            "single enqueue, 1 client, rows/s (Client::enqueue / INSERT)".to_owned(),
            Unit::Rate,
            key::LH_ENQUEUE_1,
            key::RAW_INSERT_1,
            Some(Target::AtLeast(0.8)),
        ),
        Row::new(
            "pg.single_enqueue_1_notifying",
            "single enqueue, 1 client, while a worker waits on the queue (each enqueue notifies), rows/s".to_owned(),
            Unit::Rate,
            key::LH_ENQUEUE_1_NOTIFY,
            key::RAW_INSERT_1,
            None,
        ),
        Row::new(
            "pg.single_enqueue_n",
            format!("single enqueue, {n} clients, rows/s"),
            Unit::Rate,
            key::LH_ENQUEUE_N,
            key::RAW_INSERT_N,
            None,
        ),
        Row::new(
            "pg.single_enqueue_allocations",
            "single enqueue, 1 client, heap allocations per row in this program (Client::enqueue / INSERT)".to_owned(),
            Unit::Decimal,
            key::LH_ENQUEUE_ALLOCS,
            key::RAW_INSERT_ALLOCS,
            None,
        ),
        Row::new(
            "pg.idle_latency_p50",
            "idle enqueue-to-start latency p50 (LISTEN/NOTIFY floor: insert to claimed)".to_owned(),
            Unit::Millis,
            key::LH_LATENCY[0],
            key::RAW_NOTIFY[0],
            Some(Target::AtMost(1.25)),
        ),
        Row::new(
            "pg.idle_latency_p95",
            "idle enqueue-to-start latency p95".to_owned(),
            Unit::Millis,
            key::LH_LATENCY[1],
            key::RAW_NOTIFY[1],
            None,
        ),
        Row::new(
            "pg.idle_latency_p99",
            "idle enqueue-to-start latency p99".to_owned(),
            Unit::Millis,
            key::LH_LATENCY[2],
            key::RAW_NOTIFY[2],
            None,
        ),
        Row::new(
            "pg.lease_pairs_1",
            "lease acquire + release, 1 client, pairs/s (leader lease / lease row)".to_owned(),
            Unit::Rate,
            key::LH_LEASE_1,
            key::RAW_LEASE_1,
            Some(Target::AtLeast(0.8)),
        ),
        Row::new(
            "pg.lease_pairs_n",
            format!("lease acquire + release, {n} clients, pairs/s"),
            Unit::Rate,
            key::LH_LEASE_N,
            key::RAW_LEASE_N,
            Some(Target::AtLeast(0.8)),
        ),
        Row::limit_only(
            "pg.claim10",
            format!("claim 10 + complete, {n} clients, jobs/s"),
            Unit::Rate,
            key::RAW_CLAIM10,
        ),
        Row::limit_only("pg.claim1", format!("claim 1 + complete, {n} clients, jobs/s"), Unit::Rate, key::RAW_CLAIM1),
    ];
    Section {
        title: "PostgreSQL: leasehold against the raw SQL limit".to_owned(),
        ours_column: "leasehold",
        limit_column: "limit",
        rows,
    }
}

/// The SQLite table: leasehold against SQLite's own limit.
pub(crate) fn sqlite_section(p: &Profile) -> Section {
    let tasks = thousands(p.sqlite_drain_tasks as f64);
    let c = WORKER_CONCURRENCY;
    let n = SQLITE_CLIENTS;
    let rows = vec![
        Row::new(
            "sqlite.drain",
            format!(
                "drain of {tasks} no-op tasks, jobs/s (worker, concurrency {c} / claim 100 + complete in BEGIN \
                 IMMEDIATE, {n} client)"
            ),
            Unit::Rate,
            key::SQ_LH_DRAIN,
            key::SQ_RAW_DRAIN,
            Some(Target::AtLeast(0.8)),
        ),
        Row::new(
            "sqlite.drain_deleting",
            format!("drain of {tasks} no-op tasks, a worker that deletes the tasks it completes, jobs/s"),
            Unit::Rate,
            key::SQ_LH_DRAIN_DELETING,
            key::SQ_RAW_DRAIN,
            None,
        ),
        Row::new(
            "sqlite.batch_enqueue",
            format!("batch enqueue of {tasks}, rows/s (enqueue_many of 1,000 / INSERT of 1,000 rows)"),
            Unit::Rate,
            key::SQ_LH_BATCH,
            key::SQ_RAW_BATCH,
            None,
        ),
        Row::new(
            "sqlite.single_enqueue_1",
            "single enqueue, 1 client, rows/s (Client::enqueue / INSERT)".to_owned(),
            Unit::Rate,
            key::SQ_LH_ENQUEUE_1,
            key::SQ_RAW_INSERT_1,
            None,
        ),
        Row::new(
            "sqlite.steady",
            format!("steady, producer running, jobs/s (worker, concurrency {c} / claim 100 + complete, {n} client)"),
            Unit::Rate,
            key::SQ_LH_STEADY,
            key::SQ_RAW_STEADY,
            None,
        ),
        Row::new(
            "sqlite.idle_latency_p50",
            "idle enqueue-to-start latency p50 (floor: insert, in-process signal, claim of one)".to_owned(),
            Unit::Millis,
            key::SQ_LH_LATENCY[0],
            key::SQ_RAW_SIGNAL[0],
            None,
        ),
        Row::new(
            "sqlite.idle_latency_p99",
            "idle enqueue-to-start latency p99".to_owned(),
            Unit::Millis,
            key::SQ_LH_LATENCY[2],
            key::SQ_RAW_SIGNAL[2],
            None,
        ),
        Row::new(
            "sqlite.lease_pairs_1",
            "lease acquire + release, 1 client, pairs/s (leader lease / lease row)".to_owned(),
            Unit::Rate,
            key::SQ_LH_LEASE_1,
            key::SQ_RAW_LEASE_1,
            None,
        ),
    ];
    Section {
        title: "SQLite: leasehold against SQLite's own limit".to_owned(),
        ours_column: "leasehold",
        limit_column: "limit",
        rows,
    }
}

/// Prints the tables, then the `BENCH_JSON` line.
pub(crate) fn print(p: &Profile, sections: &[Section], figs: &Figures, notes: &[String]) {
    println!();
    println!(
        "leasehold-bench, profile {}: medians of {} interleaved passes; each ratio is the median of the \
         per-pass ratios",
        p.name, p.passes
    );
    for note in notes {
        println!("  {note}");
    }
    for section in sections {
        println!();
        println!("## {}", section.title);
        println!();
        println!("| figure | {} | {} | ratio | target | met |", section.ours_column, section.limit_column);
        println!("|---|---|---|---|---|---|");
        for row in &section.rows {
            let ours = row.ours.as_deref().and_then(|k| figs.median(k));
            let limit = row.limit.as_deref().and_then(|k| figs.median(k));
            let ratio = ratio_of(figs, row);
            let target = row.target.map_or_else(String::new, Target::text);
            let met = match (row.target, ratio) {
                (Some(t), Some(r)) if t.met(r) => "yes",
                (Some(_), Some(_)) => "no",
                _ => "",
            };
            println!(
                "| {} | {} | {} | {} | {target} | {met} |",
                row.label,
                show(row.unit, ours),
                show(row.unit, limit),
                ratio.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}x")),
            );
        }
    }
    println!();
    println!("BENCH_JSON {}", json_line(p, sections, figs, notes));
}

/// The ratio of a row, when both of its figures were measured.
fn ratio_of(figs: &Figures, row: &Row) -> Option<f64> {
    figs.ratio(row.ours.as_deref()?, row.limit.as_deref()?)
}

/// Every figure (medians and the per-pass values) and every comparison, as one JSON object.
fn json_line(p: &Profile, sections: &[Section], figs: &Figures, notes: &[String]) -> Value {
    let figures: Map<String, Value> = figs.values.keys().map(|k| (k.clone(), number(figs.median(k)))).collect();
    let per_pass: Map<String, Value> =
        figs.values.iter().map(|(k, v)| (k.clone(), v.iter().map(|x| number(Some(*x))).collect())).collect();
    let mut ratios = Map::new();
    let mut comparisons = Map::new();
    for row in sections.iter().flat_map(|s| &s.rows) {
        let ratio = ratio_of(figs, row);
        if row.ours.is_some() {
            ratios.insert(row.id.clone(), number(ratio));
        }
        comparisons.insert(
            row.id.clone(),
            json!({
                "label": row.label,
                "ours": row.ours,
                "limit": row.limit,
                "ours_value": number(row.ours.as_deref().and_then(|k| figs.median(k))),
                "limit_value": number(row.limit.as_deref().and_then(|k| figs.median(k))),
                "ratio": number(ratio),
                "target": row.target.map(Target::text),
                "met": match (row.target, ratio) {
                    (Some(t), Some(r)) => Value::Bool(t.met(r)),
                    _ => Value::Null,
                },
            }),
        );
    }
    json!({
        "profile": p.name,
        "passes": p.passes,
        "clients": CLIENTS,
        "worker_concurrency": WORKER_CONCURRENCY,
        "notes": notes,
        "figures": figures,
        "ratios": ratios,
        "comparisons": comparisons,
        "per_pass": per_pass,
    })
}

/// A JSON number, or null for a figure not measured (or not finite).
fn number(v: Option<f64>) -> Value {
    v.and_then(serde_json::Number::from_f64).map_or(Value::Null, Value::Number)
}

/// A value as the tables show it.
fn show(unit: Unit, v: Option<f64>) -> String {
    match v.filter(|v| v.is_finite()) {
        None => "-".to_owned(),
        Some(v) => match unit {
            Unit::Rate | Unit::Count => thousands(v),
            Unit::Millis => format!("{v:.2} ms"),
            Unit::Decimal => format!("{v:.1}"),
            Unit::Bytes => format!("{:.1} MiB", v / (1024.0 * 1024.0)),
        },
    }
}

/// `1234567.8` as `1,234,568`.
pub(crate) fn thousands(v: f64) -> String {
    let n = v.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}
