//! The debugging endpoints every admin listener serves: CPU profiles and tokio runtime figures.
//!
//! - `GET /debug/pprof/profile?seconds=N` — a CPU profile of N seconds (default 30, at most
//!   120) in pprof protobuf, which `go tool pprof -top URL` reads; `&format=svg` gives a flame
//!   graph instead.
//! - `GET /debug/runtime?window=250ms` — each tokio runtime's workers, alive tasks, queue depth
//!   and busy ratio over the window, plus the process's memory and CPU time.

use crate::{
    http::problem,
    profile::{self, Format, ProfileError},
};
use axum::{
    Json, Router,
    extract::{Query, rejection::QueryRejection},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Deserialize;
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

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
        return invalid("use ?seconds=N&format=svg|pb");
    };
    let seconds = query.seconds.unwrap_or(30);
    if !(1..=MAX_PROFILE_SECONDS).contains(&seconds) {
        return invalid(format!("seconds must be 1 to {MAX_PROFILE_SECONDS}"));
    }
    let format = match query.format.as_deref() {
        None | Some("pb" | "proto" | "protobuf") => Format::Protobuf,
        Some("svg" | "flamegraph") => Format::FlameGraph,
        Some(other) => return invalid(format!("unknown format {other:?}: use pb or svg")),
    };
    // A client that goes away drops this handler, and with it the guard that stops the profile:
    // the sampler is process-wide, and a profile nobody reads must not block the next one.
    let abandoned = Arc::new(AtomicBool::new(false));
    let _stop_when_dropped = StopOnDrop(Arc::clone(&abandoned));
    let taken =
        tokio::task::spawn_blocking(move || profile::capture(Duration::from_secs(seconds), format, &abandoned)).await;
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
        Ok(Err(ProfileError::Busy)) => problem::response(
            StatusCode::CONFLICT,
            "profile_busy",
            "A profile is already being taken",
            ProfileError::Busy.to_string(),
        ),
        Ok(Err(error)) => failed(error.to_string()),
        Err(_) => failed("the profiler stopped unexpectedly"),
    }
}

/// Sets its flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[derive(Deserialize)]
struct RuntimeQuery {
    window: Option<String>,
}

async fn runtime(query: Result<Query<RuntimeQuery>, QueryRejection>) -> Response {
    let Ok(Query(query)) = query else {
        return invalid("use ?window=250ms");
    };
    let window = match query.window.as_deref().map(crate::duration::parse) {
        None => Duration::from_millis(250),
        Some(Ok(window)) if !window.is_zero() && window <= MAX_WINDOW => window,
        Some(Ok(_)) => return invalid("window must be more than 0 and at most 10s"),
        Some(Err(reason)) => return invalid(reason),
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

/// A 400 `invalid_request` for a bad query.
fn invalid(detail: impl AsRef<str>) -> Response {
    problem::response(StatusCode::BAD_REQUEST, "invalid_request", "The request is invalid", detail)
}

/// A 500 `profile_failed`.
fn failed(detail: impl AsRef<str>) -> Response {
    problem::response(StatusCode::INTERNAL_SERVER_ERROR, "profile_failed", "The profile could not be taken", detail)
}
