//! Pausing and resuming job kinds and tenants: `POST /api/kinds/{kind}/pause` and `.../resume`,
//! `POST /api/tenants/{tenant}/pause` and `.../resume`, and `GET /api/pauses`. A pause is held
//! in the store, so every gateway on it stops starting the kind's or tenant's queued jobs (those
//! running finish); new jobs are still accepted and wait. An authenticated caller pauses kinds
//! its scopes allow, and its own tenant only.

use super::{
    job_spec::{check_kind, check_tenant},
    jobs::{owner, store_problem},
};
use crate::{
    AppState,
    auth::{Identity, permit, scopes::Family},
    problem::{Problem, ProblemCode},
};
use axum::{
    Json,
    extract::{Extension, Path, rejection::PathRejection},
    response::{IntoResponse, Response},
};
use http::StatusCode;
use rampart_jobs::durable::{model::rfc3339, rules::PauseScope};
use serde::Serialize;

/// What a pause or resume answers.
#[derive(Serialize)]
struct PauseState {
    /// `kind` or `tenant`.
    scope: &'static str,
    /// The kind's or tenant's name.
    name: String,
    /// Whether it is paused now.
    paused: bool,
    /// Whether this call changed that (false: it was so already).
    changed: bool,
}

/// One pause, as `GET /api/pauses` lists it.
#[derive(Serialize)]
struct PauseView {
    scope: &'static str,
    name: String,
    /// When it was paused (RFC 3339).
    since: String,
}

/// What `GET /api/pauses` answers.
#[derive(Serialize)]
struct Pauses {
    pauses: Vec<PauseView>,
}

/// `POST /api/kinds/{kind}/pause`: no job of the kind starts on any gateway until resumed.
pub async fn pause_kind(
    state: AppState,
    identity: Option<Extension<Identity>>,
    kind: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    change(state, identity, PauseScope::Kind, kind, true).await
}

/// `POST /api/kinds/{kind}/resume`: the kind's queued jobs start again.
pub async fn resume_kind(
    state: AppState,
    identity: Option<Extension<Identity>>,
    kind: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    change(state, identity, PauseScope::Kind, kind, false).await
}

/// `POST /api/tenants/{tenant}/pause`: none of the tenant's jobs starts until resumed.
pub async fn pause_tenant(
    state: AppState,
    identity: Option<Extension<Identity>>,
    tenant: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    change(state, identity, PauseScope::Tenant, tenant, true).await
}

/// `POST /api/tenants/{tenant}/resume`: the tenant's queued jobs start again.
pub async fn resume_tenant(
    state: AppState,
    identity: Option<Extension<Identity>>,
    tenant: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    change(state, identity, PauseScope::Tenant, tenant, false).await
}

async fn change(
    state: AppState,
    identity: Option<Extension<Identity>>,
    scope: PauseScope,
    name: Result<Path<String>, PathRejection>,
    pause: bool,
) -> Result<Response, Problem> {
    let Path(name) = name.map_err(|rejection| Problem::bad_request(rejection.body_text()))?;
    let identity = identity.as_ref().map(|Extension(identity)| identity);
    match scope {
        PauseScope::Kind => {
            check_kind(&name)?;
            permit(identity, Family::Jobs, &name)?;
        }
        PauseScope::Tenant => {
            check_tenant(&name)?;
            if let Some(own) = identity.map(|identity| &*identity.tenant)
                && own != name
            {
                return Err(Problem::new(
                    StatusCode::FORBIDDEN,
                    ProblemCode::Forbidden,
                    format!("a caller pauses and resumes its own tenant ({own:?}) only"),
                )
                .with("tenant", name));
            }
        }
    }
    let jobs = &state.jobs;
    let changed =
        if pause { jobs.pause(scope, &name).await } else { jobs.resume(scope, &name).await }.map_err(store_problem)?;
    Ok(Json(PauseState { scope: scope.as_str(), name, paused: pause, changed }).into_response())
}

/// `GET /api/pauses`: the kinds and tenants paused now, oldest first (an authenticated caller
/// sees the paused kinds and its own tenant).
pub async fn list(state: AppState, identity: Option<Extension<Identity>>) -> Result<Response, Problem> {
    let own = owner(identity.as_ref());
    let pauses = state.jobs.pauses().await.map_err(store_problem)?;
    let pauses = pauses
        .into_iter()
        .filter(|pause| pause.scope == PauseScope::Kind || own.is_none_or(|own| own == pause.name))
        .map(|pause| PauseView { scope: pause.scope.as_str(), name: pause.name, since: rfc3339(pause.since) })
        .collect();
    Ok(Json(Pauses { pauses }).into_response())
}
