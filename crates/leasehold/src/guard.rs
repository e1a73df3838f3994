//! Guards for the application's own rows: optimistic version checks and fenced writes.
//!
//! Both check what an `UPDATE` reported: zero rows affected means the guard refused the write.
//!
//! **Version check** (two holders of different tasks updating the same row):
//! ```sql
//! UPDATE products SET stock = stock - $3, version = version + 1 WHERE sku = $1 AND version = $2
//! ```
//! then [`expect_version`]`(rows, "products/sku-1", read_version)`; run the read-modify-write inside
//! [`retry_on_conflict`] to retry a bounded number of times with backoff.
//!
//! **Fenced write** (a resource outside transactional completion, written by whoever holds a task):
//! ```sql
//! UPDATE reports SET body = $2, last_fence = $3 WHERE id = $1 AND coalesce(last_fence, 0) <= $3
//! ```
//! with `$3 = ctx.fence()`, then [`expect_fenced`]`(rows, ctx.lease())`. Tokens increase across every
//! claim of every task, so the row accepts each newer holder (and the current one again) and refuses every older one,
//! whichever task it came from.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::Rng;

use leasehold_core::{Error, Result, TaskLease};

use crate::job::BoxError;

static VERSION_CONFLICTS: AtomicU64 = AtomicU64::new(0);

/// Version conflicts seen by this process (by [`expect_version`]), for metrics.
pub fn version_conflicts() -> u64 {
    VERSION_CONFLICTS.load(Ordering::Relaxed)
}

/// `Ok` when the compare-and-set changed a row, [`Error::VersionConflict`] (counted) when it did not.
pub fn expect_version(rows_affected: u64, entity: impl std::fmt::Display, expected: i64) -> Result<()> {
    if rows_affected > 0 {
        return Ok(());
    }
    VERSION_CONFLICTS.fetch_add(1, Ordering::Relaxed);
    crate::telemetry::record::version_conflict();
    Err(Error::VersionConflict { entity: entity.to_string(), expected })
}

/// `Ok` when the fenced write changed a row, [`Error::LeaseLost`] when the row already carries a newer
/// token (a later holder wrote it).
pub fn expect_fenced(rows_affected: u64, lease: TaskLease) -> Result<()> {
    if rows_affected > 0 {
        return Ok(());
    }
    crate::telemetry::record::stale_write("application");
    Err(Error::lease_lost(lease))
}

/// How [`retry_on_conflict`] retries.
#[derive(Clone, Debug)]
pub struct VersionRetry {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// Delay after the first conflict; doubles after each further one, with jitter.
    pub base: Duration,
    /// Cap on the delay.
    pub max: Duration,
}

impl Default for VersionRetry {
    fn default() -> Self {
        Self { attempts: 8, base: Duration::from_millis(5), max: Duration::from_millis(200) }
    }
}

/// Runs `op` (a read-modify-write) until it succeeds, fails with something other than a version
/// conflict, or has been tried `policy.attempts` times; `op` gets the try number, from 1. A conflict is
/// recognised by the [`Error::VersionConflict`] inside the error, never by its text.
pub async fn retry_on_conflict<T, F, Fut>(policy: &VersionRetry, mut op: F) -> Result<T, BoxError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, BoxError>>,
{
    let mut delay = policy.base;
    for attempt in 1..=policy.attempts.max(1) {
        match op(attempt).await {
            Err(e) if is_version_conflict(&*e) && attempt < policy.attempts => {
                let jitter = rand::rng().random_range(0.5..1.5);
                tokio::time::sleep(delay.mul_f64(jitter)).await;
                delay = (delay * 2).min(policy.max);
            }
            other => return other,
        }
    }
    unreachable!("the last try returns")
}

/// Whether `e` is, or wraps, a [`Error::VersionConflict`].
pub fn is_version_conflict(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if matches!(err.downcast_ref::<Error>(), Some(Error::VersionConflict { .. })) {
            return true;
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasehold_core::{FencingToken, TaskId};

    #[test]
    fn zero_rows_is_a_counted_conflict() {
        let before = version_conflicts();
        assert!(expect_version(1, "t/1", 3).is_ok());
        let e = expect_version(0, "t/1", 3).unwrap_err();
        assert!(matches!(e, Error::VersionConflict { expected: 3, .. }));
        assert!(version_conflicts() > before, "the conflict was not counted");
    }

    #[test]
    fn zero_rows_on_a_fenced_write_is_lease_lost() {
        let lease = TaskLease { task_id: TaskId::new(), fence: FencingToken(9) };
        assert!(expect_fenced(1, lease).is_ok());
        assert!(expect_fenced(0, lease).unwrap_err().is_lease_lost());
    }

    #[tokio::test(start_paused = true)]
    async fn retries_conflicts_then_gives_up() {
        let policy = VersionRetry { attempts: 3, ..VersionRetry::default() };
        let mut tries = 0;
        let r: Result<(), BoxError> = retry_on_conflict(&policy, |_| {
            tries += 1;
            async { Err(Box::new(Error::VersionConflict { entity: "x".into(), expected: 1 }) as BoxError) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(tries, 3);
        let r = retry_on_conflict(&policy, |n| async move {
            if n < 2 {
                expect_version(0, "x", 1)?
            }
            Ok(n)
        })
        .await;
        assert_eq!(r.unwrap(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn other_errors_are_not_retried() {
        let mut tries = 0;
        let r: Result<(), BoxError> = retry_on_conflict(&VersionRetry::default(), |_| {
            tries += 1;
            async { Err("boom".into()) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(tries, 1);
    }
}
