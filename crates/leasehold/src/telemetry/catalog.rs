//! Every metric leasehold emits: its name, type, unit, labels and buckets. `docs/metrics.md` holds the
//! same table for readers; a test fails when the two disagree.

/// The type of a metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    /// Only goes up; named `*_total`.
    Counter,
    /// A sampled or up-and-down value.
    Gauge,
    /// A distribution with explicit buckets.
    Histogram,
}

impl MetricType {
    /// The name used in the docs and in the Prometheus exposition.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// One metric of the catalog.
#[derive(Clone, Copy, Debug)]
pub struct MetricDef {
    /// The exported name, prefixed `leasehold_`.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricType,
    /// The base unit (`seconds`, `tasks`) or `1` for a plain count.
    pub unit: &'static str,
    /// The label names; each has a small, bounded set of values.
    pub labels: &'static [&'static str],
    /// What it measures.
    pub help: &'static str,
    /// Bucket bounds, for histograms.
    pub buckets: &'static [f64],
}

/// Bucket bounds for latencies, from 1 ms to 30 s.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Bucket bounds for job durations and queue waits, from 5 ms to 1 h.
pub const DURATION_BUCKETS: &[f64] =
    &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0];
/// Bucket bounds for batch sizes.
pub const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0];

macro_rules! metrics_catalog {
    ($($id:ident = $name:literal, $kind:ident, $unit:literal, [$($label:literal),*], $buckets:expr, $help:literal;)*) => {
        $(
            #[doc = $help]
            pub const $id: &str = $name;
        )*
        /// Every metric leasehold emits.
        pub const CATALOG: &[MetricDef] = &[
            $(MetricDef {
                name: $name,
                kind: MetricType::$kind,
                unit: $unit,
                labels: &[$($label),*],
                help: $help,
                buckets: $buckets,
            },)*
        ];
    };
}

metrics_catalog! {
    CLAIMS = "leasehold_claims_total", Counter, "1", ["backend", "outcome"], &[],
        "Claim attempts by outcome: claimed (tasks claimed without meeting another claimer), contended (met other claimers: skipped due tasks they held locked on PostgreSQL, waited for their write lock on SQLite; may still have claimed some), empty (nothing due), error, handoff (a task claimed for this idle worker by its enqueue, PostgreSQL; no claim of the worker's own; one per task).";
    CLAIM_DURATION = "leasehold_claim_duration_seconds", Histogram, "seconds", ["backend"], LATENCY_BUCKETS,
        "Time one claim took, from sending it to having the tasks.";
    CLAIM_BATCH = "leasehold_claim_batch_size", Histogram, "tasks", ["backend"], BATCH_BUCKETS,
        "Tasks returned by one claim that returned any.";
    RENEWALS = "leasehold_lease_renewals_total", Counter, "1", ["backend", "outcome"], &[],
        "Lease renewals, one per lease and round, by outcome: renewed, busy (row locked by the holder's own transaction), lost, error.";
    RENEWAL_LAG = "leasehold_lease_renewal_lag_seconds", Histogram, "seconds", ["backend"], LATENCY_BUCKETS,
        "How late a renewal round finished after it was due: scheduling delay plus the store's answer time.";
    LEASES_LOST = "leasehold_leases_lost_total", Counter, "1", ["backend", "queue", "kind", "reason"], &[],
        "Leases a worker lost, by reason: gone (a renewal found it taken or finished), trust_expired (no renewal in time; the worker fenced itself), fenced (a write was rejected).";
    STALE_WRITES = "leasehold_stale_writes_rejected_total", Counter, "1", ["write"], &[],
        "Writes refused because their fencing token was stale: complete, retry, snooze, finish, release, or application (a guarded row of the application's own).";
    VERSION_CONFLICTS = "leasehold_version_conflicts_total", Counter, "1", [], &[],
        "Optimistic version checks that found the row changed (guard::expect_version).";
    IDEMPOTENCY = "leasehold_idempotency_total", Counter, "1", ["backend", "scope", "outcome"], &[],
        "Keyed inserts by scope and outcome. task: an idempotent enqueue, new, hit (the earlier task answered) or conflict (same key, other payload); effect: a run-once effect key claimed in a transaction, new or hit (already done), counted when claimed even if that transaction rolls back.";
    ENQUEUED = "leasehold_tasks_enqueued_total", Counter, "1", ["backend", "queue", "kind"], &[],
        "Tasks enqueued through a Client.";
    TASK_OUTCOMES = "leasehold_task_outcomes_total", Counter, "1", ["backend", "queue", "kind", "outcome"], &[],
        "Attempts by outcome: completed, retried, discarded, cancelled, snoozed, released, lease_lost, self_fenced, write_failed. discarded also counts the tasks a claim discarded instead of running them (an expired lease on the last attempt, a payload that does not parse), with no duration recorded.";
    TASK_DURATION = "leasehold_task_duration_seconds", Histogram, "seconds", ["backend", "queue", "kind"], DURATION_BUCKETS,
        "Time a job ran, from its start to its outcome being written.";
    QUEUE_WAIT = "leasehold_queue_wait_seconds", Histogram, "seconds", ["backend", "queue", "kind"], DURATION_BUCKETS,
        "Time from a task's run_at to its start; this host's clock against the store's, so skew shows here.";
    QUEUE_DEPTH = "leasehold_queue_depth", Gauge, "tasks", ["backend", "queue", "state"], &[],
        "Tasks per queue in the states available (including those scheduled for later) and running, sampled by the worker.";
    PRUNED = "leasehold_tasks_pruned_total", Counter, "1", ["backend"], &[],
        "Finished tasks deleted by retention (WorkerConfig::retention).";
    IN_FLIGHT = "leasehold_tasks_in_flight", Gauge, "tasks", ["backend"], &[],
        "Tasks this process holds right now.";
    COMPLETION_BATCH = "leasehold_completion_batch_size", Histogram, "tasks", ["backend"], BATCH_BUCKETS,
        "Completions written by one fenced batch statement.";
    LOCK_ACQUISITIONS = "leasehold_lock_acquisitions_total", Counter, "1", ["backend", "lock", "outcome"], &[],
        "Attempts to take or keep a leased lock (the scheduler's leadership), by outcome: acquired (a new term), renewed, busy (held by another), error.";
    LOCK_WAIT = "leasehold_lock_wait_seconds", Histogram, "seconds", ["backend", "lock"], DURATION_BUCKETS,
        "Time from this instance's first attempt to its acquiring the lock; 0 when it was free.";
    LEADER_CHANGES = "leasehold_leader_changes_total", Counter, "1", ["backend", "lock"], &[],
        "Terms this process began as leader.";
    CRON_TICKS = "leasehold_cron_ticks_total", Counter, "1", ["backend", "schedule", "outcome"], &[],
        "Schedule ticks by outcome: enqueued, caught_up, missed, skipped, buffered, triggered.";
}
