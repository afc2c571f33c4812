//! The worker endpoints the gateway balances over, each with its own gRPC channel, health and
//! circuit breaker.

use rampart_common::breaker::{BreakerConfig, BreakerSnapshot, CircuitBreaker, State, Transition};
use rampart_proto::v1::worker_client::WorkerClient;
use serde::Serialize;
use std::{
    sync::{
        Arc,
        atomic::{AtomicU8, AtomicUsize, Ordering},
    },
    time::Duration,
};
use tonic::transport::{Channel, Endpoint as TonicEndpoint};

/// What the gateway currently believes of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Not checked yet. Eligible for traffic, so a fresh gateway serves at once.
    Unknown,
    /// The last health check or call succeeded.
    Up,
    /// The last health check failed or a connection was refused. Skipped until a check passes.
    Down,
}

impl Health {
    fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Up,
            2 => Self::Down,
            _ => Self::Unknown,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            Self::Unknown => 0,
            Self::Up => 1,
            Self::Down => 2,
        }
    }
}

/// One worker endpoint.
pub struct Backend {
    url: String,
    /// The URL as a `'static` metric label.
    label: &'static str,
    channel: Channel,
    health: AtomicU8,
    breaker: CircuitBreaker,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend").field("url", &self.url).field("health", &self.health()).finish_non_exhaustive()
    }
}

impl Backend {
    /// An endpoint at `url` (already validated as `http://HOST:PORT`) with a breaker set up by
    /// `breaker`. It connects lazily, on first use.
    pub fn new(url: &str, breaker: &BreakerConfig) -> Result<Self, tonic::transport::Error> {
        let channel = TonicEndpoint::from_shared(url.to_owned())?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true)
            .connect_lazy();
        let label = rampart_common::metrics::intern(url);
        metrics::gauge!("rampart_breaker_state", "endpoint" => label).set(State::Closed.as_gauge());
        let breaker = CircuitBreaker::new(breaker.clone()).on_transition(move |transition| announce(label, transition));
        Ok(Self { url: url.to_owned(), label, channel, health: AtomicU8::new(Health::Unknown.as_u8()), breaker })
    }

    /// The endpoint's URL as a metric label.
    pub fn label(&self) -> &'static str {
        self.label
    }

    /// The endpoint's circuit breaker.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// The endpoint's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The gRPC channel to the endpoint.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// A `rampart.v1.Worker` client on the endpoint's channel.
    pub fn client(&self) -> WorkerClient<Channel> {
        WorkerClient::new(self.channel.clone())
    }

    /// The current health belief.
    pub fn health(&self) -> Health {
        Health::from_u8(self.health.load(Ordering::Relaxed))
    }

    /// Records a new health belief; returns the previous one.
    pub fn set_health(&self, health: Health) -> Health {
        Health::from_u8(self.health.swap(health.as_u8(), Ordering::Relaxed))
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
            worker = endpoint,
            reason = ?transition.reason,
            open_for_ms = transition.open_for.map(|d| d.as_millis()),
            "circuit breaker opened"
        ),
        State::HalfOpen => tracing::info!(worker = endpoint, "circuit breaker half-open, probing"),
        State::Closed => tracing::info!(worker = endpoint, "circuit breaker closed"),
    }
}

/// The set of worker endpoints, picked in rotation.
#[derive(Debug)]
pub struct Backends {
    backends: Vec<Arc<Backend>>,
    next: AtomicUsize,
}

/// An endpoint's state as shown at `GET /admin/backends`.
#[derive(Debug, Serialize)]
pub struct BackendView<'a> {
    /// The endpoint's URL.
    pub url: &'a str,
    /// The current health belief.
    pub health: Health,
    /// The circuit breaker.
    pub breaker: BreakerSnapshot,
}

impl Backends {
    /// Endpoints for `urls`, each with a breaker set up by `breaker`.
    pub fn new(urls: &[String], breaker: &BreakerConfig) -> Result<Self, tonic::transport::Error> {
        let backends = urls.iter().map(|url| Backend::new(url, breaker).map(Arc::new)).collect::<Result<_, _>>()?;
        Ok(Self { backends, next: AtomicUsize::new(0) })
    }

    /// Every endpoint, in configuration order.
    pub fn all(&self) -> &[Arc<Backend>] {
        &self.backends
    }

    /// Endpoints to try for one request: those not known to be down, starting at the next in
    /// rotation so that load spreads evenly. Empty when every endpoint is down.
    pub fn candidates(&self) -> impl Iterator<Item = &Arc<Backend>> {
        let count = self.backends.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..count)
            .map(move |offset| &self.backends[(start + offset) % count])
            .filter(|backend| backend.health() != Health::Down)
    }

    /// Endpoints believed up.
    pub fn healthy_count(&self) -> usize {
        self.backends.iter().filter(|backend| backend.health() == Health::Up).count()
    }

    /// A view of every endpoint for the admin API.
    pub fn views(&self) -> Vec<BackendView<'_>> {
        self.backends
            .iter()
            .map(|backend| BackendView {
                url: backend.url(),
                health: backend.health(),
                breaker: backend.breaker.snapshot(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(n: u16) -> Vec<String> {
        (1..=n).map(|port| format!("http://127.0.0.1:{port}")).collect()
    }

    #[tokio::test]
    async fn rotation_starts_at_each_endpoint_in_turn() {
        let backends = Backends::new(&urls(3), &BreakerConfig::default()).unwrap();
        let firsts: Vec<_> = (0..6).map(|_| backends.candidates().next().unwrap().url().to_owned()).collect();
        assert_eq!(firsts, [&urls(3)[..], &urls(3)[..]].concat());
    }

    #[tokio::test]
    async fn down_endpoints_are_skipped_until_they_recover() {
        let backends = Backends::new(&urls(2), &BreakerConfig::default()).unwrap();
        backends.all()[0].set_health(Health::Down);
        for _ in 0..4 {
            let tried: Vec<_> = backends.candidates().map(|b| b.url().to_owned()).collect();
            assert_eq!(tried, ["http://127.0.0.1:2"]);
        }
        backends.all()[1].set_health(Health::Down);
        assert_eq!(backends.candidates().count(), 0);
        backends.all()[0].set_health(Health::Up);
        assert_eq!(backends.candidates().count(), 1);
        assert_eq!(backends.healthy_count(), 1);
    }
}
