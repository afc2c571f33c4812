//! How balancing is configured: the `[health]`, `[outlier]` and `[retry]` sections and the
//! balance of a set, as a service's configuration file spells them.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How a pool picks an endpoint for each call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Power of two choices: of two random healthy endpoints, the one with the lower cost
    /// (latency EWMA × (calls in flight + 1) × (1 + silence / 100 ms)), so slow, failing and
    /// silent endpoints get less traffic.
    #[default]
    P2c,
    /// Each healthy endpoint in turn, as the article's load balancer does.
    RoundRobin,
}

/// `[health]`: active health checks (`grpc.health.v1` for workers, `GET /health` for upstreams).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// How often each endpoint is checked.
    #[serde(with = "rampart_common::duration")]
    pub interval: Duration,
    /// How long a check may take before it counts as failed.
    #[serde(with = "rampart_common::duration")]
    pub timeout: Duration,
    /// Passing checks in a row that bring an unhealthy endpoint back. A new endpoint takes
    /// traffic after its first passing check.
    pub rise: u32,
    /// Failing checks in a row that take an endpoint out.
    pub fall: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self { interval: Duration::from_secs(1), timeout: Duration::from_secs(1), rise: 2, fall: 2 }
    }
}

/// `[outlier]`: passive ejection of endpoints that fail live traffic.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutlierConfig {
    /// Failed calls in a row that eject an endpoint (0 turns ejection off).
    pub consecutive_failures: u32,
    /// How long the first ejection lasts; each further one lasts that much longer.
    #[serde(with = "rampart_common::duration")]
    pub base_ejection: Duration,
    /// The longest an ejection lasts.
    #[serde(with = "rampart_common::duration")]
    pub max_ejection: Duration,
    /// The most endpoints of a pool ejected at once, as a percentage.
    pub max_ejected_percent: u32,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(300),
            max_ejected_percent: 50,
        }
    }
}

/// `[retry]`: when and how often a failed call is tried again.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Calls per request at most, the first included.
    pub max_attempts: u32,
    /// Retries allowed as a share of first attempts (0.2 = one retry per five requests)...
    pub budget_ratio: f64,
    /// ...plus this many retries per second whatever the traffic.
    pub budget_min_per_second: f64,
    /// Backoff before a retry: a random wait up to base × 2^(retry − 1)...
    #[serde(with = "rampart_common::duration")]
    pub backoff_base: Duration,
    /// ...and never more than this.
    #[serde(with = "rampart_common::duration")]
    pub backoff_max: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            budget_ratio: 0.2,
            budget_min_per_second: 10.0,
            backoff_base: Duration::from_millis(5),
            backoff_max: Duration::from_millis(250),
        }
    }
}
