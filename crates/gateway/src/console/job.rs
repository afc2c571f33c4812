//! One job's page: what it was given and gave back, every attempt with its worker, times and
//! error, its timeline (followed live over `/console/jobs/{id}/events` while it runs), its
//! progress and trace, and the actions that apply to it.

use super::{Chrome, Console, csrf, format, page_with_status, render};
use askama::Template;
use axum::{
    extract::{Path, State, rejection::PathRejection},
    response::Response,
};
use http::{HeaderMap, StatusCode};
use rampart_jobs::durable::model::{JobDetail, Status};
use std::sync::Arc;

/// One attempt's row.
pub(super) struct AttemptRow {
    pub(super) attempt: i32,
    pub(super) worker: String,
    pub(super) started: String,
    pub(super) ended: String,
    pub(super) took: String,
    pub(super) outcome: String,
    pub(super) error: String,
}

/// One moment of the timeline.
pub(super) struct Moment {
    pub(super) at: String,
    pub(super) at_machine: String,
    pub(super) what: String,
    pub(super) detail: String,
}

/// The job page.
#[derive(Template)]
#[template(path = "console/job.html")]
struct JobPage {
    chrome: Chrome,
    id: String,
    status: &'static str,
    ended: bool,
    facts: Vec<(&'static str, String)>,
    payload: String,
    result: Option<String>,
    error: Option<String>,
    progress: Option<(f64, String, String)>,
    attempts: Vec<AttemptRow>,
    timeline: Vec<Moment>,
    can_cancel: bool,
    can_retry: bool,
}

/// The page when there is no such job.
#[derive(Template)]
#[template(path = "console/missing.html")]
struct Missing {
    chrome: Chrome,
    what: String,
}

/// `GET /console/jobs/{id}`.
pub(super) async fn page(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let token = csrf::token(&headers);
    let Ok(Path(id)) = id else {
        let missing = Missing { chrome: Chrome::new("No such job", "jobs", &token), what: "that job id".into() };
        return page_with_status(StatusCode::BAD_REQUEST, &missing, token.set_cookie);
    };
    match console.main.jobs.detail(&id).await {
        Ok(Some(detail)) => {
            let job = describe(Chrome::new(format!("Job {id}"), "jobs", &token), detail);
            render(&job, &token)
        }
        Ok(None) => {
            let missing = Missing { chrome: Chrome::new("No such job", "jobs", &token), what: format!("job {id}") };
            page_with_status(StatusCode::NOT_FOUND, &missing, token.set_cookie)
        }
        Err(error) => {
            let missing = Missing {
                chrome: Chrome::new("Store unavailable", "jobs", &token),
                what: format!("job {id}: the store did not answer ({error})"),
            };
            page_with_status(StatusCode::SERVICE_UNAVAILABLE, &missing, token.set_cookie)
        }
    }
}

/// `GET /console/jobs/{id}/events`: the job's events as the public API streams them.
pub(super) async fn events(
    State(console): State<Arc<Console>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, crate::problem::Problem> {
    crate::api::jobs::events(console.app(), None, id).await
}

/// JSON as a person reads it, or the bytes as text if they are not JSON.
fn pretty(bytes: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|value| serde_json::to_string_pretty(&value).ok())
        .unwrap_or_else(|| String::from_utf8_lossy(bytes).into_owned())
}

fn describe(chrome: Chrome, detail: JobDetail) -> JobPage {
    let JobDetail { record, payload, idempotency_key, traceparent, worker, attempt_started_at, failed_attempts } =
        detail;
    let none = || "—".to_owned();
    let trace_id = traceparent.as_deref().and_then(|header| header.split('-').nth(1)).map(str::to_owned);
    let facts = vec![
        ("Kind", record.kind.clone()),
        ("Tenant", record.tenant.clone().unwrap_or_else(none)),
        ("Priority", record.priority.as_str().to_owned()),
        ("Attempts", format!("{} of {}", record.attempt, record.max_attempts)),
        ("Accepted", format::time(record.created_at)),
        ("Due", format::time(record.run_after)),
        ("Must start by", record.start_by.map_or_else(none, format::time)),
        ("First started", record.started_at.map_or_else(none, format::time)),
        ("Ended", record.finished_at.map_or_else(none, format::time)),
        ("Idempotency key", idempotency_key.unwrap_or_else(none)),
        ("Trace id", trace_id.unwrap_or_else(none)),
        ("Last worker", worker.clone().unwrap_or_else(none)),
    ];
    let mut attempts: Vec<AttemptRow> = failed_attempts
        .iter()
        .map(|attempt| AttemptRow {
            attempt: attempt.attempt,
            worker: attempt.worker.clone().unwrap_or_else(none),
            started: format::time(attempt.started_at),
            ended: format::time(attempt.finished_at),
            took: format::between(attempt.started_at, attempt.finished_at),
            outcome: if attempt.status == Status::Queued {
                "failed, retried".to_owned()
            } else {
                attempt.status.as_str().to_owned()
            },
            error: attempt.error.clone().unwrap_or_default(),
        })
        .collect();
    let mut timeline = vec![Moment {
        at: format::time(record.created_at),
        at_machine: format::machine_time(record.created_at),
        what: "accepted".into(),
        detail: format!("{} job", record.kind),
    }];
    for attempt in &failed_attempts {
        let on = attempt.worker.as_deref().map(|worker| format!(" on {worker}")).unwrap_or_default();
        timeline.push(moment(attempt.started_at, format!("attempt {} started", attempt.attempt), on));
        let outcome = if attempt.status == Status::Queued { "failed" } else { attempt.status.as_str() };
        let detail = attempt.error.clone().unwrap_or_default();
        timeline.push(moment(attempt.finished_at, format!("attempt {} {outcome}", attempt.attempt), detail));
    }
    let last_failure = failed_attempts.iter().map(|attempt| attempt.finished_at).max().unwrap_or(i64::MIN);
    // The attempt that succeeded: never among the failed ones, and after all of them (a retried
    // job numbers its attempts from 1 again).
    if let Some(started) =
        attempt_started_at.filter(|started| record.status == Status::Succeeded && *started >= last_failure)
    {
        let end = record.finished_at.unwrap_or(started);
        attempts.push(AttemptRow {
            attempt: record.attempt,
            worker: worker.clone().unwrap_or_else(none),
            started: format::time(started),
            ended: format::time(end),
            took: format::between(started, end),
            outcome: "succeeded".into(),
            error: String::new(),
        });
        let on = worker.as_deref().map(|worker| format!(" on {worker}")).unwrap_or_default();
        timeline.push(moment(started, format!("attempt {} started", record.attempt), on));
    }
    if record.status == Status::Running {
        let since = record.started_at.map(format::time).unwrap_or_default();
        attempts.push(AttemptRow {
            attempt: record.attempt,
            worker: "(running)".into(),
            started: since,
            ended: none(),
            took: none(),
            outcome: "running".into(),
            error: String::new(),
        });
    }
    if let Some(finished) = record.finished_at
        && !failed_attempts.iter().any(|attempt| attempt.finished_at == finished)
    {
        let detail =
            if record.status == Status::Succeeded { String::new() } else { record.error.clone().unwrap_or_default() };
        timeline.push(moment(finished, record.status.as_str().to_owned(), detail));
    }
    timeline.sort_by(|a, b| a.at_machine.cmp(&b.at_machine));
    let progress = record
        .progress
        .as_ref()
        .map(|progress| (progress.fraction, format!("{:.0}%", progress.fraction * 100.0), progress.message.clone()));
    JobPage {
        chrome,
        id: record.id.clone(),
        status: record.status.as_str(),
        ended: record.status.is_terminal(),
        facts,
        payload: pretty(&payload),
        result: record.result.as_deref().map(pretty),
        error: record.error.clone().filter(|_| record.status != Status::Succeeded),
        progress,
        attempts,
        timeline,
        can_cancel: matches!(record.status, Status::Queued | Status::Running),
        can_retry: record.status.is_retryable(),
    }
}

fn moment(at: i64, what: String, detail: String) -> Moment {
    Moment { at: format::time(at), at_machine: format::machine_time(at), what, detail }
}
