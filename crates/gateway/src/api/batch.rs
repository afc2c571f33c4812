//! `POST /api/batch`: many durable jobs accepted in one transaction, fanned out across the
//! workers, and their outcomes streamed back as NDJSON, one line per job as each one ends.

use super::{
    body::{JsonBody, parse_json},
    job_spec::{JobBody, check_runs},
    jobs::{EventData, WaitQuery, store_problem},
};
use crate::{AppState, problem::Problem};
use axum::{
    body::Body,
    extract::{Query, rejection::QueryRejection},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http::{HeaderValue, header};
use rampart_jobs::durable::{events::JobEvent, follow::Follower};
use serde::{Deserialize, Serialize};
use std::{collections::HashMap, convert::Infallible, sync::Arc};
use tokio::time::Instant;

/// The body: `{"jobs": [{"kind", "payload", ...}, ...]}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody<'a> {
    #[serde(borrow)]
    jobs: Vec<JobBody<'a>>,
}

/// One line of the answer.
#[derive(Serialize)]
struct Line<'a> {
    /// The job's place in the request.
    index: usize,
    #[serde(flatten)]
    event: EventData<'a>,
}

/// `POST /api/batch[?wait=DURATION]`: answers 200 at once and streams a line per job as it ends;
/// jobs still running when `wait` (default and limit: `jobs.max_wait`) runs out get a last line
/// with their current status, and carry on: `GET /api/jobs/{id}` shows how they end.
pub async fn submit(
    state: AppState,
    identity: Option<axum::Extension<crate::auth::Identity>>,
    query: Result<Query<WaitQuery>, QueryRejection>,
    JsonBody(bytes): JsonBody,
) -> Result<Response, Problem> {
    let identity = identity.as_ref().map(|axum::Extension(identity)| identity);
    let jobs = &state.jobs;
    let config = jobs.config();
    let wait = WaitQuery::duration(query, config.max_wait)?.unwrap_or(config.max_wait);
    let request: BatchBody<'_> = parse_json(&bytes)?;
    if request.jobs.is_empty() || request.jobs.len() > config.max_batch {
        return Err(Problem::unprocessable(format!("a batch holds 1 to {} jobs", config.max_batch))
            .with("jobs", request.jobs.len()));
    }
    let mut new_jobs = Vec::with_capacity(request.jobs.len());
    for (index, job) in request.jobs.into_iter().enumerate() {
        let caller = identity.map(|identity| &*identity.tenant);
        let job = job.into_new_job(&bytes, config, None, caller).map_err(|problem| problem.with("index", index))?;
        if job.unique.is_some() {
            return Err(Problem::unprocessable("unique applies to POST /api/jobs, one job at a time, not to batches")
                .with("index", index));
        }
        crate::auth::permit(identity, crate::auth::scopes::Family::Jobs, &job.kind)
            .map_err(|problem| problem.with("index", index))?;
        check_runs(&state.pools, &job.kind).map_err(|problem| problem.with("index", index))?;
        new_jobs.push(job);
    }
    let ids: Vec<Arc<str>> = new_jobs.iter().map(|job| Arc::from(job.id.as_str())).collect();
    let index: HashMap<Arc<str>, usize> = ids.iter().enumerate().map(|(at, id)| (Arc::clone(id), at)).collect();
    // Follow before accepting, so no job can end unseen.
    let follower = Follower::new(jobs, &ids);
    jobs.submit(new_jobs).await.map_err(store_problem)?;
    let stream = stream_outcomes(Arc::clone(jobs), follower, index, Instant::now() + wait);
    let mut response = Body::from_stream(stream).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    Ok(response)
}

/// A line per job as it ends, then one per job still unfinished at `deadline`.
fn stream_outcomes(
    jobs: Arc<rampart_jobs::durable::Jobs>,
    follower: Follower,
    index: HashMap<Arc<str>, usize>,
    deadline: Instant,
) -> impl futures_core::Stream<Item = Result<Bytes, Infallible>> + Send {
    enum Phase {
        Ending(Follower),
        Leftover(std::vec::IntoIter<Arc<str>>),
    }
    let state = (Phase::Ending(follower), jobs, index);
    futures_util::stream::unfold(state, move |(phase, jobs, index)| async move {
        match phase {
            Phase::Ending(mut follower) => loop {
                match follower.next(deadline).await {
                    Some(event) if event.status.is_terminal() => {
                        let line = line(&index, &event);
                        return Some((Ok(line), (Phase::Ending(follower), jobs, index)));
                    }
                    Some(_) => {}
                    None => {
                        let mut left: Vec<Arc<str>> = follower.unfinished().cloned().collect();
                        left.sort_by_key(|id| index.get(id).copied().unwrap_or(usize::MAX));
                        let mut left = left.into_iter();
                        let first = next_leftover(&jobs, &index, &mut left).await?;
                        return Some((Ok(first), (Phase::Leftover(left), jobs, index)));
                    }
                }
            },
            Phase::Leftover(mut left) => {
                let next = next_leftover(&jobs, &index, &mut left).await?;
                Some((Ok(next), (Phase::Leftover(left), jobs, index)))
            }
        }
    })
}

/// The line of the next unfinished job, as the store has it now.
async fn next_leftover(
    jobs: &rampart_jobs::durable::Jobs,
    index: &HashMap<Arc<str>, usize>,
    left: &mut std::vec::IntoIter<Arc<str>>,
) -> Option<Bytes> {
    let id = left.next()?;
    let event = match jobs.get(&id).await {
        Ok(Some(record)) => JobEvent::of(&record),
        _ => JobEvent {
            id: Arc::clone(&id),
            status: rampart_jobs::durable::model::Status::Queued,
            attempt: 0,
            error: Some("its status could not be read".into()),
            result: None,
            at: rampart_jobs::durable::model::now_micros(),
            progress: None,
        },
    };
    Some(line(index, &event))
}

fn line(index: &HashMap<Arc<str>, usize>, event: &JobEvent) -> Bytes {
    let line = Line { index: index.get(&event.id).copied().unwrap_or(usize::MAX), event: EventData::of(event) };
    let mut bytes = serde_json::to_vec(&line).unwrap_or_else(|_| b"{}".to_vec());
    bytes.push(b'\n');
    Bytes::from(bytes)
}
