//! Worker configuration: named defaults, validated when the worker is built.

use std::time::Duration;

use leasehold_core::{DEFAULT_QUEUE, Error, MIN_LEASE_TTL, Result, RetryPolicy};

/// How a worker claims, leases and stops. Build one with [`crate::Worker::builder`].
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Tasks run at once.
    pub concurrency: u32,
    /// Queues claimed from, all in one order (priority, then `run_at`). On PostgreSQL a claim reads each
    /// queue on its own and, for the length of its statement, locks up to as many due tasks of each queue
    /// as it asks for in all: other workers' claims pass over the ones it does not take until it commits
    /// (they count as contended claims).
    pub queues: Vec<String>,
    /// Lease `L` for tasks that do not set their own, measured on the store's clock.
    pub lease_ttl: Duration,
    /// Heartbeat interval `H`: every lease held is renewed this often.
    pub heartbeat_interval: Duration,
    /// Safety margin `M`: the worker stops trusting a lease at `t0 + L - M`, where `t0` is its own
    /// monotonic time just before the last successful claim or renewal was sent (for a task handed over
    /// by its enqueue, the announcement whose offer it took).
    pub trust_margin: Duration,
    /// How long a cancelled handler may take to return before its future is dropped. Must be below
    /// the margin, so a self-fenced handler stops before anyone else can claim its task.
    pub cancel_grace: Duration,
    /// Claim at least this often when no wake-up arrives.
    pub poll_interval: Duration,
    /// How long a graceful stop lets running jobs finish before cancelling them.
    pub shutdown_timeout: Duration,
    /// Backoff for failed attempts.
    pub retry: RetryPolicy,
    /// Recorded on claimed tasks; a unique id is generated when unset.
    pub worker_id: Option<String>,
    /// How often the worker samples queue depth for the `leasehold_queue_depth` gauge; `None` turns
    /// the sampling off (one `GROUP BY` over the live tasks per sample). This is the shortest wait
    /// between samples: after a sample that took longer than a thirtieth of it (a backlog of
    /// millions), the next waits 30 times as long as that sample took, up to 20 intervals.
    pub depth_sample_interval: Option<Duration>,
    /// How long finished tasks (completed, cancelled, discarded) are kept, with their results and
    /// errors, before the worker deletes them; `None` (the default) keeps them forever. A task whose
    /// idempotency key is remembered longer stays until the key's retention ends. The setting acts on
    /// the whole store: the worker with the shortest retention decides.
    pub retention: Option<Duration>,
    /// Delete each task this worker completes, in the completion's own fenced statement, instead of
    /// keeping it as completed; `false` (the default) keeps it, with its result, until `retention`.
    /// A task with an idempotency key is kept while its key is remembered, so the key still finds it,
    /// and so is a task its handler completed in its own transaction; they, and cancelled and discarded
    /// tasks, stay until a `retention` deletes them. A deleted task can no longer be read
    /// (`Client::task` answers `Error::NotFound`) and its result is not stored. On PostgreSQL a
    /// deleting completion writes no new row version and no index entry, which is what makes it
    /// cheaper (see `docs/benchmarks-history.md`, "The deleting completion").
    pub delete_completed: bool,
}

impl WorkerConfig {
    /// Default concurrency.
    pub const DEFAULT_CONCURRENCY: u32 = 10;
    /// Default lease `L`.
    pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);
    /// Default heartbeat `H` (`L / 3`).
    pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
    /// Default margin `M`.
    pub const DEFAULT_TRUST_MARGIN: Duration = Duration::from_secs(5);
    /// Default cancel grace.
    pub const DEFAULT_CANCEL_GRACE: Duration = Duration::from_secs(2);
    /// Default poll interval.
    pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
    /// Default queue-depth sampling interval.
    pub const DEFAULT_DEPTH_SAMPLE_INTERVAL: Duration = Duration::from_secs(15);
    /// Default shutdown timeout.
    pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
    /// The most tasks one worker runs at once.
    pub const MAX_CONCURRENCY: u32 = 10_000;

    /// Checks the invariants of the lease protocol: `M < L`, `H < L - M`, grace < `M`.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidConfig(m));
        if self.concurrency == 0 || self.concurrency > Self::MAX_CONCURRENCY {
            return bad(format!("concurrency must be 1..={}, got {}", Self::MAX_CONCURRENCY, self.concurrency));
        }
        if self.queues.is_empty() {
            return bad("queues must be a non-empty list of names".into());
        }
        if let Some(m) = self.queues.iter().find_map(|q| leasehold_core::name_problem("a queue name", q)) {
            return bad(m);
        }
        let distinct: std::collections::HashSet<&String> = self.queues.iter().collect();
        if distinct.len() != self.queues.len() {
            return bad(format!("queues must not repeat a name, got {:?}", self.queues));
        }
        if self.lease_ttl < MIN_LEASE_TTL {
            return bad(format!("lease_ttl must be at least {MIN_LEASE_TTL:?}, got {:?}", self.lease_ttl));
        }
        if self.trust_margin.is_zero() || self.trust_margin >= self.lease_ttl {
            return bad(format!(
                "trust_margin must be above zero and below lease_ttl ({:?}), got {:?}",
                self.lease_ttl, self.trust_margin
            ));
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval >= self.lease_ttl - self.trust_margin {
            return bad(format!(
                "heartbeat_interval must be above zero and below lease_ttl - trust_margin ({:?}), got {:?}",
                self.lease_ttl - self.trust_margin,
                self.heartbeat_interval
            ));
        }
        if self.cancel_grace >= self.trust_margin {
            return bad(format!(
                "cancel_grace must be below trust_margin ({:?}), got {:?}",
                self.trust_margin, self.cancel_grace
            ));
        }
        if self.poll_interval.is_zero() {
            return bad("poll_interval must be above zero".into());
        }
        if self.retention.is_some_and(|r| r < Duration::from_secs(1)) {
            return bad(format!("retention must be at least 1s, got {:?}", self.retention));
        }
        if self.depth_sample_interval.is_some_and(|d| d < Duration::from_millis(100)) {
            return bad(format!("depth_sample_interval must be at least 100ms, got {:?}", self.depth_sample_interval));
        }
        self.retry.validate()
    }

    /// Margin, heartbeat and cancel grace for a lease of `ttl`: the configured ones, scaled down for a
    /// task whose own lease is shorter than the worker's, so that `M < L`, `H < L - M` and `G < M` hold
    /// for every lease the worker holds. The margin and the grace shrink in proportion to the lease,
    /// but the margin keeps a floor ([`MIN_SCALED_MARGIN`], or the worker's own margin if smaller, and
    /// at most a quarter of the lease); the heartbeat keeps its configured share of what the trust
    /// window leaves, `H / (L - M)`. In whole nanoseconds, the margin rounded up and the others down,
    /// so that rounding cannot make an inequality an equality.
    pub(crate) fn scaled(&self, ttl: Duration) -> Scaled {
        if ttl >= self.lease_ttl {
            return Scaled { margin: self.trust_margin, heartbeat: self.heartbeat_interval, grace: self.cancel_grace };
        }
        let (t, l) = (ttl.as_nanos(), self.lease_ttl.as_nanos());
        let nanos = |n: u128| Duration::from_nanos(u64::try_from(n).unwrap_or(u64::MAX));
        let floor = MIN_SCALED_MARGIN.min(self.trust_margin).min(ttl / 4);
        let margin = nanos((self.trust_margin.as_nanos() * t).div_ceil(l)).max(floor);
        let window = self.lease_ttl - self.trust_margin;
        let heartbeat = nanos((ttl - margin).as_nanos() * self.heartbeat_interval.as_nanos() / window.as_nanos());
        Scaled { margin, heartbeat, grace: nanos(self.cancel_grace.as_nanos() * t / l) }
    }
}

/// The least margin a short lease's is scaled down to: the parts of `M` that cover the scheduling delay
/// of the worker's timers on a busy machine and a handler noticing its cancellation do not shrink with
/// the lease, as the part for the clocks' rates does (a task's lease of 1 s would otherwise keep 167 ms
/// of the default 5 s margin).
pub(crate) const MIN_SCALED_MARGIN: Duration = Duration::from_millis(250);

/// The protocol's durations for one lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Scaled {
    pub(crate) margin: Duration,
    pub(crate) heartbeat: Duration,
    pub(crate) grace: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: Self::DEFAULT_CONCURRENCY,
            queues: vec![DEFAULT_QUEUE.to_owned()],
            lease_ttl: Self::DEFAULT_LEASE_TTL,
            heartbeat_interval: Self::DEFAULT_HEARTBEAT_INTERVAL,
            trust_margin: Self::DEFAULT_TRUST_MARGIN,
            cancel_grace: Self::DEFAULT_CANCEL_GRACE,
            poll_interval: Self::DEFAULT_POLL_INTERVAL,
            shutdown_timeout: Self::DEFAULT_SHUTDOWN_TIMEOUT,
            retry: RetryPolicy::default(),
            worker_id: None,
            depth_sample_interval: Some(Self::DEFAULT_DEPTH_SAMPLE_INTERVAL),
            retention: None,
            delete_completed: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        WorkerConfig::default().validate().unwrap();
    }

    #[test]
    fn rejects_a_heartbeat_that_cannot_keep_the_lease() {
        let c = WorkerConfig { heartbeat_interval: Duration::from_secs(26), ..WorkerConfig::default() };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("heartbeat_interval"), "{e}");
    }

    #[test]
    fn rejects_a_margin_as_long_as_the_lease() {
        let c = WorkerConfig { trust_margin: Duration::from_secs(30), ..WorkerConfig::default() };
        assert!(c.validate().unwrap_err().to_string().contains("trust_margin"));
    }

    #[test]
    fn rejects_zero_concurrency_and_empty_queues() {
        assert!(WorkerConfig { concurrency: 0, ..WorkerConfig::default() }.validate().is_err());
        assert!(WorkerConfig { queues: vec![], ..WorkerConfig::default() }.validate().is_err());
        assert!(WorkerConfig { queues: vec![String::new()], ..WorkerConfig::default() }.validate().is_err());
        let longest = "q".repeat(leasehold_core::MAX_NAME_LEN);
        assert!(WorkerConfig { queues: vec![longest.clone()], ..WorkerConfig::default() }.validate().is_ok());
        let long = WorkerConfig { queues: vec![longest + "q"], ..WorkerConfig::default() };
        assert!(long.validate().unwrap_err().to_string().contains("at most 512 bytes"));
    }

    #[test]
    fn scales_margin_and_heartbeat_for_short_leases() {
        let c = WorkerConfig::default();
        let s = c.scaled(Duration::from_secs(3));
        assert_eq!(
            (s.margin, s.heartbeat, s.grace),
            (Duration::from_millis(500), Duration::from_secs(1), Duration::from_millis(200))
        );
        assert!(s.grace < s.margin && s.heartbeat < Duration::from_secs(3) - s.margin);
        let long = c.scaled(Duration::from_secs(60));
        assert_eq!((long.margin, long.heartbeat, long.grace), (c.trust_margin, c.heartbeat_interval, c.cancel_grace));
    }

    /// A lease of 1 s (the shortest a task may ask for) keeps a margin of 250 ms, not the 167 ms of the
    /// default margin in proportion, and its heartbeat shrinks to keep `H < L - M`, also for a worker
    /// whose heartbeat takes nearly all of its trust window.
    #[test]
    fn short_leases_keep_a_floor_under_their_margin() {
        let check = |c: &WorkerConfig, ttl: Duration, margin: Duration, heartbeat: Duration| {
            let s = c.scaled(ttl);
            assert_eq!((s.margin, s.heartbeat), (margin, heartbeat), "{ttl:?}");
            assert!(s.grace < s.margin && s.heartbeat < ttl - s.margin, "{s:?}");
        };
        let c = WorkerConfig::default();
        check(&c, Duration::from_secs(1), Duration::from_millis(250), Duration::from_millis(300));
        let eager = WorkerConfig {
            trust_margin: Duration::from_secs(1),
            heartbeat_interval: Duration::from_secs(28),
            cancel_grace: Duration::from_millis(500),
            ..c
        };
        eager.validate().unwrap();
        check(&eager, Duration::from_secs(1), Duration::from_millis(250), Duration::from_nanos(750_000_000 * 28 / 29));
        // a worker's own margin below the floor is the floor: kept whole, not scaled down to 50 ms
        let tight = WorkerConfig {
            lease_ttl: Duration::from_secs(2),
            trust_margin: Duration::from_millis(100),
            heartbeat_interval: Duration::from_millis(950),
            cancel_grace: Duration::from_millis(50),
            ..WorkerConfig::default()
        };
        tight.validate().unwrap();
        check(&tight, Duration::from_secs(1), Duration::from_millis(100), Duration::from_millis(450));
    }

    /// The three inequalities hold for every lease from 1 s up to the worker's, on valid configurations
    /// at their edges: a heartbeat and a grace one nanosecond short of their bounds, margins from a
    /// nanosecond to all but a millisecond of the lease. (A margin that leaves the lease's trust window
    /// less than a nanosecond once scaled, a few nanoseconds of a 30 s lease, has no room left to keep
    /// them.)
    #[test]
    fn every_scaled_lease_keeps_the_protocols_inequalities() {
        let ns = Duration::from_nanos;
        let mut configs = vec![WorkerConfig::default()];
        for (l, m) in [(30, 5), (30, 29), (2, 1), (7, 3)] {
            let (l, m) = (Duration::from_secs(l), Duration::from_secs(m));
            for margin in [ns(1), ns(2), m, l - Duration::from_millis(1)] {
                let c = WorkerConfig {
                    lease_ttl: l,
                    trust_margin: margin,
                    heartbeat_interval: l - margin - ns(1),
                    cancel_grace: margin - ns(1),
                    ..WorkerConfig::default()
                };
                c.validate().unwrap();
                configs.push(c);
            }
        }
        for c in &configs {
            let mut ttl = Duration::from_secs(1);
            while ttl <= c.lease_ttl {
                let s = c.scaled(ttl);
                assert!(s.margin < ttl, "M < L: {ttl:?} {s:?} {c:?}");
                assert!(s.heartbeat < ttl - s.margin, "H < L - M: {ttl:?} {s:?} {c:?}");
                assert!(s.grace < s.margin, "G < M: {ttl:?} {s:?} {c:?}");
                ttl += Duration::from_millis(333) + ns(7);
            }
        }
    }
}
