//! `GET /api/cron`: the `[[cron]]` entries with their last and next runs.

use super::jobs::store_problem;
use crate::{AppState, problem::Problem};
use axum::{
    Json,
    response::{IntoResponse, Response},
};
use rampart_jobs::durable::cron::CronView;
use serde::Serialize;

/// What `GET /api/cron` answers.
#[derive(Serialize)]
struct Entries {
    entries: Vec<CronView>,
}

/// `GET /api/cron`: each entry's name, schedule, time zone, kind, `catch_up`, and its last
/// (by any gateway on the store) and next run.
pub async fn list(state: AppState) -> Result<Response, Problem> {
    let entries = state.jobs.cron_entries().await.map_err(store_problem)?;
    Ok(Json(Entries { entries }).into_response())
}
