//! The jobs list: filters (status, kind, tenant, acceptance window, the start of an id or
//! idempotency key), keyset pages newest first, and bulk retry and purge of what the filter
//! selects.

use super::{Chrome, Console, csrf, filter::FilterForm, format, page_with_status, render};
use askama::Template;
use axum::{
    extract::{Query, State, rejection::QueryRejection},
    response::Response,
};
use http::{HeaderMap, StatusCode};
use rampart_jobs::durable::model::{JobRecord, Page, Status};
use serde::Deserialize;
use std::sync::Arc;

/// Jobs on a page.
const PAGE: usize = 50;

/// The longest error shown in the list.
const ERROR_PREVIEW: usize = 120;

/// The list's query: the filter and where the page starts.
#[derive(Deserialize, Default)]
pub(super) struct ListQuery {
    #[serde(flatten)]
    filter: FilterForm,
    cursor: Option<String>,
}

/// One job's row.
pub(super) struct JobRow {
    pub(super) id: String,
    pub(super) kind: String,
    pub(super) status: &'static str,
    pub(super) tenant: String,
    pub(super) attempts: String,
    pub(super) created: String,
    pub(super) created_machine: String,
    pub(super) finished: String,
    pub(super) error: String,
}

impl JobRow {
    fn of(record: &JobRecord) -> Self {
        let mut error = record.error.clone().unwrap_or_default();
        if error.len() > ERROR_PREVIEW {
            let cut = (0..=ERROR_PREVIEW).rev().find(|at| error.is_char_boundary(*at)).unwrap_or(0);
            error.truncate(cut);
            error.push('…');
        }
        Self {
            id: record.id.clone(),
            kind: record.kind.clone(),
            status: record.status.as_str(),
            tenant: record.tenant.clone().unwrap_or_default(),
            attempts: format!("{}/{}", record.attempt, record.max_attempts),
            created: format::time(record.created_at),
            created_machine: format::machine_time(record.created_at),
            finished: record.finished_at.map_or_else(|| "—".to_owned(), format::time),
            error,
        }
    }
}

/// A status in the filter's choice.
pub(super) struct StatusChoice {
    pub(super) name: &'static str,
    pub(super) selected: bool,
}

/// The jobs page.
#[derive(Template)]
#[template(path = "console/jobs.html")]
struct JobsPage {
    chrome: Chrome,
    form: FilterForm,
    statuses: Vec<StatusChoice>,
    kinds: Vec<String>,
    jobs: Vec<JobRow>,
    problem: Option<String>,
    next: Option<String>,
    first: Option<String>,
    fields: Vec<(&'static str, String)>,
    describe: String,
    took: String,
}

/// `GET /console/jobs?status=&kind=&tenant=&from=&to=&q=&cursor=`.
pub(super) async fn page(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let token = csrf::token(&headers);
    let (query, mut problem) = match query {
        Ok(Query(query)) => (query, None),
        Err(rejection) => (ListQuery::default(), Some(rejection.body_text())),
    };
    let started = std::time::Instant::now();
    let mut jobs = Vec::new();
    let mut next = None;
    match query.filter.filter() {
        Err(reason) => problem = Some(reason),
        Ok(filter) => {
            let cursor = query.cursor.clone().filter(|cursor| !cursor.is_empty() && cursor.len() <= 64);
            match console.main.jobs.list(filter, Page { limit: PAGE, before_id: cursor }).await {
                Ok(records) => {
                    if records.len() == PAGE
                        && let Some(last) = records.last()
                    {
                        let base = query.filter.query();
                        let join = if base.is_empty() { "" } else { "&" };
                        next = Some(format!("/console/jobs?{base}{join}cursor={}", last.id));
                    }
                    jobs = records.iter().map(JobRow::of).collect();
                }
                Err(error) => problem = Some(format!("the store did not answer: {error}")),
            }
        }
    }
    let first = query.cursor.as_ref().map(|_| format!("/console/jobs?{}", query.filter.query()));
    let statuses = Status::ALL
        .iter()
        .map(|status| StatusChoice { name: status.as_str(), selected: query.filter.status.trim() == status.as_str() })
        .collect();
    let status = if problem.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let fields = query.filter.fields().iter().map(|(name, value)| (*name, value.trim().to_owned())).collect();
    let listing = JobsPage {
        chrome: Chrome::new("Jobs", "jobs", &token),
        describe: query.filter.describe(),
        form: query.filter,
        statuses,
        kinds: console.main.pools.kinds(),
        jobs,
        problem,
        next,
        first,
        fields,
        took: format::millis(Some(started.elapsed().as_secs_f64())),
    };
    if status == StatusCode::OK {
        render(&listing, &token)
    } else {
        page_with_status(status, &listing, token.set_cookie)
    }
}
