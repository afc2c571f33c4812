//! What an attempt's end means for the job: done, retried (now or after a backoff), back to the
//! queue without using an attempt, or failed for good.

use super::model::{Claimed, Micros, Outcome};
use crate::{config::JobsConfig, workers::ExecuteError};
use rampart_balance::retry::full_jitter;
use rampart_proto::WorkerError;
use rampart_proto::v1::{JobResult, JobStatus};
use std::time::Duration;

/// How long to wait before trying a job that found no worker able to take it.
const NO_WORKER_WAIT: Duration = Duration::from_secs(1);

/// The outcome of an attempt that got an answer or an error from dispatching.
pub fn of_execution(
    job: &Claimed,
    answer: Result<JobResult, ExecuteError>,
    config: &JobsConfig,
    now: Micros,
) -> Outcome {
    let error = match answer {
        Ok(result) if result.status() == JobStatus::Succeeded => {
            return Outcome::Succeeded(result.output);
        }
        Ok(result) => {
            let error =
                if result.error.is_empty() { "the job failed (no reason given)".to_owned() } else { result.error };
            return retry_later(job, format!("{error} (worker {})", result.worker), config, now);
        }
        Err(error) => error,
    };
    match error {
        ExecuteError::NoHealthyBackend => Outcome::NotStarted { retry_at: after(now, NO_WORKER_WAIT) },
        ExecuteError::BreakerOpen { retry_after } | ExecuteError::Overloaded { retry_after } => {
            Outcome::NotStarted { retry_at: after(now, retry_after.max(Duration::from_millis(10))) }
        }
        ExecuteError::DeadlineExceeded => {
            retry_later(job, format!("no answer within the job's {} ms time limit", job.timeout_ms), config, now)
        }
        ExecuteError::Worker { error, worker } => {
            if error.is_final() {
                // Every worker would answer the same (an unknown kind, a payload it refuses, a
                // message over the size limit): retrying cannot help.
                return Outcome::Refused(format!("{error} (worker {worker})"));
            }
            let message = format!("worker {worker} answered: {error}");
            match error {
                WorkerError::TimedOut(_) | WorkerError::Cancelled(_) => retry_later(job, message, config, now),
                // The worker broke during the call (it crashed or its connection dropped): the
                // job may not have finished, so it goes to another worker at once.
                _ => retry_or_dead(job, message, now),
            }
        }
    }
}

/// The outcome of an attempt stopped because this gateway is shutting down: tried again at once
/// (by whichever gateway claims it), using the attempt since the job may have run.
pub fn interrupted(job: &Claimed, now: Micros) -> Outcome {
    retry_or_dead(job, "its gateway shut down while it ran".to_owned(), now)
}

/// A retry after a full-jitter backoff, or `dead` after the last attempt.
fn retry_later(job: &Claimed, error: String, config: &JobsConfig, now: Micros) -> Outcome {
    let retry = u32::try_from(job.attempt).unwrap_or(1);
    retry_or_dead(job, error, after(now, full_jitter(config.backoff_base, config.backoff_max, retry)))
}

fn retry_or_dead(job: &Claimed, error: String, retry_at: Micros) -> Outcome {
    let retry_at = (job.attempt < job.max_attempts).then_some(retry_at);
    Outcome::Failed { error, retry_at }
}

fn after(now: Micros, wait: Duration) -> Micros {
    now.saturating_add(i64::try_from(wait.as_micros()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn job(attempt: i32) -> Claimed {
        Claimed {
            id: "j".into(),
            kind: "sleep".into(),
            payload: Bytes::new(),
            priority: crate::durable::model::Priority::Normal,
            attempt,
            max_attempts: 3,
            token: 7,
            timeout_ms: 100,
            created_at: 0,
            traceparent: None,
            tenant: "t".into(),
        }
    }

    fn worker_error(code: tonic::Code) -> Result<JobResult, ExecuteError> {
        let error = WorkerError::from_status(&tonic::Status::new(code, "x"));
        Err(ExecuteError::Worker { error, worker: "http://w".into() })
    }

    #[test]
    fn failures_retry_with_backoff_until_the_last_attempt() {
        let config = JobsConfig { backoff_base: Duration::from_secs(1), ..JobsConfig::default() };
        let failed = JobResult { status: JobStatus::Failed.into(), error: "boom".into(), ..JobResult::default() };
        let Outcome::Failed { error, retry_at: Some(at) } = of_execution(&job(2), Ok(failed.clone()), &config, 0)
        else {
            panic!("retried")
        };
        assert!(error.starts_with("boom"));
        assert!((0..=2_000_000).contains(&at), "up to base × 2 for the second retry: {at}");
        assert!(matches!(of_execution(&job(3), Ok(failed), &config, 0), Outcome::Failed { retry_at: None, .. }));
    }

    #[test]
    fn a_broken_call_is_retried_at_once_and_unfixable_errors_are_not_retried() {
        let config = JobsConfig::default();
        let outcome = of_execution(&job(1), worker_error(tonic::Code::Unavailable), &config, 5);
        assert!(matches!(outcome, Outcome::Failed { retry_at: Some(5), .. }), "{outcome:?}");
        for code in [tonic::Code::Unimplemented, tonic::Code::OutOfRange] {
            let outcome = of_execution(&job(1), worker_error(code), &config, 5);
            assert!(matches!(outcome, Outcome::Refused(_)), "{code:?}: {outcome:?}");
        }
    }

    #[test]
    fn no_worker_means_not_started() {
        let outcome = of_execution(&job(3), Err(ExecuteError::NoHealthyBackend), &JobsConfig::default(), 0);
        assert!(matches!(outcome, Outcome::NotStarted { retry_at: 1_000_000 }), "{outcome:?}");
    }
}
