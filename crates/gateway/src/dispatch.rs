//! Sending one job to a worker: pick an endpoint whose breaker admits the call, call it within
//! the request's deadline, and move on to another endpoint only when the job provably did not
//! run on the first.

use crate::backends::{Backend, Backends, Health};
use rampart_proto::v1::{JobRequest, JobResult};
use std::{
    error::Error as _,
    sync::Arc,
    time::{Duration, Instant},
};
use tonic::{Code, Status};

/// A worker's answer and who gave it.
#[derive(Debug)]
pub struct Dispatched {
    /// The job's outcome.
    pub result: JobResult,
    /// The endpoint that ran it.
    pub backend: Arc<Backend>,
}

/// Why a job got no outcome from any worker.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// Every endpoint is down or refused the connection.
    #[error("no worker is reachable")]
    NoHealthyBackend,
    /// Every endpoint not down has an open circuit breaker.
    #[error("the circuit breaker of every reachable worker is open")]
    BreakerOpen {
        /// When the first breaker lets a probe through.
        retry_after: Duration,
    },
    /// Every reachable endpoint answered that it is full.
    #[error("every reachable worker is full")]
    Overloaded {
        /// The shortest pushback the workers asked for.
        retry_after: Duration,
    },
    /// The request's time budget ran out.
    #[error("the request's deadline passed")]
    DeadlineExceeded,
    /// A worker answered with an error that another worker would give too, or failed during the
    /// call so the job may have run; either way it is not retried.
    #[error("worker {worker} answered {}: {}", status.code(), status.message())]
    Worker {
        /// What the worker answered.
        status: Status,
        /// The endpoint's URL.
        worker: String,
    },
}

/// Pushback assumed when a full worker does not say how long to wait.
const DEFAULT_PUSHBACK: Duration = Duration::from_millis(100);

/// Why endpoints were passed over, to name the right error when none answered.
#[derive(Default)]
struct Skipped {
    overloaded: Option<Duration>,
    breaker_open: Option<Duration>,
}

fn shortest(current: Option<Duration>, candidate: Duration) -> Option<Duration> {
    Some(current.map_or(candidate, |shortest| shortest.min(candidate)))
}

/// Runs `job` on one of `backends` before `deadline`.
///
/// An endpoint is skipped for the next one when its breaker refuses the call, or when the job
/// cannot have reached it: the connection was refused or could not be made, the HTTP/2 stream
/// was refused, or the worker answered `RESOURCE_EXHAUSTED`. Any other failure is final, because
/// the job may have run.
///
/// Breakers hear only what says something about the endpoint: transport failures, timeouts and
/// overload count as failures; any answer the worker gives about the job itself (it failed, the
/// kind is unknown, the payload is wrong, its own time limit passed) is a success.
pub async fn dispatch(backends: &Backends, job: &JobRequest, deadline: Instant) -> Result<Dispatched, DispatchError> {
    let mut skipped = Skipped::default();
    for backend in backends.candidates() {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(DispatchError::DeadlineExceeded);
        }
        let permit = match backend.breaker().try_acquire() {
            Ok(permit) => permit,
            Err(rejected) => {
                skipped.breaker_open = shortest(skipped.breaker_open, rejected.retry_after);
                continue;
            }
        };
        let mut request = tonic::Request::new(job.clone());
        request.set_timeout(remaining);
        let answer = match tokio::time::timeout(remaining, backend.client().execute(request)).await {
            Ok(answer) => answer,
            Err(_elapsed) => {
                permit.failure();
                return Err(DispatchError::DeadlineExceeded);
            }
        };
        match answer {
            Ok(response) => {
                permit.success();
                if backend.health() != Health::Up {
                    backend.set_health(Health::Up);
                }
                return Ok(Dispatched { result: response.into_inner(), backend: Arc::clone(backend) });
            }
            Err(status) if status.code() == Code::ResourceExhausted => {
                permit.failure();
                skipped.overloaded = shortest(skipped.overloaded, pushback(&status).unwrap_or(DEFAULT_PUSHBACK));
            }
            Err(status) if never_reached(&status) => {
                // A draining worker is healthy, just leaving: no mark against its breaker.
                if is_draining(&status) {
                    drop(permit)
                } else {
                    permit.failure()
                }
                if backend.set_health(Health::Down) != Health::Down {
                    tracing::warn!(worker = backend.url(), reason = %status.message(), "worker unreachable, trying another");
                }
            }
            Err(status) => {
                if counts_against_endpoint(status.code()) {
                    permit.failure();
                } else {
                    permit.success();
                }
                return Err(DispatchError::Worker { status, worker: backend.url().to_owned() });
            }
        }
    }
    Err(match skipped {
        Skipped { overloaded: Some(retry_after), .. } => DispatchError::Overloaded { retry_after },
        Skipped { breaker_open: Some(retry_after), .. } => DispatchError::BreakerOpen { retry_after },
        Skipped { .. } => DispatchError::NoHealthyBackend,
    })
}

/// Whether a gRPC error says the endpoint (not the job) is in trouble.
fn counts_against_endpoint(code: Code) -> bool {
    matches!(code, Code::Unavailable | Code::Unknown | Code::Internal | Code::DataLoss | Code::ResourceExhausted)
}

/// The `grpc-retry-pushback-ms` a worker sent with its answer.
fn pushback(status: &Status) -> Option<Duration> {
    let millis = status.metadata().get(rampart_proto::metadata::RETRY_PUSHBACK_MS)?.to_str().ok()?.parse().ok()?;
    Some(Duration::from_millis(millis))
}

/// True when the worker said it is draining and did not start the job.
fn is_draining(status: &Status) -> bool {
    status.code() == Code::Unavailable && status.metadata().get(rampart_proto::metadata::NOT_STARTED).is_some()
}

/// True when the job certainly did not start on the worker, so another may run it: no
/// connection could be made; the request was never sent because the connection closed first
/// (hyper reports that as cancelled, with the request unsent); the worker refused the HTTP/2
/// stream (RFC 9113 §8.7) or its GOAWAY excluded it (§6.8); or the worker answered that it is
/// draining and did not start it.
pub fn never_reached(status: &Status) -> bool {
    if is_draining(status) {
        return true;
    }
    let mut source = status.source();
    while let Some(error) = source {
        if error.is::<tonic::ConnectError>() {
            return true;
        }
        if let Some(hyper) = error.downcast_ref::<hyper::Error>()
            && hyper.is_canceled()
        {
            return true;
        }
        if let Some(h2) = error.downcast_ref::<h2::Error>() {
            let refused = h2.is_reset() && h2.reason() == Some(h2::Reason::REFUSED_STREAM);
            // A stream above the last one a peer's GOAWAY says it processed (RFC 9113 §6.8), or
            // opened after that GOAWAY, never reached the worker.
            let past_go_away = h2.is_go_away() && h2.is_remote();
            return refused || past_go_away;
        }
        source = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_common::breaker::{BreakerConfig, State};

    /// A loopback port with nothing listening on it.
    async fn closed_port() -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    }

    fn backends(urls: &[String], breaker: &BreakerConfig) -> Backends {
        Backends::new(urls, breaker).unwrap()
    }

    #[tokio::test]
    async fn a_refused_connection_is_known_not_to_have_reached_the_worker() {
        let backend =
            Backend::new(&format!("http://127.0.0.1:{}", closed_port().await), &BreakerConfig::default()).unwrap();
        let status = backend.client().execute(JobRequest::default()).await.unwrap_err();
        assert!(never_reached(&status), "{status:?}");
    }

    #[test]
    fn other_failures_are_not_assumed_unreached() {
        assert!(!never_reached(&Status::unavailable("connection reset")));
        assert!(!never_reached(&Status::internal("boom")));
        let mut full = Status::resource_exhausted("full");
        full.metadata_mut().insert(rampart_proto::metadata::NOT_STARTED, "1".parse().unwrap());
        assert!(!never_reached(&full), "full workers are handled as overload, not as unreachable");
    }

    #[test]
    fn a_draining_worker_that_did_not_start_the_job_counts_as_unreached() {
        let mut draining = Status::unavailable("the worker is shutting down");
        draining.metadata_mut().insert(rampart_proto::metadata::NOT_STARTED, "1".parse().unwrap());
        assert!(never_reached(&draining));
    }

    #[test]
    fn only_endpoint_trouble_counts_against_the_breaker() {
        for code in [Code::Unavailable, Code::Internal, Code::Unknown, Code::ResourceExhausted] {
            assert!(counts_against_endpoint(code), "{code:?}");
        }
        for code in [Code::InvalidArgument, Code::Unimplemented, Code::DeadlineExceeded, Code::NotFound] {
            assert!(!counts_against_endpoint(code), "{code:?}");
        }
    }

    #[tokio::test]
    async fn with_every_endpoint_refusing_the_answer_is_no_healthy_backend() {
        let urls =
            [format!("http://127.0.0.1:{}", closed_port().await), format!("http://127.0.0.1:{}", closed_port().await)];
        let backends = backends(&urls, &BreakerConfig::default());
        let deadline = Instant::now() + Duration::from_secs(5);
        let error = dispatch(&backends, &JobRequest::default(), deadline).await.unwrap_err();
        assert!(matches!(error, DispatchError::NoHealthyBackend), "{error:?}");
        assert!(backends.all().iter().all(|backend| backend.health() == Health::Down));
    }

    #[tokio::test]
    async fn refused_connections_open_the_breaker_and_then_it_answers_at_once() {
        let config = BreakerConfig { consecutive_failures: 2, ..BreakerConfig::default() };
        let backends = backends(&[format!("http://127.0.0.1:{}", closed_port().await)], &config);
        let deadline = Instant::now() + Duration::from_secs(5);
        for _ in 0..2 {
            // Health would skip the endpoint after the first refusal; keep it eligible so the
            // breaker is what decides.
            backends.all()[0].set_health(Health::Unknown);
            let error = dispatch(&backends, &JobRequest::default(), deadline).await.unwrap_err();
            assert!(matches!(error, DispatchError::NoHealthyBackend), "{error:?}");
        }
        assert_eq!(backends.all()[0].breaker().state(), State::Open);
        backends.all()[0].set_health(Health::Unknown);
        let error = dispatch(&backends, &JobRequest::default(), deadline).await.unwrap_err();
        let DispatchError::BreakerOpen { retry_after } = error else { panic!("{error:?}") };
        assert!(retry_after > Duration::from_secs(3) && retry_after <= Duration::from_secs(6), "{retry_after:?}");
    }

    #[tokio::test]
    async fn a_spent_budget_contacts_no_worker() {
        let backends = backends(&["http://127.0.0.1:9".to_owned()], &BreakerConfig::default());
        let error = dispatch(&backends, &JobRequest::default(), Instant::now()).await.unwrap_err();
        assert!(matches!(error, DispatchError::DeadlineExceeded), "{error:?}");
        assert_eq!(backends.all()[0].health(), Health::Unknown);
    }
}
