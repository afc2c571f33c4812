//! Schedules and kinds: the `[[cron]]` entries with their last and next runs, the paused kinds
//! and tenants with a resume button each, and every known kind with a pause button.

use super::{Chrome, Console, csrf, format, render};
use askama::Template;
use axum::{extract::State, response::Response};
use http::HeaderMap;
use rampart_jobs::durable::{cron::CronView, rules::PauseScope};
use std::sync::Arc;

/// One pause's row.
pub(super) struct PauseRow {
    pub(super) scope: &'static str,
    pub(super) name: String,
    pub(super) since: String,
}

/// One known kind's row.
pub(super) struct KindRow {
    pub(super) name: String,
    pub(super) paused: bool,
}

/// The page.
#[derive(Template)]
#[template(path = "console/schedules.html")]
struct SchedulesPage {
    chrome: Chrome,
    cron: Vec<CronView>,
    pauses: Vec<PauseRow>,
    kinds: Vec<KindRow>,
    problem: Option<String>,
}

/// `GET /console/schedules`.
pub(super) async fn page(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let token = csrf::token(&headers);
    let chrome = Chrome::new("Schedules and kinds", "schedules", &token);
    let jobs = &console.main.jobs;
    let mut problem = None;
    let cron = jobs.cron_entries().await.unwrap_or_else(|error| {
        problem = Some(format!("the store did not answer: {error}"));
        Vec::new()
    });
    let pauses = jobs.pauses().await.unwrap_or_else(|error| {
        problem = Some(format!("the store did not answer: {error}"));
        Vec::new()
    });
    let kinds = console
        .main
        .pools
        .kinds()
        .into_iter()
        .map(|name| {
            let paused = pauses.iter().any(|pause| pause.scope == PauseScope::Kind && pause.name == name);
            KindRow { name, paused }
        })
        .collect();
    let pauses = pauses
        .into_iter()
        .map(|pause| PauseRow { scope: pause.scope.as_str(), name: pause.name, since: format::time(pause.since) })
        .collect();
    render(&SchedulesPage { chrome, cron, pauses, kinds, problem }, &token)
}
