//! The debugging endpoints every admin listener serves: CPU profiles and tokio runtime figures.
//!
//! - `GET /debug/pprof/profile?seconds=N` — a CPU profile of N seconds (default 30, at most
//!   120) in pprof protobuf, which `go tool pprof -top URL` reads; `&format=svg` gives a flame
//!   graph instead.
//! - `GET /debug/runtime?window=250ms` — each tokio runtime's workers, alive tasks, queue depth
//!   and busy ratio over the window, plus the process's memory and CPU time.

use crate::profile::{self, Format, ProfileError};
use axum::{
    Json, Router,
    extract::{Query, rejection::QueryRejection},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Deserialize;
use std::time::Duration;

/// The longest profile taken.
const MAX_PROFILE_SECONDS: u64 = 120;

/// The longest runtime reading window.
const MAX_WINDOW: Duration = Duration::from_secs(10);

/// The debugging routes, to merge into an admin router.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/debug/pprof/profile", get(cpu_profile)).route("/debug/runtime", get(runtime))
}

#[derive(Deserialize)]
struct ProfileQuery {
    seconds: Option<u64>,
    format: Option<String>,
}

async fn cpu_profile(query: Result<Query<ProfileQuery>, QueryRejection>) -> Response {
    let Ok(Query(query)) = query else {
        return problem(StatusCode::BAD_REQUEST, "use ?seconds=N&format=svg|pb".into());
    };
    let seconds = query.seconds.unwrap_or(30);
    if !(1..=MAX_PROFILE_SECONDS).contains(&seconds) {
        return problem(StatusCode::BAD_REQUEST, format!("seconds must be 1 to {MAX_PROFILE_SECONDS}"));
    }
    let format = match query.format.as_deref() {
        None | Some("pb" | "proto" | "protobuf") => Format::Protobuf,
        Some("svg" | "flamegraph") => Format::FlameGraph,
        Some(other) => return problem(StatusCode::BAD_REQUEST, format!("unknown format {other:?}: use pb or svg")),
    };
    let taken = tokio::task::spawn_blocking(move || profile::capture(Duration::from_secs(seconds), format)).await;
    match taken {
        Ok(Ok(bytes)) => {
            let content_type = match format {
                Format::Protobuf => "application/octet-stream",
                Format::FlameGraph => "image/svg+xml",
            };
            let mut response = bytes.into_response();
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            response
        }
        Ok(Err(ProfileError::Busy)) => problem(StatusCode::CONFLICT, ProfileError::Busy.to_string()),
        Ok(Err(error)) => problem(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
        Err(_) => problem(StatusCode::INTERNAL_SERVER_ERROR, "the profiler stopped unexpectedly".into()),
    }
}

#[derive(Deserialize)]
struct RuntimeQuery {
    window: Option<String>,
}

async fn runtime(query: Result<Query<RuntimeQuery>, QueryRejection>) -> Response {
    let Ok(Query(query)) = query else {
        return problem(StatusCode::BAD_REQUEST, "use ?window=250ms".into());
    };
    let window = match query.window.as_deref().map(crate::duration::parse) {
        None => Duration::from_millis(250),
        Some(Ok(window)) if !window.is_zero() && window <= MAX_WINDOW => window,
        Some(Ok(_)) => return problem(StatusCode::BAD_REQUEST, "window must be more than 0 and at most 10s".into()),
        Some(Err(reason)) => return problem(StatusCode::BAD_REQUEST, reason),
    };
    let cpu_before = crate::process::cpu_time();
    let runtimes = crate::runtime_stats::read_over(window).await;
    let cpu_after = crate::process::cpu_time();
    let memory = crate::process::memory_usage().unwrap_or_default();
    let cpu_ratio =
        cpu_before.zip(cpu_after).map(|(before, after)| (after - before).as_secs_f64() / window.as_secs_f64());
    Json(serde_json::json!({
        "window_seconds": window.as_secs_f64(),
        "runtimes": runtimes,
        "process": {
            "resident_bytes": memory.resident_bytes,
            "virtual_bytes": memory.virtual_bytes,
            "cpu_seconds": cpu_after.map(|cpu| cpu.as_secs_f64()),
            "cpu_cores_used": cpu_ratio,
        },
    }))
    .into_response()
}

/// An error as `application/problem+json`.
fn problem(status: StatusCode, detail: String) -> Response {
    let body = serde_json::json!({
        "type": "urn:rampart:problem:invalid_request",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
        "code": if status.is_client_error() { "invalid_request" } else { "internal" },
    });
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    response
}
