//! Keeping every endpoint set filled and checked: the worker pools and the route upstreams, each
//! resolved by discovery and watched by the health checker of its transport; and the workers
//! asked what they run, as often as names are resolved.

use crate::{AppState, proxy::client::UpstreamProbe};
use rampart_balance::{
    checks::{HealthChecker, Probe},
    discovery::{self, Source},
    endpoint::Health,
    set::EndpointSet,
};
use rampart_jobs::workers::WorkerProbe;
use std::{sync::Arc, time::Duration};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A set of endpoints and where they come from.
type Watched = (Arc<EndpointSet>, Vec<Source>);

fn pools(state: &AppState) -> Vec<Watched> {
    state.pools.all().iter().map(|pool| (Arc::clone(pool.set()), pool.specs().to_vec())).collect()
}

fn routes(state: &AppState) -> Vec<Watched> {
    state.routes.all().iter().map(|route| (Arc::clone(route.set()), route.specs().to_vec())).collect()
}

/// Resolves every set and checks each endpoint once, so that the gateway serves from its first
/// request; gives up on checks still running after the check timeout.
pub async fn first_round(state: &AppState) {
    let pools = pools(state);
    for (set, specs) in &pools {
        discovery::refresh(set, specs).await;
    }
    let workers = HealthChecker::new(state.config.health.clone(), WorkerProbe::new(state.pools.link()));
    let pool_sets: Vec<_> = pools.iter().map(|(set, _)| Arc::clone(set)).collect();
    let round = async { tokio::join!(workers.check_all(&pool_sets), prepare_routes(state)) };
    if tokio::time::timeout(check_time(state), round).await.is_err() {
        tracing::warn!("the first health checks did not all finish; endpoints not yet checked take no traffic");
    }
    // What the healthy workers run, so that kinds are routed (and unknown ones answered) at once.
    if tokio::time::timeout(check_time(state), state.pools.describe()).await.is_err() {
        tracing::warn!("not every worker described itself in time; its kinds are learned later");
    }
}

/// How long a round of first checks may take.
fn check_time(state: &AppState) -> Duration {
    state.config.health.timeout + Duration::from_millis(100)
}

/// Resolves the upstreams of `state`'s routes and checks those not checked yet (a route or an
/// upstream that is new), so a route serves from its first request; endpoints kept from before
/// keep their health. Gives up on checks still running after the check timeout.
pub async fn prepare_routes(state: &AppState) {
    let routes = routes(state);
    for (set, specs) in &routes {
        discovery::refresh(set, specs).await;
    }
    let unchecked: Vec<_> = routes
        .iter()
        .filter(|(set, _)| set.snapshot().iter().any(|endpoint| endpoint.health() == Health::Unknown))
        .map(|(set, _)| Arc::clone(set))
        .collect();
    if unchecked.is_empty() {
        return;
    }
    let upstreams = HealthChecker::new(state.config.health.clone(), UpstreamProbe(state.http().clone()));
    if tokio::time::timeout(check_time(state), upstreams.check_all(&unchecked)).await.is_err() {
        tracing::warn!("not every new upstream was checked in time; those not yet checked take no traffic");
    }
}

/// Keeps every worker pool resolved and checked, and the workers described, until `stop`; the
/// tasks end with it.
pub fn watch_pools(state: &AppState, stop: &CancellationToken) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    let every = state.config.dns_refresh;
    let workers = HealthChecker::new(state.config.health.clone(), WorkerProbe::new(state.pools.link()));
    watch_sets(&mut tasks, pools(state), workers, every, stop);
    tasks.spawn(Arc::clone(&state.pools).keep_describing(every, stop.clone()));
    tasks
}

/// Keeps the upstreams of `state`'s routes resolved and checked until `stop` (the end of its
/// generation), on tasks added to `tasks`.
pub fn watch_routes(tasks: &mut JoinSet<()>, state: &AppState, stop: &CancellationToken) {
    let upstreams = HealthChecker::new(state.config.health.clone(), UpstreamProbe(state.http().clone()));
    watch_sets(tasks, routes(state), upstreams, state.config.dns_refresh, stop);
}

fn watch_sets<P: Probe>(
    tasks: &mut JoinSet<()>,
    watched: Vec<Watched>,
    checker: HealthChecker<P>,
    every: Duration,
    stop: &CancellationToken,
) {
    let sets = watched.iter().map(|(set, _)| Arc::clone(set)).collect();
    for (set, specs) in watched {
        let (checker, stop) = (checker.clone(), stop.clone());
        tasks.spawn(discovery::run(set, specs, every, move |endpoint| checker.check_soon(endpoint), stop));
    }
    tasks.spawn(checker.run(sets, stop.clone()));
}
