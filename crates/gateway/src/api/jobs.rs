//! Durable jobs over REST: `POST /api/jobs` accepts one (202 + `Location`, or 200 with its result
//! under `?wait=`), `GET /api/jobs/{id}` shows it, `DELETE /api/jobs/{id}` cancels it and
//! `GET /api/jobs/{id}/events` streams its status changes as Server-Sent Events.

use super::{
    body::{JsonBody, parse_json},
    job_spec::{JobBody, check_runs},
};
use crate::{
    AppState,
    auth::{Identity, permit, scopes::Family},
    client::ClientAddr,
    problem::{Problem, ProblemCode},
};
use axum::{
    extract::{
        Extension, Path, Query,
        rejection::{PathRejection, QueryRejection},
    },
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use rampart_jobs::durable::{
    Jobs,
    events::JobEvent,
    follow::Follower,
    model::{JobProgress, JobRecord, ProgressView, rfc3339},
    store::{CancelOutcome, StoreError},
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::{convert::Infallible, sync::Arc, time::Duration};
use tokio::time::Instant;

/// The header that makes a replayed `POST /api/jobs` return the first job.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The longest idempotency key accepted.
const MAX_KEY_LEN: usize = 255;

/// How long `DELETE` waits for a running job to stop before answering 202.
const CANCEL_WAIT: Duration = Duration::from_secs(5);

/// The `?wait=` query.
#[derive(Deserialize)]
pub struct WaitQuery {
    wait: Option<String>,
}

impl WaitQuery {
    /// The wait asked for, checked against the limit.
    pub fn duration(query: Result<Query<Self>, QueryRejection>, max: Duration) -> Result<Option<Duration>, Problem> {
        let Query(query) = query.map_err(|rejection| Problem::bad_request(rejection.body_text()))?;
        let Some(text) = query.wait else { return Ok(None) };
        let wait =
            rampart_common::duration::parse(&text).map_err(|reason| Problem::bad_request(format!("wait: {reason}")))?;
        if wait > max {
            return Err(Problem::bad_request(format!(
                "wait: {text} is over the limit of {}",
                humantime::format_duration(max)
            )));
        }
        Ok(Some(wait))
    }
}

/// `POST /api/jobs`: `{"kind", "payload", "priority", "timeout_ms", "max_attempts"}`.
///
/// An `Idempotency-Key` is the client's own — its tenant's once authenticated, else its
/// address's (two clients using the same key never meet) — and
/// names one request: replaying it returns the first job; sending another request with it is
/// 422 `idempotency_key_reused` (draft-ietf-httpapi-idempotency-key-header).
pub async fn submit(
    state: AppState,
    client: Option<Extension<ClientAddr>>,
    identity: Option<Extension<Identity>>,
    headers: HeaderMap,
    query: Result<Query<WaitQuery>, QueryRejection>,
    JsonBody(bytes): JsonBody,
) -> Result<Response, Problem> {
    let jobs = &state.jobs;
    let wait = WaitQuery::duration(query, jobs.config().max_wait)?;
    let key = idempotency_key(&headers)?;
    let request: JobBody<'_> = parse_json(&bytes)?;
    let identity = identity.map(|Extension(identity)| identity);
    let scope = match (&identity, client) {
        (Some(identity), _) => format!("tenant:{}", identity.tenant),
        (None, Some(Extension(ClientAddr(address)))) => address.to_string(),
        (None, None) => "unknown".to_owned(),
    };
    let caller = identity.as_ref().map(|identity| &*identity.tenant);
    let mut job =
        request.into_new_job(&bytes, jobs.config(), key.as_ref().map(|key| format!("{scope} {key}")), caller)?;
    permit(identity.as_ref(), Family::Jobs, &job.kind)?;
    if let Some(unique) = &mut job.unique {
        // Each tenant's keys are its own.
        unique.key = format!("{} {}", job.tenant, unique.key);
    }
    check_runs(&state.pools, &job.kind)?;
    let record = JobRecord::accepted(&job);
    // Followed before it is accepted, so that its end cannot pass unseen and the store need not
    // be read for where it stands (as a replay's job must be).
    let follower = wait.map(|_| Follower::new(jobs, &[Arc::from(job.id.as_str())]));
    let accepted = jobs.submit(vec![job]).await.map_err(store_problem)?;
    let Some(accepted) = accepted.into_iter().next() else {
        return Err(store_problem(StoreError::Closed));
    };
    if accepted.key_reused {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ProblemCode::IdempotencyKeyReused,
            "this Idempotency-Key was first used for a different request; use a new key for a new request",
        )
        .with("job_id", accepted.id));
    }
    let mut record = if accepted.created { record } else { fetch(jobs, &accepted.id, None).await? };
    // A job holding the uniqueness key answers 200 as it stands (or as it ends, with ?wait).
    let unique_conflict = accepted.unique_conflict;
    if let Some(wait) = wait
        && !record.status.is_terminal()
    {
        let follower = follower.filter(|_| accepted.created);
        record = wait_for_end(jobs, &accepted.id, wait, follower).await?;
    }
    let ended = wait.is_some() && record.status.is_terminal();
    let status = if ended || unique_conflict { StatusCode::OK } else { StatusCode::ACCEPTED };
    let mut response = job_response(status, &record);
    if unique_conflict {
        response.headers_mut().insert("unique-conflict", HeaderValue::from_static("true"));
    } else if !accepted.created {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// `GET /api/jobs/{id}`.
pub async fn status(
    state: AppState,
    identity: Option<Extension<Identity>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    let id = job_id(id)?;
    let record = fetch(&state.jobs, &id, owner(identity.as_ref())).await?;
    Ok(job_response(StatusCode::OK, &record))
}

/// `DELETE /api/jobs/{id}`: a queued job is cancelled at once (200); a running one is told to
/// stop and the answer waits a little for it (200 once it ended, else 202).
pub async fn cancel(
    state: AppState,
    identity: Option<Extension<Identity>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    let id = job_id(id)?;
    let jobs = &state.jobs;
    let owner = owner(identity.as_ref());
    if owner.is_some() {
        fetch(jobs, &id, owner).await?;
    }
    match jobs.cancel(&id).await.map_err(store_problem)? {
        CancelOutcome::NotFound => Err(not_found(&id)),
        CancelOutcome::AlreadyFinished => {
            let record = fetch(jobs, &id, None).await?;
            Err(Problem::new(
                StatusCode::CONFLICT,
                ProblemCode::JobFinished,
                format!("job {id} already ended ({})", record.status.as_str()),
            )
            .with("job_id", id)
            .with("job_status", record.status.as_str()))
        }
        CancelOutcome::Cancelled => Ok(job_response(StatusCode::OK, &fetch(jobs, &id, None).await?)),
        CancelOutcome::Requested => {
            let record = wait_for_end(jobs, &id, CANCEL_WAIT, None).await?;
            let status = if record.status.is_terminal() { StatusCode::OK } else { StatusCode::ACCEPTED };
            Ok(job_response(status, &record))
        }
    }
}

/// `GET /api/jobs/{id}/events`: the job's current status, then every change, as Server-Sent
/// Events (`event:` the status, `id:` its rank in the job's life, `data:` JSON), until it ends.
pub async fn events(
    state: AppState,
    identity: Option<Extension<Identity>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    let id = job_id(id)?;
    let jobs = &state.jobs;
    let id: Arc<str> = Arc::from(id.as_str());
    // Watch before reading, so no change falls between the two.
    let mut follower = Follower::new(jobs, std::slice::from_ref(&id));
    let record = fetch(jobs, &id, owner(identity.as_ref())).await?;
    follower.offer(JobEvent::of(&record));
    let forever = Instant::now() + Duration::from_secs(365 * 24 * 3600);
    let stream = futures_util::stream::unfold(follower, move |mut follower| async move {
        let event = follower.next(forever).await?;
        Some((Ok::<_, Infallible>(sse_event(&event)), follower))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

/// A job event as one SSE message: named by the job's status, or `progress` for a running
/// job's progress report.
fn sse_event(event: &JobEvent) -> Event {
    let data = serde_json::to_string(&EventData::of(event)).unwrap_or_else(|_| "{}".into());
    let name = if event.progress.is_some() { "progress" } else { event.status.as_str() };
    Event::default().event(name).id(event.rank().to_string()).data(data)
}

/// The JSON of an event, in SSE messages and batch lines.
#[derive(Serialize)]
pub struct EventData<'a> {
    id: &'a str,
    status: &'static str,
    attempts: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    progress: Option<ProgressView>,
    at: String,
}

impl<'a> EventData<'a> {
    /// The JSON of `event`.
    pub fn of(event: &'a JobEvent) -> Self {
        Self {
            id: &event.id,
            status: event.status.as_str(),
            attempts: event.attempt,
            error: event.error.as_deref(),
            result: event.result.as_deref().and_then(|bytes| serde_json::from_slice(bytes).ok()),
            progress: event.progress.as_ref().map(JobProgress::view),
            at: rfc3339(event.at),
        }
    }
}

/// Waits up to `wait` for a job to end; its latest record either way. `following` is a follower
/// of it made before it was accepted (none: one starts from what the store says now).
async fn wait_for_end(
    jobs: &Arc<Jobs>,
    id: &str,
    wait: Duration,
    following: Option<Follower>,
) -> Result<JobRecord, Problem> {
    let deadline = Instant::now() + wait;
    let mut follower = match following {
        Some(follower) => follower,
        None => {
            let mut follower = Follower::new(jobs, &[Arc::from(id)]);
            follower.seed().await;
            follower
        }
    };
    while follower.next(deadline).await.is_some() {}
    fetch(jobs, id, None).await
}

/// The job id from the path; one that is not valid UTF-8 once decoded is a 400, never a 404 for a
/// job that cannot exist.
pub(super) fn job_id(path: Result<Path<String>, PathRejection>) -> Result<String, Problem> {
    path.map(|Path(id)| id)
        .map_err(|rejection| Problem::bad_request(format!("the job id is not valid: {}", rejection.body_text())))
}

/// One job, or a 404.
/// The tenant an authenticated caller speaks for: it sees its own jobs only.
pub(super) fn owner(identity: Option<&Extension<Identity>>) -> Option<&str> {
    identity.map(|Extension(identity)| &*identity.tenant)
}

/// The job `id`, as `owner` may see it: another tenant's job is as good as missing (404), so
/// ids reveal nothing across tenants.
pub(super) async fn fetch(jobs: &Jobs, id: &str, owner: Option<&str>) -> Result<JobRecord, Problem> {
    let record = jobs.get(id).await.map_err(store_problem)?.ok_or_else(|| not_found(id))?;
    match owner {
        Some(owner) if record.tenant.as_deref() != Some(owner) => Err(not_found(id)),
        _ => Ok(record),
    }
}

fn not_found(id: &str) -> Problem {
    Problem::new(StatusCode::NOT_FOUND, ProblemCode::JobNotFound, format!("no job has the id {id:?}"))
        .with("job_id", id)
}

/// The answer when the store fails: nothing was changed, try again.
pub fn store_problem(error: StoreError) -> Problem {
    let detail = if let StoreError::Unavailable(_) = error {
        // Said once when the heartbeat failed, not once per request refused meanwhile.
        tracing::debug!(%error, "refused a request: the job store is unreachable");
        "this gateway cannot reach the job store; nothing was changed, try again (another gateway may answer)"
    } else {
        tracing::error!(%error, "job store request failed");
        "the job store failed to answer; nothing was changed, try again"
    };
    Problem::new(StatusCode::SERVICE_UNAVAILABLE, ProblemCode::StoreUnavailable, detail)
        .retry_after(Duration::from_secs(1))
}

/// A job as JSON, with `Location` naming it.
pub(super) fn job_response(status: StatusCode, record: &JobRecord) -> Response {
    let body = serde_json::to_vec(&record.view()).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(location) = HeaderValue::from_str(&format!("/api/jobs/{}", record.id)) {
        headers.insert(header::LOCATION, location);
    }
    response
}

/// The `Idempotency-Key` header, checked.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else { return Ok(None) };
    let bad = || {
        Problem::bad_request(format!(
            "Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters, for example a UUID"
        ))
    };
    let key = value.to_str().map_err(|_| bad())?.trim();
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(Some(key.to_owned()))
}
