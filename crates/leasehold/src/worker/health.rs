//! Whether a worker runs and reaches its store, for readiness probes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

pub(crate) struct HealthState {
    worker_id: String,
    running: AtomicBool,
    base: Instant,
    /// Milliseconds after `base` of the latest store round trip that succeeded (a claim or a renewal).
    last_ok_ms: AtomicU64,
    /// Longer than this without a successful round trip reads as unreachable.
    stale_after: Duration,
}

impl HealthState {
    pub(crate) fn new(worker_id: String, poll: Duration, lease_window: Duration) -> Self {
        Self {
            worker_id,
            running: AtomicBool::new(false),
            base: Instant::now(),
            last_ok_ms: AtomicU64::new(0),
            // a worker that cannot reach its store for a whole trust window has lost its leases
            stale_after: (poll * 3).max(lease_window),
        }
    }

    pub(crate) fn set_running(&self, running: bool) {
        if running {
            self.store_ok();
        }
        self.running.store(running, Ordering::Release);
    }

    /// A claim or renewal round trip succeeded.
    pub(crate) fn store_ok(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ok_ms.fetch_max(ms, Ordering::Relaxed);
    }
}

/// A handle on a worker's health; cheap to clone. Serve it with
/// [`crate::admin::AdminBuilder::worker_check`] or ask it directly.
#[derive(Clone)]
pub struct WorkerHealth(pub(crate) Arc<HealthState>);

impl WorkerHealth {
    /// The worker's id.
    pub fn worker_id(&self) -> &str {
        &self.0.worker_id
    }

    /// Whether the worker runs: started, and not stopping or stopped.
    pub fn is_running(&self) -> bool {
        self.0.running.load(Ordering::Acquire)
    }

    /// `Ok` while the worker runs and its latest claim or renewal reached the store recently enough.
    pub fn check(&self) -> Result<(), String> {
        let h = &self.0;
        if !h.running.load(Ordering::Acquire) {
            return Err("not running".into());
        }
        let last = h.base + Duration::from_millis(h.last_ok_ms.load(Ordering::Relaxed));
        let since = last.elapsed();
        if since > h.stale_after {
            return Err(format!("no claim or renewal reached the store for {since:?}"));
        }
        Ok(())
    }
}
