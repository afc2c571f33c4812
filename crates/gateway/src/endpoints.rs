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
    let upstreams = HealthChecker::new(state.config.health.clone(), UpstreamProbe(state.http().clone()));
    prepare(state, routes(state), upstreams, "upstream").await;
}

/// Asks the workers what they run, every `dns_refresh`, until `stop`; the task ends with it.
pub fn watch_pools(state: &AppState, stop: &CancellationToken) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    tasks.spawn(Arc::clone(&state.pools).keep_describing(state.config.dns_refresh, stop.clone()));
    tasks
}

/// Keeps the worker pools' endpoints resolved (from their lists as they are now) and checked
/// until `stop` (the end of `state`'s generation), on tasks added to `tasks`.
pub fn watch_workers(tasks: &mut JoinSet<()>, state: &AppState, stop: &CancellationToken) {
    let workers = HealthChecker::new(state.config.health.clone(), WorkerProbe::new(state.pools.link()));
    watch_sets(tasks, pools(state), workers, state.config.dns_refresh, stop);
}

/// Resolves the worker pools' endpoint lists (after a reload changed them) and checks the
/// endpoints not checked yet, within the check timeout; those that stay keep their health.
pub async fn prepare_workers(state: &AppState) {
    let workers = HealthChecker::new(state.config.health.clone(), WorkerProbe::new(state.pools.link()));
    prepare(state, pools(state), workers, "worker").await;
}

/// Resolves `watched` and checks, with `checker`, the endpoints (`what`s) not checked yet.
async fn prepare<P: Probe>(state: &AppState, watched: Vec<Watched>, checker: HealthChecker<P>, what: &str) {
    for (set, specs) in &watched {
        discovery::refresh(set, specs).await;
    }
    let unchecked = unchecked(&watched);
    if unchecked.is_empty() {
        return;
    }
    if tokio::time::timeout(check_time(state), checker.check_all(&unchecked)).await.is_err() {
        tracing::warn!("not every new {what} was checked in time; those not yet checked take no traffic");
    }
}

/// The sets with an endpoint never checked.
fn unchecked(watched: &[Watched]) -> Vec<Arc<EndpointSet>> {
    watched
        .iter()
        .filter(|(set, _)| set.snapshot().iter().any(|endpoint| endpoint.health() == Health::Unknown))
        .map(|(set, _)| Arc::clone(set))
        .collect()
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
