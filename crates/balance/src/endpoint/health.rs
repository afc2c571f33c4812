//! An endpoint's health as active checks and live traffic see it, with rise/fall thresholds.

use serde::Serialize;
use std::sync::{
    Mutex, PoisonError,
    atomic::{AtomicU8, Ordering},
};

/// What the gateway believes of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Not checked yet: takes no traffic until its first passing check.
    Unknown,
    /// Passing its checks: takes traffic.
    Healthy,
    /// Failing its checks, or refused a connection: takes no traffic until it passes `rise`
    /// checks in a row.
    Unhealthy,
}

impl Health {
    fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Healthy,
            2 => Self::Unhealthy,
            _ => Self::Unknown,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            Self::Unknown => 0,
            Self::Healthy => 1,
            Self::Unhealthy => 2,
        }
    }
}

#[derive(Debug, Default)]
struct Streak {
    passes: u32,
    failures: u32,
}

/// Health status with the streaks that move it.
#[derive(Debug)]
pub struct HealthTracker {
    status: AtomicU8,
    streak: Mutex<Streak>,
}

impl Default for HealthTracker {
    fn default() -> Self {
        Self { status: AtomicU8::new(Health::Unknown.as_u8()), streak: Mutex::default() }
    }
}

impl HealthTracker {
    /// The current status; a single atomic load, for the request path.
    pub fn status(&self) -> Health {
        Health::from_u8(self.status.load(Ordering::Relaxed))
    }

    fn set(&self, health: Health) -> Health {
        Health::from_u8(self.status.swap(health.as_u8(), Ordering::Relaxed))
    }

    /// Records a check's result; returns the status before and after.
    pub fn record_check(&self, passed: bool, rise: u32, fall: u32) -> (Health, Health) {
        let mut streak = self.streak.lock().unwrap_or_else(PoisonError::into_inner);
        let before = self.status();
        let after = if passed {
            streak.failures = 0;
            streak.passes = streak.passes.saturating_add(1);
            match before {
                Health::Unknown | Health::Healthy => Health::Healthy,
                Health::Unhealthy if streak.passes >= rise => Health::Healthy,
                Health::Unhealthy => Health::Unhealthy,
            }
        } else {
            streak.passes = 0;
            streak.failures = streak.failures.saturating_add(1);
            if streak.failures >= fall { Health::Unhealthy } else { before }
        };
        self.set(after);
        (before, after)
    }

    /// Takes the endpoint out at once: live traffic proved it unreachable (a refused connection).
    /// Returns the status before.
    pub fn mark_unreachable(&self) -> Health {
        let mut streak = self.streak.lock().unwrap_or_else(PoisonError::into_inner);
        streak.passes = 0;
        self.set(Health::Unhealthy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_endpoint_is_healthy_after_its_first_pass() {
        let tracker = HealthTracker::default();
        assert_eq!(tracker.status(), Health::Unknown);
        assert_eq!(tracker.record_check(true, 3, 2), (Health::Unknown, Health::Healthy));
    }

    #[test]
    fn fall_failures_take_it_out_and_rise_passes_bring_it_back() {
        let tracker = HealthTracker::default();
        tracker.record_check(true, 2, 2);
        assert_eq!(tracker.record_check(false, 2, 2).1, Health::Healthy, "one failure is not enough");
        assert_eq!(tracker.record_check(false, 2, 2).1, Health::Unhealthy);
        assert_eq!(tracker.record_check(true, 2, 2).1, Health::Unhealthy, "one pass is not enough");
        assert_eq!(tracker.record_check(true, 2, 2).1, Health::Healthy);
    }

    #[test]
    fn an_unreachable_endpoint_needs_rise_passes_to_return() {
        let tracker = HealthTracker::default();
        tracker.record_check(true, 2, 2);
        assert_eq!(tracker.mark_unreachable(), Health::Healthy);
        assert_eq!(tracker.record_check(true, 2, 2).1, Health::Unhealthy);
        assert_eq!(tracker.record_check(true, 2, 2).1, Health::Healthy);
    }
}
