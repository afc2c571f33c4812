//! One endpoint calls are sent to (a worker over gRPC, a plain-HTTP upstream: the transport is
//! the caller's), with everything the balancer knows of it: health, load, passive ejection and a
//! circuit breaker.

mod health;
mod load;

pub use health::{Health, HealthTracker};
pub use load::{CallInFlight, Load, Rank};

use crate::{clock, config::OutlierConfig};
use rampart_common::breaker::{BreakerConfig, BreakerSnapshot, CircuitBreaker, State, Transition};
use serde::Serialize;
use std::{
    sync::atomic::{AtomicU32, AtomicU64, Ordering},
    time::Duration,
};

/// Identifies endpoints, for what a transport keeps per endpoint (connections, channels).
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// One endpoint.
pub struct Endpoint {
    id: u64,
    url: String,
    /// `HOST:PORT` of the URL, parsed once.
    authority: Option<http::uri::Authority>,
    /// The URL as a `'static` metric label.
    label: &'static str,
    health: HealthTracker,
    load: Load,
    breaker: CircuitBreaker,
    consecutive_failures: AtomicU32,
    ejected_until: AtomicU64,
    ejections: AtomicU32,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("url", &self.url).field("health", &self.health()).finish_non_exhaustive()
    }
}

/// An endpoint as shown at `GET /admin/backends`.
#[derive(Debug, Serialize)]
pub struct EndpointView<'a> {
    /// The endpoint's URL.
    pub url: &'a str,
    /// What active checks and live traffic say of it.
    pub health: Health,
    /// Whether passive ejection has taken it out for now.
    pub ejected: bool,
    /// How many times passive ejection has taken it out.
    pub ejections: u32,
    /// Calls in flight.
    pub in_flight: u32,
    /// The latency EWMA in milliseconds.
    pub ewma_ms: f64,
    /// How long it has had calls in flight and answered none, in milliseconds.
    pub silence_ms: f64,
    /// The circuit breaker.
    pub breaker: BreakerSnapshot,
}

impl Endpoint {
    /// An endpoint at `url` (`http://HOST:PORT`) guarded by a breaker configured by `breaker`.
    pub fn new(url: &str, breaker: &BreakerConfig) -> Self {
        let label = rampart_common::metrics::intern(url);
        metrics::gauge!("rampart_breaker_state", "endpoint" => label).set(State::Closed.as_gauge());
        let breaker = CircuitBreaker::new(breaker.clone()).on_transition(move |transition| announce(label, transition));
        let authority = url.parse::<http::Uri>().ok().and_then(|uri| uri.authority().cloned());
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            authority,
            url: url.trim_end_matches('/').to_owned(),
            label,
            health: HealthTracker::default(),
            load: Load::default(),
            breaker,
            consecutive_failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
        }
    }

    /// A number no other endpoint of this process has, for a transport's per-endpoint state.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The endpoint's URL, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `HOST:PORT` of the URL.
    pub fn authority(&self) -> Option<&http::uri::Authority> {
        self.authority.as_ref()
    }

    /// The URL as a metric label.
    pub fn label(&self) -> &'static str {
        self.label
    }

    /// Its health tracker.
    pub fn health_tracker(&self) -> &HealthTracker {
        &self.health
    }

    /// The current health status.
    pub fn health(&self) -> Health {
        self.health.status()
    }

    /// Its load figures.
    pub fn load(&self) -> &Load {
        &self.load
    }

    /// Its circuit breaker. Only [`crate::call`] takes its permits, so the crate keeps it.
    pub(crate) fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// What its circuit breaker says now.
    pub fn breaker_snapshot(&self) -> BreakerSnapshot {
        self.breaker.snapshot()
    }

    /// Whether passive ejection keeps it out at `now`.
    pub fn ejected(&self, now: u64) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now
    }

    /// Records a successful call for passive ejection.
    pub fn record_success(&self) {
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }

    /// Records a failed call; returns true when it makes `config.consecutive_failures` in a
    /// row, which is when the pool may eject the endpoint.
    pub fn record_failure(&self, config: &OutlierConfig) -> bool {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        config.consecutive_failures > 0 && failures >= config.consecutive_failures
    }

    /// Ejects the endpoint: for `base_ejection` × the number of its ejections so far, at most
    /// `max_ejection`.
    pub fn eject(&self, config: &OutlierConfig, now: u64) -> Duration {
        let count = self.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        let length = config.base_ejection.saturating_mul(count).min(config.max_ejection);
        self.ejected_until.store(now + clock::nanos(length), Ordering::Relaxed);
        self.consecutive_failures.store(0, Ordering::Relaxed);
        length
    }

    /// A view for the admin API.
    pub fn view(&self) -> EndpointView<'_> {
        let now = clock::now();
        EndpointView {
            url: &self.url,
            health: self.health(),
            ejected: self.ejected(now),
            ejections: self.ejections.load(Ordering::Relaxed),
            in_flight: self.load.in_flight(),
            ewma_ms: (self.load.latency(now) / 1e6 * 1000.0).round() / 1000.0,
            #[allow(clippy::cast_precision_loss)] // nanosecond spans far below 2^52
            silence_ms: (self.load.silence(now) as f64 / 1e6 * 1000.0).round() / 1000.0,
            breaker: self.breaker.snapshot(),
        }
    }
}

/// Logs a breaker's change of state and records it in the metrics.
fn announce(endpoint: &'static str, transition: &Transition) {
    metrics::gauge!("rampart_breaker_state", "endpoint" => endpoint).set(transition.to.as_gauge());
    metrics::counter!(
        "rampart_breaker_transitions_total",
        "endpoint" => endpoint,
        "from" => transition.from.as_str(),
        "to" => transition.to.as_str()
    )
    .increment(1);
    match transition.to {
        State::Open => tracing::warn!(
            endpoint,
            reason = ?transition.reason,
            open_for_ms = transition.open_for.map(|d| d.as_millis()),
            "circuit breaker opened"
        ),
        State::HalfOpen => tracing::info!(endpoint, "circuit breaker half-open, probing"),
        State::Closed => tracing::info!(endpoint, "circuit breaker closed"),
    }
}
