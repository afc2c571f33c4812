//! Active health checks: `grpc.health.v1` Check for workers, `GET /health` for HTTP upstreams,
//! at an interval, with rise/fall thresholds.

use crate::{
    config::HealthConfig,
    endpoint::{Endpoint, Health, Transport},
    endpoint_set::EndpointSet,
    proxy::client::HttpClient,
};
use axum::body::Body;
use std::{sync::Arc, time::Duration};
use tokio_util::sync::CancellationToken;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

/// The service name workers register their health under.
const WORKER_SERVICE: &str = "rampart.v1.Worker";

/// Checks endpoints and records the results.
#[derive(Clone)]
pub struct HealthChecker {
    config: HealthConfig,
    http: HttpClient,
}

impl HealthChecker {
    /// A checker using `http` for upstream checks.
    pub fn new(config: HealthConfig, http: HttpClient) -> Self {
        Self { config, http }
    }

    /// Checks one endpoint and records the result.
    pub async fn check(&self, endpoint: &Endpoint) {
        let outcome = tokio::time::timeout(self.config.timeout, probe(endpoint, &self.http)).await;
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
        let mut ticker = tokio::time::interval(self.config.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticker.tick() => self.check_all(&sets).await,
            }
        }
    }

    /// The configured interval.
    pub fn interval(&self) -> Duration {
        self.config.interval
    }
}

async fn probe(endpoint: &Endpoint, http: &HttpClient) -> Result<(), String> {
    match endpoint.transport() {
        Transport::Grpc(channel, _) => {
            let mut client = HealthClient::new(channel.clone());
            let request = HealthCheckRequest { service: WORKER_SERVICE.to_owned() };
            match client.check(request).await {
                Ok(response) if response.get_ref().status() == ServingStatus::Serving => Ok(()),
                Ok(response) => Err(format!("reports {:?}", response.get_ref().status())),
                Err(status) => Err(status.message().to_owned()),
            }
        }
        Transport::Http => {
            let uri = format!("{}/health", endpoint.url());
            let request = http::Request::get(uri).body(Body::empty()).map_err(|error| error.to_string())?;
            match http.request(request).await {
                Ok(response) if response.status().is_success() => Ok(()),
                Ok(response) => Err(format!("GET /health answered {}", response.status())),
                Err(error) => Err(error.to_string()),
            }
        }
    }
}
