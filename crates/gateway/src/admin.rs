//! The admin listener: operator endpoints kept off the public port.

use crate::AppState;
use axum::{Json, Router, extract::State, routing::get};
use serde_json::json;

/// Routes of the admin listener, the console's among them.
pub(crate) fn router(state: AppState, console: std::sync::Arc<crate::console::Console>) -> Router {
    Router::new()
        .merge(crate::console::router(console))
        .route("/health", get(crate::api::probes::live))
        .route("/admin/backends", get(backends))
        .route("/admin/cluster", get(cluster))
        .route("/metrics", get(crate::observe::prometheus))
        .route("/metrics.json", get(crate::observe::summary))
        .merge(rampart_common::debug_routes::router())
        .fallback(crate::not_found)
        .method_not_allowed_fallback(rampart_common::http::problem::method_not_allowed)
        .with_state(state)
}

/// `GET /admin/backends`: every pool, its endpoints and what the gateway believes of each.
async fn backends(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({ "pools": state.pools.views(), "routes": state.routes.views() }))
}

/// `GET /admin/cluster`: the gateways on this one's job store as the last heartbeat read them
/// (id, address, started, last seen, live), and whether the store answers this gateway.
async fn cluster(State(state): State<AppState>) -> Json<serde_json::Value> {
    let cluster = state.jobs.cluster();
    Json(json!({
        "this": state.jobs.owner(),
        "store_reachable": cluster.reachable(),
        "live": cluster.live(),
        "signals": state.jobs.signals_live(),
        "members": cluster.members(),
    }))
}
