//! The sections of the gateway's configuration file.

use rampart_common::rate_limit::{Quota, QuotaError};
use serde::Deserialize;
use std::time::Duration;

/// How a pool picks an endpoint for each call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
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

/// `[[pools]]`: workers that run the listed job kinds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// The pool's name, shown at `/admin/backends` and in logs.
    pub name: String,
    /// Its worker endpoints: `http://HOST:PORT`, or `dns://NAME:PORT` for every address the name
    /// resolves to (re-resolved every `dns_refresh`).
    pub workers: Vec<String>,
    /// The job kinds routed to it.
    pub kinds: Vec<String>,
    /// How it picks an endpoint.
    #[serde(default)]
    pub balance: Balance,
}

/// `[[routes]]`: a path prefix proxied to plain-HTTP upstreams (the article's load balancer).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Requests whose path starts with this are proxied; the longest matching prefix wins.
    pub prefix: String,
    /// Upstream base URLs: `http://HOST:PORT` or `dns://NAME:PORT`.
    pub upstreams: Vec<String>,
    /// How it picks an upstream.
    #[serde(default)]
    pub balance: Balance,
    /// Time budget of a proxied request [default: `request_timeout`].
    #[serde(default, with = "rampart_common::duration::optional")]
    pub timeout: Option<Duration>,
}

/// `[health]`: active health checks (`grpc.health.v1` for workers, `GET /health` for upstreams).
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Deserialize)]
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

/// `[admission]`: requests in flight allowed per route before the gateway sheds load.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdmissionConfig {
    /// Requests in flight per route; past it, `503 overloaded` at once.
    pub max_in_flight: usize,
    /// Routes with a different limit.
    pub routes: Vec<RouteAdmission>,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self { max_in_flight: 10_000, routes: Vec::new() }
    }
}

/// `[[admission.routes]]`: the in-flight limit of one route.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteAdmission {
    /// The route template (`/api/process`) or a `[[routes]]` prefix.
    pub route: String,
    /// Requests in flight allowed on it.
    pub max_in_flight: usize,
}

/// `[rate_limit]`: per-client limits (a client is its address, the /64 of an IPv6 one, or behind
/// `trusted_proxies` the address they report), an optional global limit and per-route overrides
/// of the client limit.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Requests per second each client may make, sustained.
    pub rate: f64,
    /// Requests each client may make at once.
    pub burst: u32,
    /// Requests per second across all clients; no global limit when absent.
    pub global_rate: Option<f64>,
    /// Global burst [default: one second at `global_rate`].
    pub global_burst: Option<u32>,
    /// Most clients tracked at once; past it, the clients nearest a full bucket are forgotten
    /// (they lose at most what they still owed) to make room for new ones.
    pub max_keys: usize,
    /// Client limits that differ by route.
    pub routes: Vec<RouteRateLimit>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            rate: 1000.0,
            burst: 200,
            global_rate: None,
            global_burst: None,
            max_keys: 1_000_000,
            routes: Vec::new(),
        }
    }
}

/// `[[rate_limit.routes]]`: a per-client limit for one route, replacing the default one there.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRateLimit {
    /// The route template, for example `/api/process`.
    pub route: String,
    /// Requests per second each client may make on this route.
    pub rate: f64,
    /// Requests each client may make at once on this route.
    pub burst: u32,
}

impl RateLimitConfig {
    /// The per-client quota.
    pub fn client_quota(&self) -> Result<Quota, QuotaError> {
        Quota::new(self.rate, self.burst)
    }

    /// The global quota, if any.
    pub fn global_quota(&self) -> Result<Option<Quota>, QuotaError> {
        self.global_rate
            .map(|rate| {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // clamped to u32
                let default_burst = rate.ceil().clamp(1.0, f64::from(u32::MAX)) as u32;
                Quota::new(rate, self.global_burst.unwrap_or(default_burst))
            })
            .transpose()
    }
}
