//! What the console's buttons do: cancel or retry one job, retry or purge what a filter
//! selects, pause or resume a kind or tenant. Every form carries the anti-forgery token
//! ([`csrf`]); cancel, retry and purge first answer a page asking to confirm, whose button
//! posts the same form again with `confirm=yes` — with or without JavaScript.

use super::{Chrome, Console, csrf, filter::FilterForm, filter::time, format, page_with_status, see_other};
use askama::Template;
use axum::{
    Form,
    extract::{Path, State, rejection::FormRejection, rejection::PathRejection},
    response::Response,
};
use http::{HeaderMap, StatusCode};
use rampart_jobs::durable::{
    model::{JobFilter, Status},
    rules::PauseScope,
    store::CancelOutcome,
};
use serde::Deserialize;
use std::sync::Arc;

/// The most jobs one bulk retry runs again.
const BULK_RETRY: usize = 1000;

/// Every field any of the console's action forms sends.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    confirm: String,
    #[serde(flatten)]
    filter: FilterForm,
    #[serde(default)]
    before: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    action: String,
}

/// A form to post again to confirm.
pub(super) struct Confirm {
    pub(super) action: String,
    pub(super) fields: Vec<(String, String)>,
    pub(super) button: String,
    pub(super) danger: bool,
}

/// A page that says something: a question to confirm, what an action did, or why it did not.
#[derive(Template)]
#[template(path = "console/notice.html")]
struct Notice {
    chrome: Chrome,
    text: String,
    alert: bool,
    confirm: Option<Confirm>,
    back: String,
    back_label: String,
}

/// Answers a notice with `status`.
fn notice(status: StatusCode, headers: &HeaderMap, title: &str, text: String, back: (&str, &str)) -> Response {
    let token = csrf::token(headers);
    let page = Notice {
        chrome: Chrome::new(title, "jobs", &token),
        alert: !status.is_success(),
        text,
        confirm: None,
        back: back.0.to_owned(),
        back_label: back.1.to_owned(),
    };
    page_with_status(status, &page, token.set_cookie)
}

/// The form, once its token and origin are checked; else the page that says why not.
fn checked(headers: &HeaderMap, form: Result<Form<ActionForm>, FormRejection>) -> Result<ActionForm, Box<Response>> {
    let form = form.map_err(|rejection| {
        Box::new(notice(
            StatusCode::BAD_REQUEST,
            headers,
            "Not done",
            rejection.body_text(),
            ("/console", "Back to the console"),
        ))
    })?;
    csrf::check(headers, Some(&form.csrf)).map_err(|refusal| {
        Box::new(notice(
            StatusCode::FORBIDDEN,
            headers,
            "Not done",
            refusal.to_string(),
            ("/console", "Back to the console"),
        ))
    })?;
    Ok(form.0)
}

/// The confirmation page for `form` posted to `action`, unless it is confirmed already.
fn unconfirmed(
    headers: &HeaderMap,
    form: &ActionForm,
    (action, back): (&str, &str),
    question: String,
    button: &str,
) -> Option<Response> {
    if form.confirm == "yes" {
        return None;
    }
    let token = csrf::token(headers);
    let mut fields: Vec<(String, String)> =
        form.filter.fields().iter().map(|(name, value)| ((*name).to_owned(), value.trim().to_owned())).collect();
    fields.push(("before".into(), form.before.clone()));
    fields.retain(|(_, value)| !value.is_empty());
    fields.push(("csrf".into(), token.value.clone()));
    fields.push(("confirm".into(), "yes".into()));
    let page = Notice {
        chrome: Chrome::new("Confirm", "jobs", &token),
        text: question,
        alert: false,
        confirm: Some(Confirm { action: action.to_owned(), fields, button: button.to_owned(), danger: true }),
        back: back.to_owned(),
        back_label: "No, go back".into(),
    };
    Some(page_with_status(StatusCode::OK, &page, token.set_cookie))
}

fn job_path(id: &str) -> String {
    format!("/console/jobs/{}", rampart_common::http::cookie::encode_component(id))
}

/// `POST /console/jobs/{id}/cancel`.
pub(super) async fn cancel(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    let form = match checked(&headers, form) {
        Ok(form) => form,
        Err(refused) => return *refused,
    };
    let Ok(Path(id)) = id else { return see_other("/console/jobs") };
    let action = format!("{}/cancel", job_path(&id));
    if let Some(ask) =
        unconfirmed(&headers, &form, (&action, &job_path(&id)), format!("Cancel job {id}?"), "Yes, cancel it")
    {
        return ask;
    }
    match console.main.jobs.cancel(&id).await {
        Ok(CancelOutcome::Cancelled | CancelOutcome::Requested | CancelOutcome::AlreadyFinished) => {
            see_other(&job_path(&id))
        }
        Ok(CancelOutcome::NotFound) => notice(
            StatusCode::NOT_FOUND,
            &headers,
            "Not done",
            format!("There is no job {id}."),
            ("/console/jobs", "Jobs"),
        ),
        Err(error) => store_failed(&headers, &error),
    }
}

/// `POST /console/jobs/{id}/retry`.
pub(super) async fn retry_one(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    let form = match checked(&headers, form) {
        Ok(form) => form,
        Err(refused) => return *refused,
    };
    let Ok(Path(id)) = id else { return see_other("/console/jobs") };
    let action = format!("{}/retry", job_path(&id));
    let question = format!("Run job {id} again, with all its attempts?");
    if let Some(ask) = unconfirmed(&headers, &form, (&action, &job_path(&id)), question, "Yes, retry it") {
        return ask;
    }
    let filter = JobFilter { id: Some(id.clone()), ..JobFilter::default() };
    match console.main.jobs.retry(filter, 1).await {
        Ok(retried) if retried.is_empty() => notice(
            StatusCode::CONFLICT,
            &headers,
            "Not done",
            format!("Job {id} cannot be retried: only a failed, dead, expired or cancelled job can."),
            (&job_path(&id), "Back to the job"),
        ),
        Ok(_) => see_other(&job_path(&id)),
        Err(error) => store_failed(&headers, &error),
    }
}

/// A bulk action's checked form, its filter (whose statuses must all be `allowed`, else the
/// answer says the status `refusal`), and the list it came from.
fn bulk(
    headers: &HeaderMap,
    form: Result<Form<ActionForm>, FormRejection>,
    allowed: fn(Status) -> bool,
    refusal: &str,
) -> Result<(ActionForm, JobFilter, String), Box<Response>> {
    let form = checked(headers, form)?;
    let back = format!("/console/jobs?{}", form.filter.query());
    let refuse = |status, text| Box::new(notice(status, headers, "Not done", text, (&back, "Back")));
    let filter = form.filter.filter().map_err(|reason| refuse(StatusCode::BAD_REQUEST, reason))?;
    if let Some(status) = filter.statuses.iter().find(|status| !allowed(**status)) {
        return Err(refuse(StatusCode::UNPROCESSABLE_ENTITY, format!("A {} job {refusal}.", status.as_str())));
    }
    Ok((form, filter, back))
}

/// `POST /console/jobs/retry`: up to [`BULK_RETRY`] jobs the filter selects.
pub(super) async fn retry_many(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    let refusal = "cannot be retried; filter on failed, dead, expired or cancelled";
    let (form, mut filter, back) = match bulk(&headers, form, Status::is_retryable, refusal) {
        Ok(bulk) => bulk,
        Err(refused) => return *refused,
    };
    if filter.statuses.is_empty() {
        filter.statuses = Status::RETRYABLE.to_vec();
    }
    let question = format!(
        "Run again up to {} jobs ({}) that failed, died, expired or were cancelled?",
        format::count(i64::try_from(BULK_RETRY).unwrap_or(0)),
        form.filter.describe()
    );
    if let Some(ask) = unconfirmed(&headers, &form, ("/console/jobs/retry", &back), question, "Yes, retry them") {
        return ask;
    }
    match console.main.jobs.retry(filter, BULK_RETRY).await {
        Ok(retried) => {
            let more = if retried.len() == BULK_RETRY { " More may match: retry again." } else { "" };
            let text = format!("Queued {} jobs again.{more}", format::count(i64::try_from(retried.len()).unwrap_or(0)));
            notice(StatusCode::OK, &headers, "Retried", text, (&back, "Back to the jobs"))
        }
        Err(error) => store_failed(&headers, &error),
    }
}

/// `POST /console/jobs/purge`: the ended jobs the filter selects that ended before `before`.
pub(super) async fn purge(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    let (form, mut filter, back) = match bulk(&headers, form, Status::is_terminal, "has not ended and is never purged")
    {
        Ok(bulk) => bulk,
        Err(refused) => return *refused,
    };
    let before = match time("before", &form.before) {
        Ok(Some(before)) => before,
        Ok(None) => {
            let text = "Say before when the jobs to delete must have ended.".to_owned();
            return notice(StatusCode::BAD_REQUEST, &headers, "Not done", text, (&back, "Back"));
        }
        Err(reason) => return notice(StatusCode::BAD_REQUEST, &headers, "Not done", reason, (&back, "Back")),
    };
    filter.finished_before = Some(before);
    let question = format!(
        "Delete for good every job ({}) that ended before {}? This cannot be undone.",
        form.filter.describe(),
        format::time(before)
    );
    if let Some(ask) = unconfirmed(&headers, &form, ("/console/jobs/purge", &back), question, "Yes, delete them") {
        return ask;
    }
    match console.main.jobs.purge(filter).await {
        Ok(deleted) => {
            let text = format!("Deleted {} jobs.", format::count(i64::try_from(deleted).unwrap_or(i64::MAX)));
            notice(StatusCode::OK, &headers, "Purged", text, (&back, "Back to the jobs"))
        }
        Err(error) => store_failed(&headers, &error),
    }
}

/// `POST /console/pauses` (`scope`, `name`, `action` = pause or resume).
pub(super) async fn pause(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    let form = match checked(&headers, form) {
        Ok(form) => form,
        Err(refused) => return *refused,
    };
    let back = ("/console/schedules", "Back to schedules and kinds");
    let Some(scope) = PauseScope::parse(&form.scope) else {
        let text = format!("{:?} is neither kind nor tenant.", form.scope);
        return notice(StatusCode::BAD_REQUEST, &headers, "Not done", text, back);
    };
    let name = form.name.trim();
    let valid = match scope {
        PauseScope::Kind => crate::api::job_spec::check_kind(name),
        PauseScope::Tenant => crate::api::job_spec::check_tenant(name),
    };
    if let Err(problem) = valid {
        return notice(StatusCode::BAD_REQUEST, &headers, "Not done", problem.detail().to_owned(), back);
    }
    let jobs = &console.main.jobs;
    let done = match form.action.as_str() {
        "pause" => jobs.pause(scope, name).await,
        "resume" => jobs.resume(scope, name).await,
        other => {
            let text = format!("{other:?} is neither pause nor resume.");
            return notice(StatusCode::BAD_REQUEST, &headers, "Not done", text, back);
        }
    };
    match done {
        Ok(_) => see_other("/console/schedules"),
        Err(error) => store_failed(&headers, &error),
    }
}

fn store_failed(headers: &HeaderMap, error: &rampart_jobs::durable::store::StoreError) -> Response {
    tracing::error!(%error, "a console action failed in the store");
    let text = "The job store did not answer; nothing was changed. Try again.".to_owned();
    notice(StatusCode::SERVICE_UNAVAILABLE, headers, "Not done", text, ("/console", "Back to the console"))
}
