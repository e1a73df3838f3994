//! Exponential backoff with jitter for failed attempts.

use std::time::Duration;

use rand::Rng;

/// How long to wait before the next attempt after a failure.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// The delay after the first failure.
    pub base: Duration,
    /// Each further failure multiplies the delay by this factor.
    pub factor: f64,
    /// The delay never grows past this.
    pub max: Duration,
    /// The delay is spread by up to this fraction either way, so retries of a burst do not align.
    pub jitter: f64,
}

impl RetryPolicy {
    /// Default delay after the first failure.
    pub const DEFAULT_BASE: Duration = Duration::from_secs(1);
    /// Default growth factor.
    pub const DEFAULT_FACTOR: f64 = 2.0;
    /// Default cap.
    pub const DEFAULT_MAX: Duration = Duration::from_secs(6 * 60 * 60);
    /// Default jitter fraction.
    pub const DEFAULT_JITTER: f64 = 0.2;

    /// The delay before the attempt after `attempt` failed (`attempt` counts from 1).
    pub fn delay(&self, attempt: i32) -> Duration {
        let exp = attempt.saturating_sub(1).clamp(0, 62);
        let raw = self.base.as_secs_f64() * self.factor.powi(exp);
        let capped = raw.min(self.max.as_secs_f64());
        let spread = if self.jitter > 0.0 { rand::rng().random_range(-self.jitter..=self.jitter) } else { 0.0 };
        Duration::from_secs_f64((capped * (1.0 + spread)).clamp(0.0, self.max.as_secs_f64()))
    }

    /// Checks the policy makes sense.
    pub fn validate(&self) -> crate::Result<()> {
        if self.factor.is_nan() || self.factor < 1.0 || !(0.0..1.0).contains(&self.jitter) || self.max < self.base {
            return Err(crate::Error::InvalidConfig(format!(
                "retry policy needs factor >= 1, 0 <= jitter < 1 and max >= base, got {self:?}"
            )));
        }
        Ok(())
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Self::DEFAULT_BASE,
            factor: Self::DEFAULT_FACTOR,
            max: Self::DEFAULT_MAX,
            jitter: Self::DEFAULT_JITTER,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_and_caps() {
        let p = RetryPolicy { jitter: 0.0, ..RetryPolicy::default() };
        assert_eq!(p.delay(1), Duration::from_secs(1));
        assert_eq!(p.delay(2), Duration::from_secs(2));
        assert_eq!(p.delay(5), Duration::from_secs(16));
        assert_eq!(p.delay(1000), RetryPolicy::DEFAULT_MAX);
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let p = RetryPolicy::default();
        for _ in 0..1000 {
            let d = p.delay(3).as_secs_f64();
            assert!((3.2..=4.8).contains(&d), "{d}");
        }
    }

    #[test]
    fn rejects_shrinking_policies() {
        let p = RetryPolicy { factor: 0.5, ..RetryPolicy::default() };
        assert!(p.validate().is_err());
    }
}
