//! Liveness and readiness.

use crate::{
    AppState,
    problem::{Problem, ProblemCode},
};
use axum::{Json, response::IntoResponse};
use http::StatusCode;
use serde_json::json;
use std::time::Duration;

/// `GET /health`: the process is up and serving HTTP.
pub async fn live() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// `GET /ready`: at least one worker passed its last health check.
pub async fn ready(state: AppState) -> Result<impl IntoResponse, Problem> {
    let healthy = state.pools.healthy_count();
    if healthy == 0 {
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ProblemCode::NoHealthyBackend,
            "no worker has passed a health check yet",
        )
        .retry_after(Duration::from_secs(1)));
    }
    Ok(Json(
        json!({"status": "ready", "healthy_workers": healthy, "workers": state.pools.all().iter().map(|pool| pool.set().snapshot().len()).sum::<usize>()}),
    ))
}
