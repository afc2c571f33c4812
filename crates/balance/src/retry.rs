//! Retries: a budget so they cannot multiply load in an outage, and backoff with full jitter.

use crate::config::RetryConfig;
use rampart_common::rate_limit::{DirectRateLimiter, Quota};
use std::{
    sync::atomic::{AtomicI64, Ordering},
    time::Duration,
};

/// Fixed-point scale of the budget's balance: 1,000 units are one retry.
const UNIT: i64 = 1000;

/// Retries allowed as a share of first attempts, plus a small floor per second: each first
/// attempt deposits `ratio` of a retry, each retry withdraws one. With the default 20%, an
/// outage can add at most a fifth to the load the workers see.
pub struct RetryBudget {
    deposit: i64,
    cap: i64,
    balance: AtomicI64,
    floor: Option<DirectRateLimiter>,
}

impl RetryBudget {
    /// A budget for `config`.
    pub fn new(config: &RetryConfig) -> Self {
        #[allow(clippy::cast_possible_truncation)] // a ratio in 0..=1
        let deposit = (config.budget_ratio * UNIT as f64).round() as i64;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let floor = (config.budget_min_per_second > 0.0).then(|| {
            let burst = config.budget_min_per_second.ceil().clamp(1.0, f64::from(u32::MAX)) as u32;
            Quota::new(config.budget_min_per_second, burst).ok().map(DirectRateLimiter::new)
        });
        Self { deposit, cap: 1000 * UNIT, balance: AtomicI64::new(0), floor: floor.flatten() }
    }

    /// Counts a first attempt.
    pub fn deposit(&self) {
        if self.deposit > 0 {
            let _ = self.balance.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |balance| {
                (balance < self.cap).then(|| (balance + self.deposit).min(self.cap))
            });
        }
    }

    /// Takes one retry from the budget, if there is one.
    pub fn try_withdraw(&self) -> bool {
        let taken = self
            .balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |balance| (balance >= UNIT).then_some(balance - UNIT))
            .is_ok();
        taken || self.floor.as_ref().is_some_and(|floor| floor.check().allowed)
    }
}

/// The wait before retry number `retry` (1 for the first): uniform between zero and
/// `base × 2^(retry − 1)`, capped at `max` ("full jitter", so retries from many requests spread
/// out instead of arriving together).
pub fn backoff(config: &RetryConfig, retry: u32) -> Duration {
    full_jitter(config.backoff_base, config.backoff_max, retry)
}

/// A random wait between zero and `base × 2^(retry − 1)`, capped at `max`.
pub fn full_jitter(base: Duration, max: Duration, retry: u32) -> Duration {
    let ceiling = base.saturating_mul(1 << retry.saturating_sub(1).min(16)).min(max);
    ceiling.mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(ratio: f64, floor: f64) -> RetryConfig {
        RetryConfig { budget_ratio: ratio, budget_min_per_second: floor, ..RetryConfig::default() }
    }

    #[test]
    fn retries_are_a_share_of_first_attempts() {
        let budget = RetryBudget::new(&config(0.2, 0.0));
        assert!(!budget.try_withdraw(), "nothing deposited yet");
        for _ in 0..10 {
            budget.deposit();
        }
        assert!(budget.try_withdraw() && budget.try_withdraw());
        assert!(!budget.try_withdraw(), "two retries for ten requests at 20%");
    }

    #[test]
    fn the_floor_allows_a_few_retries_on_quiet_traffic() {
        let budget = RetryBudget::new(&config(0.0, 3.0));
        let allowed = (0..10).filter(|_| budget.try_withdraw()).count();
        assert_eq!(allowed, 3);
    }

    #[test]
    fn backoff_grows_with_full_jitter_up_to_the_cap() {
        let config = RetryConfig {
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_millis(50),
            ..RetryConfig::default()
        };
        for retry in 1..10 {
            let ceiling = Duration::from_millis(10 << (retry - 1)).min(Duration::from_millis(50));
            for _ in 0..100 {
                assert!(backoff(&config, retry) <= ceiling);
            }
        }
        let spread: std::collections::HashSet<_> = (0..100).map(|_| backoff(&config, 3)).collect();
        assert!(spread.len() > 50, "jittered");
    }
}
