//! GCRA on a single, unkeyed state: for limits shared by every caller, such as a global rate.

use super::{Decision, Quota};
use crate::clock::{Clock, MonotonicClock};
use std::sync::atomic::AtomicU64;

/// One rate limit shared by all its callers.
pub struct DirectRateLimiter<C: Clock = MonotonicClock> {
    quota: Quota,
    state: AtomicU64,
    clock: C,
}

impl<C: Clock> std::fmt::Debug for DirectRateLimiter<C> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("DirectRateLimiter").field("quota", &self.quota).finish_non_exhaustive()
    }
}

impl DirectRateLimiter<MonotonicClock> {
    /// A limiter applying `quota` on the real clock.
    pub fn new(quota: Quota) -> Self {
        Self::with_clock(quota, MonotonicClock::new())
    }
}

impl<C: Clock> DirectRateLimiter<C> {
    /// A limiter on the given clock.
    pub fn with_clock(quota: Quota, clock: C) -> Self {
        Self { quota, state: AtomicU64::new(0), clock }
    }

    /// The quota.
    pub fn quota(&self) -> &Quota {
        &self.quota
    }

    /// Decides one request now.
    pub fn check(&self) -> Decision {
        self.check_share(1)
    }

    /// Decides one request now against one of `parts` equal shares of the quota.
    pub fn check_share(&self, parts: u32) -> Decision {
        self.quota.decide(&self.state, self.clock.now_nanos(), parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::time::Duration;

    #[test]
    fn admits_the_burst_then_refills_at_the_rate() {
        let clock = ManualClock::new();
        clock.advance(Duration::from_secs(1));
        let limiter = DirectRateLimiter::with_clock(Quota::new(2.0, 2).unwrap(), clock.clone());
        assert!(limiter.check().allowed && limiter.check().allowed);
        assert!(!limiter.check().allowed);
        clock.advance(Duration::from_millis(500));
        assert!(limiter.check().allowed);
    }
}
