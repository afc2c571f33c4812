//! `POST /api/process` and `GET /api/process?data=...`: run one job now and answer with its
//! result. The fast path: nothing is stored.

use super::{
    body::{JsonBody, parse_json},
    job_spec::{JobBody, check_runs},
};
use crate::{
    AppState,
    problem::{Problem, ProblemCode},
    protect::Deadline,
};
use axum::{
    Extension,
    extract::{Query, rejection::QueryRejection},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use rampart_jobs::workers::{ExecuteError, ExecutePolicy, dispatch, wire_priority};
use rampart_proto::WorkerError;
use rampart_proto::v1::{JobRequest, JobResult, JobStatus, Priority};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::time::Instant;

/// The query of `GET /api/process`.
#[derive(Deserialize)]
pub struct EchoQuery {
    data: Option<String>,
}

/// The answer to a job that succeeded.
#[derive(Serialize)]
struct ProcessAnswer<'a> {
    job_id: &'a str,
    kind: &'a str,
    status: &'static str,
    result: &'a RawValue,
    worker: &'a str,
    duration_ms: f64,
    queue_ms: f64,
}

/// `POST /api/process`: `{"kind", "payload", "priority", "timeout_ms"}`.
pub async fn post(
    state: AppState,
    Extension(deadline): Extension<Deadline>,
    identity: Option<Extension<crate::auth::Identity>>,
    headers: HeaderMap,
    JsonBody(bytes): JsonBody,
) -> Result<Response, Problem> {
    let request: JobBody<'_> = parse_json(&bytes)?;
    let job = request.run_now(&bytes)?;
    let identity = identity.as_ref().map(|Extension(identity)| identity);
    crate::auth::permit(identity, crate::auth::scopes::Family::Process, &job.kind)?;
    check_runs(&state.pools, &job.kind)?;
    let call = Call { deadline: deadline.0, idempotent: headers.contains_key(IDEMPOTENCY_KEY) };
    run(&state, call, &job.kind, job.payload, wire_priority(job.priority), job.timeout_ms.unwrap_or(0)).await
}

/// The header that makes a POST safe to retry: the client promises the same key means the same
/// job.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// How one request may be run: its time budget and whether it may be retried after a failure
/// during the call.
struct Call {
    deadline: Instant,
    idempotent: bool,
}

/// `GET /api/process?data=TEXT`: runs `echo` with the text as a JSON string, as the article's
/// server does.
pub async fn get(
    state: AppState,
    Extension(deadline): Extension<Deadline>,
    identity: Option<Extension<crate::auth::Identity>>,
    query: Result<Query<EchoQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let identity = identity.as_ref().map(|Extension(identity)| identity);
    crate::auth::permit(identity, crate::auth::scopes::Family::Process, "echo")?;
    // An echo has no effect to repeat: safe to retry.
    let call = Call { deadline: deadline.0, idempotent: true };
    let Query(query) = query.map_err(|rejection| Problem::bad_request(rejection.body_text()))?;
    let Some(data) = query.data else {
        return Err(Problem::bad_request("the query parameter `data` is required, as in /api/process?data=hello"));
    };
    let payload = serde_json::to_vec(&data).map_err(|error| Problem::bad_request(error.to_string()))?;
    run(&state, call, "echo", Bytes::from(payload), Priority::Normal, 0).await
}

async fn run(
    state: &AppState,
    call: Call,
    kind: &str,
    payload: Bytes,
    priority: Priority,
    timeout_ms: u64,
) -> Result<Response, Problem> {
    let job = JobRequest {
        id: uuid::Uuid::now_v7().to_string(),
        kind: kind.to_owned(),
        payload,
        priority: priority.into(),
        timeout_ms,
        attempt: 1,
    };
    let policy = ExecutePolicy {
        idempotent: call.idempotent,
        retry: &state.config.retry,
        budget: &state.retry_budget,
        progress: None,
    };
    match dispatch(state.pools.for_kind(&job.kind), &job, call.deadline, &policy).await {
        Ok(dispatched) => answer(&job, &dispatched.result),
        Err(error) => Err(problem_of(error).with("job_id", job.id)),
    }
}

fn answer(job: &JobRequest, result: &JobResult) -> Result<Response, Problem> {
    let problem = |status, code, detail: String| {
        Problem::new(status, code, detail).with("job_id", job.id.as_str()).with("worker", result.worker.as_str())
    };
    if result.status() != JobStatus::Succeeded {
        let reason = if result.error.is_empty() { "no reason given" } else { result.error.as_str() };
        return Err(problem(StatusCode::UNPROCESSABLE_ENTITY, ProblemCode::JobFailed, reason.to_owned()));
    }
    let output: &RawValue = serde_json::from_slice(&result.output).map_err(|error| {
        problem(StatusCode::BAD_GATEWAY, ProblemCode::WorkerFailed, format!("the worker's output is not JSON: {error}"))
    })?;
    let body = serde_json::to_vec(&ProcessAnswer {
        job_id: &job.id,
        kind: &job.kind,
        status: "succeeded",
        result: output,
        worker: &result.worker,
        duration_ms: micros_to_millis(result.run_us),
        queue_ms: micros_to_millis(result.queue_us),
    })
    .map_err(|error| problem(StatusCode::BAD_GATEWAY, ProblemCode::WorkerFailed, error.to_string()))?;
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response())
}

#[allow(clippy::cast_precision_loss)] // durations far below 2^52 µs
fn micros_to_millis(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

/// The HTTP answer for a job that got no outcome.
fn problem_of(error: ExecuteError) -> Problem {
    let detail = error.to_string();
    match error {
        ExecuteError::NoHealthyBackend => {
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, ProblemCode::NoHealthyBackend, detail)
                .retry_after(std::time::Duration::from_secs(1))
        }
        ExecuteError::BreakerOpen { retry_after } => {
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, ProblemCode::BreakerOpen, detail).retry_after(retry_after)
        }
        ExecuteError::Overloaded { retry_after } => {
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, ProblemCode::Overloaded, detail).retry_after(retry_after)
        }
        ExecuteError::DeadlineExceeded => {
            Problem::new(StatusCode::GATEWAY_TIMEOUT, ProblemCode::DeadlineExceeded, detail)
        }
        ExecuteError::Worker { error, worker } => {
            let problem = match error {
                WorkerError::UnknownKind(message) => {
                    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, ProblemCode::UnknownKind, message)
                }
                WorkerError::InvalidPayload(message) => Problem::unprocessable(message),
                // A message over a gRPC size limit: the payload is larger than the worker takes
                // (or the result larger than the gateway reads). Sending it again cannot help.
                WorkerError::TooLarge(message) => {
                    Problem::new(StatusCode::PAYLOAD_TOO_LARGE, ProblemCode::PayloadTooLarge, message)
                }
                WorkerError::TimedOut(message) => {
                    Problem::new(StatusCode::GATEWAY_TIMEOUT, ProblemCode::DeadlineExceeded, message)
                }
                _ => Problem::new(StatusCode::BAD_GATEWAY, ProblemCode::WorkerFailed, detail),
            };
            problem.with("endpoint", worker)
        }
    }
}
