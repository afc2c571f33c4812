//! Active health checks: each endpoint probed at an interval, with rise/fall thresholds. What a
//! probe is (`grpc.health.v1` for workers, `GET /health` for HTTP upstreams) is the transport's.

use crate::{
    config::HealthConfig,
    endpoint::{Endpoint, Health},
    set::EndpointSet,
};
use rampart_common::shutdown::{Every, FirstTick};
use std::{sync::Arc, time::Duration};
use tokio_util::sync::CancellationToken;

/// How one endpoint is asked whether it is healthy.
pub trait Probe: Clone + Send + Sync + 'static {
    /// Asks `endpoint`; the error says why it is not healthy.
    fn probe(&self, endpoint: &Endpoint) -> impl Future<Output = Result<(), String>> + Send;
}

/// Checks endpoints and records the results.
#[derive(Clone)]
pub struct HealthChecker<P> {
    config: HealthConfig,
    probe: P,
}

impl<P: Probe> HealthChecker<P> {
    /// A checker asking with `probe`.
    pub fn new(config: HealthConfig, probe: P) -> Self {
        Self { config, probe }
    }

    /// Checks one endpoint and records the result.
    pub async fn check(&self, endpoint: &Endpoint) {
        let outcome = tokio::time::timeout(self.config.timeout, self.probe.probe(endpoint)).await;
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(reason)) => Some(reason),
            Err(_) => Some(format!("no answer within {} ms", self.config.timeout.as_millis())),
        };
        let (before, after) =
            endpoint.health_tracker().record_check(failure.is_none(), self.config.rise, self.config.fall);
        if before != after {
            match (after, failure) {
                (Health::Healthy, _) => tracing::info!(endpoint = endpoint.url(), ?before, "endpoint is healthy"),
                (_, Some(reason)) => {
                    tracing::warn!(endpoint = endpoint.url(), ?before, %reason, "endpoint is unhealthy")
                }
                (_, None) => {}
            }
        }
    }

    /// Checks every endpoint of `sets` once, concurrently.
    pub async fn check_all(&self, sets: &[Arc<EndpointSet>]) {
        let mut round = tokio::task::JoinSet::new();
        for set in sets {
            for endpoint in set.snapshot().iter() {
                let (checker, endpoint) = (self.clone(), Arc::clone(endpoint));
                round.spawn(async move { checker.check(&endpoint).await });
            }
        }
        while round.join_next().await.is_some() {}
    }

    /// Checks `endpoint` in the background now (a newly discovered one, say).
    pub fn check_soon(&self, endpoint: Arc<Endpoint>) {
        let checker = self.clone();
        tokio::spawn(async move { checker.check(&endpoint).await });
    }

    /// Checks every endpoint of `sets` every interval until `stop`.
    pub async fn run(self, sets: Vec<Arc<EndpointSet>>, stop: CancellationToken) {
        let mut every = Every::new(self.config.interval, FirstTick::Now, stop);
        while every.tick().await {
            self.check_all(&sets).await;
        }
    }

    /// The configured interval.
    pub fn interval(&self) -> Duration {
        self.config.interval
    }
}
