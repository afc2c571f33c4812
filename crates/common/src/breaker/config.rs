//! Breaker settings.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// When a breaker opens and how it recovers. Every field has a default, so a config section may
/// name only what it changes.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Open after this many failures in a row (0 turns the rule off).
    pub consecutive_failures: u32,
    /// Open when failures make up at least this share of the window's calls…
    pub failure_ratio: f64,
    /// …provided the window holds at least this many calls.
    pub min_requests: u32,
    /// Length of the sliding window for the failure ratio.
    #[serde(with = "crate::duration")]
    pub window: Duration,
    /// How long the breaker stays open the first time; each re-open doubles it.
    #[serde(with = "crate::duration")]
    pub open_timeout: Duration,
    /// The longest the open timeout grows to.
    #[serde(with = "crate::duration")]
    pub max_open_timeout: Duration,
    /// Concurrent probes admitted half-open; this many successes close the breaker.
    pub half_open_probes: u32,
    /// A call unanswered for this long counts as a failure while it stays in flight, even when
    /// its own time budget is longer. Unset (the default), each call is stuck only once its own
    /// budget (the request's deadline, the job's time limit) has passed unanswered.
    #[serde(default, with = "crate::duration::optional")]
    pub slow_call: Option<Duration>,
    /// Random spread of each open timeout, as a share of it (0.2 = ±20%).
    pub jitter: f64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            failure_ratio: 0.5,
            min_requests: 20,
            window: Duration::from_secs(10),
            open_timeout: Duration::from_secs(5),
            max_open_timeout: Duration::from_secs(60),
            half_open_probes: 3,
            slow_call: None,
            jitter: 0.2,
        }
    }
}

/// A breaker setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct BreakerConfigError {
    /// The setting at fault.
    pub key: &'static str,
    /// Why.
    pub reason: &'static str,
}

impl BreakerConfig {
    /// Checks the settings make sense together.
    pub fn validate(&self) -> Result<(), BreakerConfigError> {
        let error = |key, reason| Err(BreakerConfigError { key, reason });
        if !(self.failure_ratio > 0.0 && self.failure_ratio <= 1.0) {
            return error("failure_ratio", "must be more than 0 and at most 1");
        }
        if self.window < Duration::from_millis(10) {
            return error("window", "must be at least 10ms");
        }
        if self.open_timeout.is_zero() {
            return error("open_timeout", "must be more than zero");
        }
        if self.max_open_timeout < self.open_timeout {
            return error("max_open_timeout", "must be at least open_timeout");
        }
        if self.half_open_probes == 0 {
            return error("half_open_probes", "must be at least 1");
        }
        if self.slow_call.is_some_and(|slow| slow.is_zero()) {
            return error("slow_call", "must be more than zero");
        }
        if !(0.0..1.0).contains(&self.jitter) {
            return error("jitter", "must be at least 0 and below 1");
        }
        Ok(())
    }
}
