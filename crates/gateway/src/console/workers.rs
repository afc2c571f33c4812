//! Workers and upstreams: every endpoint of every worker pool and proxy route with what the
//! gateway believes of it (health, breaker, EWMA latency, in-flight calls, silence, ejections),
//! and for workers what they last said of themselves in `Describe` (name, version, kinds, and
//! each of their pools' use).

use super::{Chrome, Console, csrf, render};
use askama::Template;
use axum::{extract::State, response::Response};
use http::HeaderMap;
use rampart_balance::endpoint::Endpoint;
use rampart_proto::v1::{PoolKind, WorkerInfo};
use std::sync::Arc;

/// How long the page waits for the workers to describe themselves again.
const DESCRIBE_WAIT: std::time::Duration = std::time::Duration::from_millis(80);

/// One endpoint's row.
pub(super) struct EndpointRow {
    pub(super) url: String,
    pub(super) health: &'static str,
    pub(super) healthy: bool,
    pub(super) breaker: &'static str,
    pub(super) ewma: String,
    pub(super) in_flight: u32,
    pub(super) silence: String,
    pub(super) ejected: bool,
    pub(super) ejections: u32,
    /// From `Describe`: the worker's name and version.
    pub(super) described: Option<String>,
    /// From `Describe`: the kinds it runs.
    pub(super) kinds: String,
    /// From `Describe`: each pool's busy / concurrency and queued / capacity.
    pub(super) pools: Vec<String>,
}

impl EndpointRow {
    fn of(endpoint: &Endpoint, info: Option<&WorkerInfo>) -> Self {
        let view = endpoint.view();
        let health = match view.health {
            rampart_balance::endpoint::Health::Healthy => "healthy",
            rampart_balance::endpoint::Health::Unhealthy => "unhealthy",
            rampart_balance::endpoint::Health::Unknown => "not checked yet",
        };
        Self {
            url: view.url.to_owned(),
            health,
            healthy: health == "healthy",
            breaker: view.breaker.state.as_str(),
            ewma: format!("{:.2} ms", view.ewma_ms),
            in_flight: view.in_flight,
            silence: format!("{:.0} ms", view.silence_ms),
            ejected: view.ejected,
            ejections: view.ejections,
            described: info.map(|info| format!("{} {}", info.name, info.version)),
            kinds: info
                .map(|info| info.kinds.iter().map(|kind| kind.name.as_str()).collect::<Vec<_>>().join(", "))
                .unwrap_or_default(),
            pools: info
                .map(|info| {
                    info.pools
                        .iter()
                        .map(|pool| {
                            let name = match pool.kind() {
                                PoolKind::Io => "I/O",
                                PoolKind::Cpu => "CPU",
                                PoolKind::Unspecified => "pool",
                            };
                            let closed = if pool.accepting { "" } else { ", not accepting" };
                            format!(
                                "{name}: {} of {} busy, {} of {} queued{closed}",
                                pool.busy, pool.concurrency, pool.queued, pool.queue_capacity
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// One worker pool or proxy route.
pub(super) struct Group {
    pub(super) name: String,
    pub(super) note: String,
    pub(super) endpoints: Vec<EndpointRow>,
}

/// The page.
#[derive(Template)]
#[template(path = "console/workers.html")]
struct WorkersPage {
    chrome: Chrome,
    pools: Vec<Group>,
    routes: Vec<Group>,
}

/// `GET /console/workers`.
pub(super) async fn page(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let token = csrf::token(&headers);
    let app = console.app();
    // Asks the workers again (the gateway otherwise asks every `dns_refresh`), waiting briefly:
    // a slow worker's answer is shown on the next visit, and never holds this one up.
    let pools = Arc::clone(&app.pools);
    let asking = tokio::spawn(async move { pools.describe().await });
    let _ = tokio::time::timeout(DESCRIBE_WAIT, asking).await;
    let descriptions = app.pools.descriptions();
    let pools = app
        .pools
        .all()
        .iter()
        .zip(app.pools.views())
        .map(|(pool, view)| {
            let described = descriptions.iter().find(|(name, _)| *name == view.pool).map(|(_, by_url)| by_url);
            let note = if view.kinds.is_empty() {
                "the default pool: every kind no other pool takes".to_owned()
            } else {
                format!("configured for {}", view.kinds.join(", "))
            };
            let endpoints = pool
                .set()
                .snapshot()
                .iter()
                .map(|endpoint| EndpointRow::of(endpoint, described.and_then(|by_url| by_url.get(endpoint.url()))))
                .collect();
            Group { name: view.pool.to_owned(), note, endpoints }
        })
        .collect();
    let routes = app
        .routes
        .all()
        .iter()
        .map(|route| Group {
            name: route.prefix().to_owned(),
            note: "proxied".to_owned(),
            endpoints: route.set().snapshot().iter().map(|endpoint| EndpointRow::of(endpoint, None)).collect(),
        })
        .collect();
    render(&WorkersPage { chrome: Chrome::new("Workers and upstreams", "workers", &token), pools, routes }, &token)
}
