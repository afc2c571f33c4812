//! Keeping every endpoint set filled and checked: the worker pools and the route upstreams, each
//! resolved by discovery and watched by the health checker of its transport; and the workers
//! asked what they run, as often as names are resolved.

use crate::{AppState, proxy::client::UpstreamProbe};
use rampart_balance::{
    checks::{HealthChecker, Probe},
    discovery::{self, Source},
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
    let (pools, routes) = (pools(state), routes(state));
    for (set, specs) in pools.iter().chain(&routes) {
        discovery::refresh(set, specs).await;
    }
    let workers = HealthChecker::new(state.config.health.clone(), WorkerProbe::new(state.pools.link()));
    let upstreams = HealthChecker::new(state.config.health.clone(), UpstreamProbe(state.http.clone()));
    let sets = |watched: &[Watched]| watched.iter().map(|(set, _)| Arc::clone(set)).collect::<Vec<_>>();
    let (pool_sets, route_sets) = (sets(&pools), sets(&routes));
    let round = async { tokio::join!(workers.check_all(&pool_sets), upstreams.check_all(&route_sets)) };
    let first_round = state.config.health.timeout + Duration::from_millis(100);
    if tokio::time::timeout(first_round, round).await.is_err() {
        tracing::warn!("the first health checks did not all finish; endpoints not yet checked take no traffic");
    }
    // What the healthy workers run, so that kinds are routed (and unknown ones answered) at once.
    if tokio::time::timeout(first_round, state.pools.describe()).await.is_err() {
        tracing::warn!("not every worker described itself in time; its kinds are learned later");
    }
}

/// Keeps every set resolved and checked until `stop`; the tasks end with it.
pub fn watch(state: &AppState, stop: &CancellationToken) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    let every = state.config.dns_refresh;
    watch_sets(
        &mut tasks,
        pools(state),
        HealthChecker::new(state.config.health.clone(), WorkerProbe::new(state.pools.link())),
        every,
        stop,
    );
    let upstreams = HealthChecker::new(state.config.health.clone(), UpstreamProbe(state.http.clone()));
    watch_sets(&mut tasks, routes(state), upstreams, every, stop);
    tasks.spawn(Arc::clone(&state.pools).keep_describing(every, stop.clone()));
    tasks
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
