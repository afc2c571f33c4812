//! The admin listener: operator endpoints kept off the public port.

use crate::{
    AppState,
    problem::{Problem, ProblemCode},
    reload::{Trigger, redact},
};
use axum::{
    Json, Router,
    body::Body,
    extract::State,
    middleware::Next,
    response::{IntoResponse as _, Response},
    routing::{get, post},
};
use http::{Request, StatusCode};
use serde_json::json;

/// Routes of the admin listener, the console's among them. `main` is the gateway's state on the
/// main runtime; every request works from the generation in force as it arrives.
pub(crate) fn router(main: AppState, console: std::sync::Arc<crate::console::Console>) -> Router {
    Router::new()
        .merge(crate::console::router(console))
        .route("/health", get(crate::api::probes::live))
        .route("/admin/backends", get(backends))
        .route("/admin/cluster", get(cluster))
        .route("/admin/config", get(config))
        .route("/admin/reload", post(reload))
        .route("/metrics", get(crate::observe::prometheus))
        .route("/metrics.json", get(crate::observe::summary))
        .merge(rampart_common::debug_routes::router())
        .fallback(crate::not_found)
        .method_not_allowed_fallback(rampart_common::http::problem::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(main, in_force))
}

/// Gives the request the generation in force.
async fn in_force(State(main): State<AppState>, mut request: Request<Body>, next: Next) -> Response {
    request.extensions_mut().insert(main.latest());
    next.run(request).await
}

/// `GET /admin/backends`: every pool, its endpoints and what the gateway believes of each.
async fn backends(state: AppState) -> Json<serde_json::Value> {
    Json(json!({ "pools": state.pools.views(), "routes": state.routes.views() }))
}

/// `GET /admin/cluster`: the gateways on this one's job store as the last heartbeat read them
/// (id, address, started, last seen, live), and whether the store answers this gateway.
async fn cluster(state: AppState) -> Json<serde_json::Value> {
    let cluster = state.jobs.cluster();
    Json(json!({
        "this": state.jobs.owner(),
        "store_reachable": cluster.reachable(),
        "live": cluster.live(),
        "signals": state.jobs.signals_live(),
        "members": cluster.members(),
    }))
}

/// `GET /admin/config`: the configuration in force (secrets hidden), its version, when it was
/// loaded, the file it is read from, and how the last reload went.
async fn config(state: AppState) -> Json<serde_json::Value> {
    let live = state.live();
    Json(json!({
        "version": state.version,
        "loaded_at": *live.loaded_at(),
        "file": live.file().map(|file| file.display().to_string()),
        "last_reload": live.last_reload(),
        "config": redact::redacted(&state.config),
    }))
}

/// `POST /admin/reload`: reads the configuration again and puts it in force if it is valid.
/// 200 with the new version and what changed (and what waits for a restart); 422
/// `config_invalid` naming the file, key and reason when it is refused, the old one staying.
async fn reload(state: AppState) -> Response {
    match state.live().reload(&state, Trigger::Admin).await {
        Ok(applied) => Json(applied).into_response(),
        Err(refused) => {
            let problem = Problem::new(StatusCode::UNPROCESSABLE_ENTITY, ProblemCode::ConfigInvalid, &refused.reason)
                .with("file", refused.file.clone())
                .with("key", refused.key.clone())
                .with("version", state.version);
            problem.into_response()
        }
    }
}
