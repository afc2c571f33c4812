//! The GCRA decision on one key's state.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

/// A rate and a burst: `burst` requests at once, refilled at `rate` per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quota {
    rate: f64,
    burst: u32,
    /// Emission interval `T`: nanoseconds per request at the steady rate.
    interval: u64,
    /// Tolerance `τ = burst × T`.
    tolerance: u64,
}

/// A rate or burst that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuotaError {
    /// The rate is not a positive finite number, or so high that one request takes under 1 ns.
    #[error("rate must be a positive number of requests per second up to 1e9 (got {0})")]
    Rate(f64),
    /// The burst is zero.
    #[error("burst must be at least 1")]
    Burst,
}

impl Quota {
    /// `rate` requests per second with bursts of up to `burst`.
    pub fn new(rate: f64, burst: u32) -> Result<Self, QuotaError> {
        if !(rate.is_finite() && rate > 0.0 && rate <= 1e9) {
            return Err(QuotaError::Rate(rate));
        }
        if burst == 0 {
            return Err(QuotaError::Burst);
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        // 1 ≤ 1e9/rate ≤ ~1.8e19 checked above
        let interval = ((1e9 / rate).round() as u64).max(1);
        Ok(Self { rate, burst, interval, tolerance: interval.saturating_mul(u64::from(burst)) })
    }

    /// Requests per second at the steady rate.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Requests admitted at once from idle.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// Time between requests at the steady rate.
    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval)
    }

    /// Decides one request at `now` (nanoseconds) against the TAT in `state`, enforcing one of
    /// `parts` equal shares of the quota (its rate and its burst divided by `parts`, a burst of
    /// one at least): each of `parts` gateways behind one load balancer enforces its share, and
    /// together they enforce the quota. The decision speaks of the whole quota.
    pub(crate) fn decide(&self, state: &AtomicU64, now: u64, parts: u32) -> Decision {
        let parts = u64::from(parts.max(1));
        // A request costs `parts` intervals; the tolerance holds one request at least.
        let interval = self.interval.saturating_mul(parts);
        let tolerance = self.tolerance.max(interval);
        let mut tat = state.load(Ordering::Acquire);
        loop {
            let next = tat.max(now).saturating_add(interval);
            let limit = now.saturating_add(tolerance);
            if next > limit {
                return Decision {
                    allowed: false,
                    limit: self.burst,
                    remaining: 0,
                    reset: Duration::from_nanos(tat.saturating_sub(now)),
                    retry_after: Duration::from_nanos(next - limit),
                };
            }
            match state.compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    let remaining = (limit - next) / interval * parts;
                    return Decision {
                        allowed: true,
                        limit: self.burst,
                        remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
                        reset: Duration::from_nanos(next - now),
                        retry_after: Duration::ZERO,
                    };
                }
                Err(current) => tat = current,
            }
        }
    }
}

/// The outcome of one rate-limit check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request is admitted.
    pub allowed: bool,
    /// The burst: requests admitted at once from idle.
    pub limit: u32,
    /// Requests that would be admitted right now after this one.
    pub remaining: u32,
    /// Time until the key is back to a full burst.
    pub reset: Duration,
    /// For a denied request, the time until the same request would be admitted; zero otherwise.
    pub retry_after: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn admits_the_burst_then_the_rate() {
        let quota = Quota::new(10.0, 3).unwrap(); // one per 100 ms, three at once
        let state = AtomicU64::new(0);
        let now = 1_000 * MS;
        let remaining: Vec<_> = (0..3).map(|_| quota.decide(&state, now, 1).remaining).collect();
        assert_eq!(remaining, [2, 1, 0]);
        let denied = quota.decide(&state, now, 1);
        assert!(!denied.allowed);
        assert_eq!(denied.retry_after, Duration::from_millis(100));
        assert_eq!(denied.reset, Duration::from_millis(300));
        // 100 ms later exactly one more fits.
        assert!(quota.decide(&state, now + 100 * MS, 1).allowed);
        assert!(!quota.decide(&state, now + 100 * MS, 1).allowed);
        // After a full refill the whole burst is back.
        let later = now + 1_000 * MS;
        assert_eq!(quota.decide(&state, later, 1).remaining, 2);
    }

    #[test]
    fn a_denied_request_costs_nothing() {
        let quota = Quota::new(1.0, 1).unwrap();
        let state = AtomicU64::new(0);
        let now = 10_000 * MS;
        assert!(quota.decide(&state, now, 1).allowed);
        for _ in 0..100 {
            assert!(!quota.decide(&state, now + 500 * MS, 1).allowed);
        }
        assert!(quota.decide(&state, now + 1_000 * MS, 1).allowed);
    }

    #[test]
    fn a_share_gets_its_part_of_the_rate_and_the_burst() {
        let quota = Quota::new(30.0, 6).unwrap(); // one per 33 ms, six at once
        let state = AtomicU64::new(0);
        let now = 1_000 * MS;
        let admitted = (0..10).filter(|_| quota.decide(&state, now, 3).allowed).count();
        assert_eq!(admitted, 2, "a third of the burst");
        let second = (1..=1000).filter(|ms| quota.decide(&state, now + ms * MS, 3).allowed).count();
        assert_eq!(second, 10, "a third of the rate: 10 a second");
        let tiny = Quota::new(1.0, 1).unwrap();
        assert!(tiny.decide(&AtomicU64::new(0), now, 5).allowed, "a share never drops below one request");
    }

    #[test]
    fn invalid_quotas_are_refused() {
        assert_eq!(Quota::new(0.0, 1), Err(QuotaError::Rate(0.0)));
        assert!(Quota::new(f64::NAN, 1).is_err());
        assert!(Quota::new(-1.0, 1).is_err());
        assert_eq!(Quota::new(1.0, 0), Err(QuotaError::Burst));
        assert_eq!(Quota::new(0.5, 1).unwrap().interval(), Duration::from_secs(2));
    }
}
