//! Finding, inspecting and fixing durable jobs: `GET /api/jobs` lists them page by page,
//! `GET /api/jobs/stats` counts them, `POST /api/jobs/{id}/retry` and `POST /api/jobs/retry` run
//! ended ones again, and `DELETE /api/jobs` purges ended ones. An authenticated caller sees and
//! changes its own tenant's jobs only.

use super::jobs::{fetch, job_id, job_response, owner, store_problem};
use crate::{
    AppState,
    auth::Identity,
    problem::{Problem, ProblemCode},
};
use axum::{
    Json,
    extract::{
        Extension, Path, Query,
        rejection::{PathRejection, QueryRejection},
    },
    response::{IntoResponse, Response},
};
use http::StatusCode;
use rampart_jobs::durable::model::{JobFilter, JobView, Page, Status, now_micros, parse_rfc3339, waited_seconds};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Jobs on a page when `limit` is not given.
const DEFAULT_PAGE: usize = 100;

/// The most jobs on a page.
const MAX_PAGE: usize = 1000;

/// Jobs a bulk retry runs again when `limit` is not given, and at most.
const DEFAULT_RETRY: usize = 1000;
const MAX_RETRY: usize = 10_000;

/// The longest cursor accepted (a job id).
const MAX_CURSOR_LEN: usize = 64;

/// The query parameters of every route here; each route says which it takes.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FilterQuery {
    status: Option<String>,
    kind: Option<String>,
    tenant: Option<String>,
    created_after: Option<String>,
    created_before: Option<String>,
    /// The start of a job's id or idempotency key.
    q: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
    before: Option<String>,
}

impl FilterQuery {
    fn of(query: Result<Query<Self>, QueryRejection>) -> Result<Self, Problem> {
        query.map(|Query(query)| query).map_err(|rejection| Problem::bad_request(rejection.body_text()))
    }

    /// Refuses the parameters `route` does not take, by name.
    fn refuse(&self, route: &str, names: &[&str]) -> Result<(), Problem> {
        for name in names {
            let given = match *name {
                "limit" => self.limit.is_some(),
                "cursor" => self.cursor.is_some(),
                "before" => self.before.is_some(),
                "status" => self.status.is_some(),
                _ => false,
            };
            if given {
                return Err(Problem::bad_request(format!("{route} takes no `{name}` parameter")));
            }
        }
        Ok(())
    }

    /// The filter, with the caller's own tenant forced on an authenticated caller.
    fn filter(&self, identity: Option<&Extension<Identity>>) -> Result<JobFilter, Problem> {
        let statuses = match &self.status {
            None => Vec::new(),
            Some(text) => text.split(',').map(|name| parse_status(name.trim())).collect::<Result<_, _>>()?,
        };
        let created_after = self.created_after.as_deref().map(|text| time("created_after", text)).transpose()?;
        let created_before = self.created_before.as_deref().map(|text| time("created_before", text)).transpose()?;
        let text = self.q.as_deref().map(str::trim).filter(|text| !text.is_empty()).map(str::to_owned);
        if text.as_ref().is_some_and(|text| text.len() > MAX_CURSOR_LEN * 4) {
            return Err(Problem::bad_request(format!("q is at most {} bytes", MAX_CURSOR_LEN * 4)));
        }
        let tenant = match (owner(identity), &self.tenant) {
            (Some(own), Some(asked)) if own != asked => {
                return Err(Problem::new(
                    StatusCode::FORBIDDEN,
                    ProblemCode::Forbidden,
                    "a caller sees its own tenant's jobs only; leave out `tenant`",
                ));
            }
            (Some(own), _) => Some(own.to_owned()),
            (None, asked) => asked.clone(),
        };
        Ok(JobFilter {
            id: None,
            statuses,
            kind: self.kind.clone(),
            tenant,
            created_after,
            finished_before: None,
            created_before,
            text,
        })
    }

    fn limit(&self, default: usize, max: usize) -> Result<usize, Problem> {
        match self.limit {
            None => Ok(default),
            Some(limit) if (1..=max).contains(&limit) => Ok(limit),
            Some(_) => Err(Problem::bad_request(format!("limit must be 1 to {max}"))),
        }
    }
}

fn parse_status(name: &str) -> Result<Status, Problem> {
    Status::parse(name).ok_or_else(|| {
        let known: Vec<&str> = Status::ALL.iter().map(|status| status.as_str()).collect();
        Problem::bad_request(format!("unknown status {name:?}; use one or more of {}", known.join(", ")))
    })
}

fn time(field: &str, text: &str) -> Result<i64, Problem> {
    parse_rfc3339(text).map_err(|reason| Problem::bad_request(format!("{field}: {reason}")))
}

/// A page of a listing.
#[derive(Serialize)]
struct Listing {
    jobs: Vec<JobView>,
    /// Pass as `cursor` for the next page; null on the last.
    next_cursor: Option<String>,
}

/// `GET /api/jobs?status=&kind=&tenant=&created_after=&created_before=&q=&limit=&cursor=`: jobs
/// newest first; `q` finds jobs whose id or idempotency key starts with it.
pub async fn list(
    state: AppState,
    identity: Option<Extension<Identity>>,
    query: Result<Query<FilterQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let query = FilterQuery::of(query)?;
    query.refuse("GET /api/jobs", &["before"])?;
    let filter = query.filter(identity.as_ref())?;
    let limit = query.limit(DEFAULT_PAGE, MAX_PAGE)?;
    let before_id = match query.cursor {
        Some(cursor) if cursor.is_empty() || cursor.len() > MAX_CURSOR_LEN => {
            return Err(Problem::bad_request("cursor is not one this gateway gave out"));
        }
        cursor => cursor,
    };
    let records = state.jobs.list(filter, Page { limit, before_id }).await.map_err(store_problem)?;
    let next_cursor = (records.len() == limit).then(|| records.last().map(|record| record.id.clone())).flatten();
    let jobs = records.iter().map(|record| record.view()).collect();
    Ok(Json(Listing { jobs, next_cursor }).into_response())
}

/// What `GET /api/jobs/stats` answers.
#[derive(Serialize)]
struct StatsView {
    /// Jobs in each status (every status named, zero or not).
    by_status: BTreeMap<&'static str, i64>,
    /// Per kind, jobs in each status that has any.
    by_kind: BTreeMap<String, BTreeMap<&'static str, i64>>,
    /// How long the job that has been due longest without starting has waited; null if none.
    oldest_queued_age_seconds: Option<f64>,
}

/// `GET /api/jobs/stats?kind=&tenant=&created_after=`: counts by status and kind.
pub async fn stats(
    state: AppState,
    identity: Option<Extension<Identity>>,
    query: Result<Query<FilterQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let query = FilterQuery::of(query)?;
    query.refuse("GET /api/jobs/stats", &["status", "limit", "cursor", "before"])?;
    let filter = query.filter(identity.as_ref())?;
    let stats = state.jobs.stats(filter).await.map_err(store_problem)?;
    let (by_status, by_kind) = stats.totals();
    let oldest_queued_age_seconds = stats.oldest_due.map(|due| waited_seconds(due, now_micros()));
    Ok(Json(StatsView { by_status, by_kind, oldest_queued_age_seconds }).into_response())
}

/// `POST /api/jobs/{id}/retry`: a job that failed, died, expired or was cancelled runs again
/// with all its attempts (200 with the job); any other is 409 `job_not_retryable`.
pub async fn retry_one(
    state: AppState,
    identity: Option<Extension<Identity>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    let id = job_id(id)?;
    let jobs = &state.jobs;
    let owner = owner(identity.as_ref());
    let filter = JobFilter { id: Some(id.clone()), tenant: owner.map(str::to_owned), ..JobFilter::default() };
    let retried = jobs.retry(filter, 1).await.map_err(store_problem)?;
    let record = fetch(jobs, &id, owner).await?;
    if retried.is_empty() {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            ProblemCode::JobNotRetryable,
            format!(
                "job {id} is {}; only a failed, dead, expired or cancelled job can be retried",
                record.status.as_str()
            ),
        )
        .with("job_id", id)
        .with("job_status", record.status.as_str()));
    }
    Ok(job_response(StatusCode::OK, &record))
}

/// What a bulk retry did.
#[derive(Serialize)]
struct Retried {
    /// Jobs queued again.
    retried: usize,
    /// Whether the limit was reached, so that more may match: call again.
    more: bool,
}

/// `POST /api/jobs/retry?status=&kind=&tenant=&created_after=&limit=`: runs again, oldest first,
/// up to `limit` (1,000 unless given; at most 10,000) jobs that ended without succeeding.
pub async fn retry_many(
    state: AppState,
    identity: Option<Extension<Identity>>,
    query: Result<Query<FilterQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let query = FilterQuery::of(query)?;
    query.refuse("POST /api/jobs/retry", &["cursor", "before"])?;
    let filter = query.filter(identity.as_ref())?;
    if let Some(status) = filter.statuses.iter().find(|status| !status.is_retryable()) {
        return Err(Problem::unprocessable(format!(
            "a {} job cannot be retried; use status failed, dead, expired or cancelled",
            status.as_str()
        )));
    }
    let limit = query.limit(DEFAULT_RETRY, MAX_RETRY)?;
    let retried = state.jobs.retry(filter.clone(), limit).await.map_err(store_problem)?;
    let more = retried.len() == limit && {
        let left = JobFilter { statuses: retryable(&filter.statuses), ..filter };
        !state.jobs.list(left, Page { limit: 1, before_id: None }).await.map_err(store_problem)?.is_empty()
    };
    Ok(Json(Retried { retried: retried.len(), more }).into_response())
}

/// The statuses a retry filter covers: those asked for, or every retryable one.
fn retryable(statuses: &[Status]) -> Vec<Status> {
    if statuses.is_empty() { Status::RETRYABLE.to_vec() } else { statuses.to_vec() }
}

/// What a purge did.
#[derive(Serialize)]
struct Purged {
    /// Jobs deleted.
    deleted: u64,
}

/// `DELETE /api/jobs?before=&status=&kind=&tenant=&created_after=`: deletes the jobs that ended
/// before `before` (required), of the statuses given (any ended one if none); a queued or running
/// job is never deleted.
pub async fn purge(
    state: AppState,
    identity: Option<Extension<Identity>>,
    query: Result<Query<FilterQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let query = FilterQuery::of(query)?;
    query.refuse("DELETE /api/jobs", &["limit", "cursor"])?;
    let mut filter = query.filter(identity.as_ref())?;
    if let Some(status) = filter.statuses.iter().find(|status| !status.is_terminal()) {
        return Err(Problem::unprocessable(format!(
            "a {} job has not ended and is never purged; cancel it first",
            status.as_str()
        )));
    }
    let Some(before) = query.before.as_deref() else {
        return Err(Problem::bad_request("name the cut: ?before=2026-12-01T00:00:00Z (jobs that ended before it)"));
    };
    filter.finished_before = Some(time("before", before)?);
    let deleted = state.jobs.purge(filter).await.map_err(store_problem)?;
    Ok(Json(Purged { deleted }).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<FilterQuery, QueryRejection> {
        let uri: http::Uri = format!("/api/jobs?{text}").parse().unwrap();
        Query::try_from_uri(&uri).map(|Query(query)| query)
    }

    fn query(text: &str) -> FilterQuery {
        parsed(text).unwrap()
    }

    #[test]
    fn filters_read_statuses_and_times() {
        let filter = query("status=dead,failed&kind=echo&created_after=2026-01-01T00:00:00Z").filter(None).unwrap();
        assert_eq!(filter.statuses, [Status::Dead, Status::Failed]);
        assert_eq!((filter.kind.as_deref(), filter.created_after), (Some("echo"), Some(1_767_225_600_000_000)));
        let problem = query("status=zombie").filter(None).unwrap_err();
        assert!(problem.detail().contains("expired"), "{}", problem.detail());
        assert!(query("created_after=yesterday").filter(None).is_err());
        assert!(parsed("stauts=dead").is_err(), "a misspelt parameter");
    }

    #[test]
    fn limits_and_route_parameters_are_checked() {
        assert_eq!(query("").limit(100, 1000).unwrap(), 100);
        assert!(query("limit=0").limit(100, 1000).is_err());
        assert!(query("limit=1001").limit(100, 1000).is_err());
        let problem = query("cursor=x").refuse("POST /api/jobs/retry", &["cursor"]).unwrap_err();
        assert!(problem.detail().contains("`cursor`"));
    }
}
