//! Waiting for a condition, with a deadline, instead of sleeping a guessed time.

use std::future::Future;
use std::time::Duration;

/// How often a condition is checked.
pub const CHECK_EVERY: Duration = Duration::from_millis(20);

/// Checks `cond` until it answers `Some`, or panics with `what` once `within` has passed.
pub async fn until<T, F, Fut>(what: &str, within: Duration, mut cond: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = cond().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
}
