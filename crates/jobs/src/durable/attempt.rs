//! One claimed attempt, run as a task of its own: the job sent to a worker of its pool, its
//! outcome handed to the completion writer. The task can be stopped (cancel, lost lease,
//! shutdown).

use super::{
    Core,
    claim::KindLimits,
    events::JobEvent,
    model::{AttemptRun, Claimed, Completion, JobProgress, Micros, Outcome, Status, now_micros},
    outcome,
    running::StopReason,
};
use crate::workers::{ExecuteError, ExecutePolicy, OnProgress, Pools, dispatch, wire_priority};
use rampart_balance::{config::RetryConfig, retry::RetryBudget};
use rampart_proto::v1::JobRequest;
use std::{
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::sync::mpsc;
use tracing::Instrument as _;

/// How much longer than a job's own time limit its call may take: the worker enforces the
/// limit and answers; this covers the answer's way back.
const CALL_MARGIN: Duration = Duration::from_secs(2);

/// An attempt's end on its way to the store.
pub(super) struct Finished {
    pub(super) completion: Completion,
    pub(super) kind: Arc<str>,
    pub(super) attempt: i32,
    /// How long the attempt ran, for the duration histogram (none when it never started).
    pub(super) ran: Option<Duration>,
}

/// An attempt that ran on a worker: how long, and the run the store records.
struct Ran {
    took: Duration,
    run: AttemptRun,
}

/// What every attempt needs: where to run it, how to retry its call, where its end goes.
#[derive(Clone)]
pub(super) struct Attempts {
    pub(super) shared: Arc<Core>,
    pub(super) pools: Arc<Pools>,
    pub(super) retry: RetryConfig,
    pub(super) retry_budget: Arc<RetryBudget>,
    pub(super) kind_limits: KindLimits,
    /// To the completion writer, which ends once every sender is gone.
    pub(super) completions: mpsc::UnboundedSender<Finished>,
}

impl Attempts {
    /// Jobs that may run at once now.
    pub(super) fn capacity(&self) -> usize {
        self.pools.healthy_count().saturating_mul(self.kind_limits.worker_slots)
    }

    /// Starts one claimed attempt; `capacity` is the slots there are now, for its kind's limit.
    pub(super) fn start(&self, job: Claimed, now: Micros, capacity: usize) {
        let shared = &self.shared;
        let id: Arc<str> = Arc::from(job.id.as_str());
        let kind: Arc<str> = Arc::from(job.kind.as_str());
        let limit = self.kind_limits.checked_here(&job.kind, capacity);
        let leased_until = now.saturating_add(super::micros(self.kind_limits.jobs().lease));
        let (stopper, over_limit) =
            shared.in_flight.add(Arc::clone(&id), job.token, leased_until, Arc::clone(&kind), limit);
        if over_limit {
            // Claimed in the same batch as others of its kind that filled the limit.
            self.finish(job, kind, Outcome::NotStarted { retry_at: now }, None, None);
            return;
        }
        if job.attempt == 1 {
            let waited = Duration::from_micros(u64::try_from(now.saturating_sub(job.created_at)).unwrap_or(0));
            metrics::histogram!("rampart_job_pickup_seconds").record(waited.as_secs_f64());
        }
        let followed = super::progress::Followed::new(shared, &id, job.attempt, job.token);
        shared.signal_changed(&id);
        shared.events.publish(JobEvent {
            id,
            status: Status::Running,
            attempt: job.attempt,
            error: None,
            result: None,
            at: now,
            progress: None,
        });
        // Each attempt is a child of the request that accepted the job, whose trace context the
        // store kept (a job accepted without one, as a cron tick's, starts a trace of its own).
        let span = if rampart_common::logging::tracing_enabled() {
            let span =
                tracing::info_span!("job.attempt", job.id = %job.id, job.kind = %job.kind, job.attempt = job.attempt);
            if let Some(traceparent) = &job.traceparent {
                rampart_common::trace_context::adopt_from_traceparent(&span, traceparent);
            }
            span
        } else {
            tracing::Span::none()
        };
        let attempts = self.clone();
        let attempt = async move {
            let started = Instant::now();
            let started_at = now_micros();
            let request = JobRequest {
                id: job.id.clone(),
                kind: job.kind.clone(),
                payload: job.payload.clone(),
                priority: wire_priority(job.priority).into(),
                timeout_ms: u64::try_from(job.timeout_ms).unwrap_or(0),
                attempt: u32::try_from(job.attempt).unwrap_or(1),
            };
            let time_limit = Duration::from_millis(request.timeout_ms);
            let policy = ExecutePolicy {
                idempotent: false,
                retry: &attempts.retry,
                budget: &attempts.retry_budget,
                progress: Some(Arc::clone(&followed) as OnProgress),
            };
            let pool = attempts.pools.for_kind(&job.kind);
            let mut worker = None;
            let outcome = tokio::select! {
                answer = dispatch(pool, &request, Instant::now() + time_limit + CALL_MARGIN, &policy) => {
                    worker = match &answer {
                        Ok(done) => Some(done.endpoint.url().to_owned()),
                        Err(ExecuteError::Worker { worker, .. }) => Some(worker.clone()),
                        Err(_) => None,
                    };
                    Some(outcome::of_execution(&job, answer.map(|done| done.result), attempts.kind_limits.jobs(), now_micros()))
                }
                reason = stopper.stopped() => match reason {
                    StopReason::Cancelled => Some(Outcome::Cancelled),
                    StopReason::Shutdown => Some(outcome::interrupted(&job, now_micros())),
                    // Another gateway holds the job now; this attempt's outcome would be refused.
                    StopReason::LeaseLost => None,
                },
            };
            // The run ended after the lease this gateway last knew it held: another gateway
            // may have started the job meanwhile. The renewals are meant to make this never happen.
            if attempts.shared.in_flight.lease_ended_before(&job.id, now_micros()) {
                tracing::warn!(job = %job.id, "an attempt ran past its lease");
                metrics::counter!("rampart_jobs_attempts_past_lease_total").increment(1);
            }
            match outcome {
                Some(outcome) => {
                    let run = AttemptRun { attempt: job.attempt, worker, started: started_at };
                    let ran = Ran { took: started.elapsed(), run };
                    attempts.finish(job, kind, outcome, Some(ran), followed.unwritten());
                }
                None => {
                    metrics::counter!("rampart_jobs_leases_lost_total").increment(1);
                    attempts.shared.in_flight.remove(&job.id);
                    attempts.shared.wake.notify_one();
                }
            }
        };
        tokio::spawn(attempt.instrument(span));
    }

    /// Hands an attempt's outcome to the completion writer.
    fn finish(&self, job: Claimed, kind: Arc<str>, outcome: Outcome, ran: Option<Ran>, progress: Option<JobProgress>) {
        self.shared.in_flight.finishing(&job.id);
        let (took, run) = ran.map(|ran| (ran.took, ran.run)).unzip();
        let finished = Finished {
            completion: Completion { id: job.id, token: job.token, outcome, at: now_micros(), progress, run },
            kind,
            attempt: job.attempt,
            ran: took,
        };
        if let Err(mpsc::error::SendError(finished)) = self.completions.send(finished) {
            // The writer stopped (shutdown): the lease will expire and the job be rescued.
            self.shared.in_flight.remove(&finished.completion.id);
        }
    }
}
