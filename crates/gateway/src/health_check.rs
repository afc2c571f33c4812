//! Active health checks: each endpoint's `grpc.health.v1` status, polled at an interval.

use crate::{
    backends::{Backend, Health},
    pools::Pools,
};
use std::{sync::Arc, time::Duration};
use tokio_util::sync::CancellationToken;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

/// The service name workers register their health under.
const WORKER_SERVICE: &str = "rampart.v1.Worker";

/// Checks every endpoint every `interval` until `stop` is cancelled.
pub async fn run(pools: Arc<Pools>, interval: Duration, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A check may take as long as the interval, never longer, so rounds do not pile up.
    let timeout = interval.min(Duration::from_secs(2));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        // Concurrently, so one slow endpoint does not delay the others' verdicts.
        let mut round = tokio::task::JoinSet::new();
        for backend in pools.endpoints() {
            let backend = Arc::clone(backend);
            round.spawn(async move { check(&backend, timeout).await });
        }
        while round.join_next().await.is_some() {}
    }
}

async fn check(backend: &Backend, timeout: Duration) {
    let mut client = HealthClient::new(backend.channel().clone());
    let request = HealthCheckRequest { service: WORKER_SERVICE.to_owned() };
    let outcome = tokio::time::timeout(timeout, client.check(request)).await;
    let (health, reason) = match outcome {
        Ok(Ok(response)) if response.get_ref().status() == ServingStatus::Serving => (Health::Up, None),
        Ok(Ok(response)) => (Health::Down, Some(format!("reports {:?}", response.get_ref().status()))),
        Ok(Err(status)) => (Health::Down, Some(status.message().to_owned())),
        Err(_) => (Health::Down, Some(format!("no answer within {} ms", timeout.as_millis()))),
    };
    let before = backend.set_health(health);
    if before != health {
        match reason {
            None => tracing::info!(worker = backend.url(), ?before, "worker is up"),
            Some(reason) => {
                tracing::warn!(worker = backend.url(), ?before, %reason, "worker is down")
            }
        }
    }
}
