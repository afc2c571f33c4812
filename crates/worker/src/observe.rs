//! What a worker tells its operators, on its own admin listener: job counts and durations by
//! kind and outcome, pool load, runtime and process figures (`/metrics`), CPU profiles and
//! runtime readings (`/debug/...`).

use crate::{Engine, Finished, PoolKind, RunError};
use axum::{Router, extract::State, http::HeaderValue, response::IntoResponse, routing::get};
use std::{sync::Arc, time::Instant};

/// The label of a job kind: registered kinds by name, anything else as `unknown`, so a client
/// sending made-up kinds cannot grow the metrics.
pub(crate) fn kind_label(engine: &Engine, kind: &str) -> &'static str {
    if engine.registry().get(kind).is_some() { rampart_common::metrics::intern(kind) } else { "unknown" }
}

/// Counts a job's end: `rampart_worker_jobs_total{kind,outcome}`, and for jobs that ran, how
/// long they waited and ran.
pub(crate) fn record_job(kind: &'static str, outcome: Result<&Finished, &RunError>) {
    let label = match outcome {
        Ok(finished) => {
            metrics::histogram!("rampart_worker_job_run_seconds", "kind" => kind).record(finished.ran.as_secs_f64());
            metrics::histogram!("rampart_worker_job_queue_seconds", "kind" => kind)
                .record(finished.queued.as_secs_f64());
            if finished.output.is_ok() { "succeeded" } else { "failed" }
        }
        Err(RunError::UnknownKind { .. }) => "unknown_kind",
        Err(RunError::InvalidPayload(_)) => "invalid_payload",
        Err(RunError::PoolFull { .. }) => "rejected_full",
        Err(RunError::PoolStuck { .. }) => "rejected_stuck",
        Err(RunError::Draining) => "rejected_draining",
        Err(RunError::TimedOut { .. }) => "timed_out",
        Err(RunError::Cancelled { .. }) => "cancelled",
    };
    metrics::counter!("rampart_worker_jobs_total", "kind" => kind, "outcome" => label).increment(1);
}

/// Sets the pool gauges: capacity, busy and queued slots, abandoned CPU jobs, jobs active.
fn record_pools(engine: &Engine) {
    for pool in engine.pools() {
        let name = match pool.kind {
            PoolKind::Io => "io",
            PoolKind::Cpu => "cpu",
        };
        #[allow(clippy::cast_precision_loss)] // slot counts
        {
            metrics::gauge!("rampart_worker_pool_capacity", "pool" => name).set(pool.concurrency as f64);
            metrics::gauge!("rampart_worker_pool_busy", "pool" => name).set(pool.busy as f64);
            metrics::gauge!("rampart_worker_pool_queued", "pool" => name).set(pool.queued as f64);
            metrics::gauge!("rampart_worker_pool_abandoned", "pool" => name).set(pool.abandoned as f64);
            metrics::gauge!("rampart_worker_pool_abandoned_running", "pool" => name).set(pool.abandoned_running as f64);
            metrics::gauge!("rampart_worker_pool_accepting", "pool" => name).set(if pool.accepting {
                1.0
            } else {
                0.0
            });
        }
    }
    #[allow(clippy::cast_precision_loss)]
    metrics::gauge!("rampart_worker_jobs_active").set(engine.active() as f64);
}

#[derive(Clone)]
struct AdminState {
    engine: Arc<Engine>,
    started: Instant,
}

/// Routes of the worker's admin listener: `/health`, `/metrics` and the debugging endpoints.
pub fn admin_router(engine: Arc<Engine>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(prometheus))
        .merge(rampart_common::debug_routes::router())
        .fallback(rampart_common::http::problem::not_found)
        .method_not_allowed_fallback(rampart_common::http::problem::method_not_allowed)
        .with_state(AdminState { engine, started: Instant::now() })
}

/// `GET /health`: 200 while the process serves, with `"degraded"` and the reason while a pool
/// takes no jobs (the CPU pool at its cap of abandoned jobs).
async fn health(State(state): State<AdminState>) -> axum::Json<serde_json::Value> {
    let pools: Vec<_> = state
        .engine
        .pools()
        .iter()
        .map(|pool| {
            serde_json::json!({
                "pool": pool.kind.as_str(),
                "accepting": pool.accepting,
                "busy": pool.busy,
                "queued": pool.queued,
                "abandoned_running": pool.abandoned_running,
            })
        })
        .collect();
    let degraded = state.engine.pools().iter().any(|pool| !pool.accepting);
    axum::Json(serde_json::json!({"status": if degraded { "degraded" } else { "ok" }, "pools": pools}))
}

async fn prometheus(State(state): State<AdminState>) -> impl IntoResponse {
    record_pools(&state.engine);
    rampart_common::metrics::record_process(state.started);
    (
        [(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"))],
        rampart_common::metrics::render(),
    )
}
