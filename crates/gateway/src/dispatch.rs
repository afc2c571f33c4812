//! Sending one job to a worker pool: pick an endpoint (P2C or round robin), call it within the
//! request's deadline, and retry on another endpoint when the job provably never ran there, or
//! when the request is idempotent, under the retry budget and with jittered backoff.

use crate::{
    clock,
    config::RetryConfig,
    endpoint::Endpoint,
    endpoint_set::EndpointSet,
    retry::{RetryBudget, backoff},
};
use rampart_proto::{
    WorkerError,
    v1::{JobRequest, JobResult},
};
use std::{
    error::Error as _,
    sync::Arc,
    time::{Duration, Instant},
};
use tonic::{Code, Status};
use tracing::Instrument as _;

/// A worker's answer and who gave it.
#[derive(Debug)]
pub struct Dispatched {
    /// The job's outcome.
    pub result: JobResult,
    /// The endpoint that ran it.
    pub endpoint: Arc<Endpoint>,
}

/// Why a job got no outcome from any worker.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// No endpoint is healthy (or every one refused the connection).
    #[error("no worker is reachable")]
    NoHealthyBackend,
    /// Every healthy endpoint has an open circuit breaker.
    #[error("the circuit breaker of every reachable worker is open")]
    BreakerOpen {
        /// When the first breaker lets a probe through.
        retry_after: Duration,
    },
    /// Every endpoint tried answered that it is full.
    #[error("every reachable worker is full")]
    Overloaded {
        /// The shortest pushback the workers asked for.
        retry_after: Duration,
    },
    /// The request's time budget ran out.
    #[error("the request's deadline passed")]
    DeadlineExceeded,
    /// A worker answered with an error that another worker would give too, or failed during the
    /// call so the job may have run; either way it is not retried (unless idempotent).
    #[error("worker {worker} answered: {error}")]
    Worker {
        /// What the worker answered, as the contract reads it.
        error: WorkerError,
        /// The endpoint's URL.
        worker: String,
    },
}

/// How one request may be retried.
pub struct DispatchPolicy<'a> {
    /// Whether running the job twice is harmless (GET, or an `Idempotency-Key`): then failures
    /// during the call are retried too, not only calls that never reached a worker.
    pub idempotent: bool,
    /// Attempts and backoff.
    pub retry: &'a RetryConfig,
    /// The budget retries draw from.
    pub budget: &'a RetryBudget,
}

/// How close to its deadline a call must be for a worker's CANCELLED or DEADLINE_EXCEEDED to
/// count as the deadline passing.
const DEADLINE_SLACK: Duration = Duration::from_millis(20);

/// Pushback assumed when a full worker does not say how long to wait.
const DEFAULT_PUSHBACK: Duration = Duration::from_millis(100);

/// What one attempt came to.
enum Attempt {
    Done(Result<Dispatched, DispatchError>),
    /// Worth another endpoint: why, and what to answer if no retry happens.
    Retry(&'static str, DispatchError),
}

/// Runs `job` on an endpoint of `set` before `deadline`.
///
/// Endpoints hear only what says something about them: transport failures, the gateway's own
/// timeouts and overload count against an endpoint (breaker, outlier ejection, balancing cost);
/// any answer about the job itself (it failed, the kind is unknown, the payload is wrong, its own
/// time limit passed) counts as a success.
pub async fn dispatch(
    set: &EndpointSet,
    job: &JobRequest,
    deadline: Instant,
    policy: &DispatchPolicy<'_>,
) -> Result<Dispatched, DispatchError> {
    policy.budget.deposit();
    let mut tried: Vec<Arc<Endpoint>> = Vec::new();
    let mut breaker_open: Option<Duration> = None;
    let mut last_error: Option<DispatchError> = None;
    let mut attempts = 0_u32;
    loop {
        if deadline <= Instant::now() {
            return Err(DispatchError::DeadlineExceeded);
        }
        let Some(endpoint) = set.pick(&tried) else {
            return Err(last_error.unwrap_or(match breaker_open {
                Some(retry_after) => DispatchError::BreakerOpen { retry_after },
                None => DispatchError::NoHealthyBackend,
            }));
        };
        // The call is slow only once its own budget has passed unanswered.
        let permit = match endpoint.breaker().try_acquire_within(deadline.saturating_duration_since(Instant::now())) {
            Ok(permit) => permit,
            Err(rejected) => {
                breaker_open =
                    Some(breaker_open.map_or(rejected.retry_after, |soonest| soonest.min(rejected.retry_after)));
                tried.push(Arc::clone(&endpoint));
                continue;
            }
        };
        if attempts > 0 {
            if !policy.budget.try_withdraw() {
                metrics::counter!("rampart_rejections_total", "reason" => "retry_budget").increment(1);
                return Err(last_error.unwrap_or(DispatchError::NoHealthyBackend));
            }
            let wait = backoff(policy.retry, attempts).min(deadline.saturating_duration_since(Instant::now()));
            tokio::time::sleep(wait).await;
        }
        attempts += 1;
        let attempt_label = if attempts == 1 { "first" } else { "retry" };
        metrics::counter!("rampart_attempts_total", "pool" => set_label(set), "attempt" => attempt_label).increment(1);
        match attempt(set, &endpoint, permit, job, deadline, policy.idempotent).await {
            Attempt::Done(outcome) => return outcome,
            Attempt::Retry(reason, error) => {
                if attempts >= policy.retry.max_attempts {
                    return Err(error);
                }
                metrics::counter!("rampart_retries_total", "pool" => set_label(set), "reason" => reason).increment(1);
                last_error = Some(error);
                tried.push(Arc::clone(&endpoint));
            }
        }
    }
}

fn set_label(set: &EndpointSet) -> &'static str {
    rampart_common::metrics::intern(set.name())
}

async fn attempt(
    set: &EndpointSet,
    endpoint: &Arc<Endpoint>,
    permit: rampart_common::breaker::Permit<'_>,
    job: &JobRequest,
    deadline: Instant,
    idempotent: bool,
) -> Attempt {
    let Some(mut client) = endpoint.worker_client() else {
        return Attempt::Done(Err(DispatchError::NoHealthyBackend));
    };
    let remaining = deadline.saturating_duration_since(Instant::now());
    let mut request = tonic::Request::new(job.clone());
    request.set_timeout(remaining);
    // A client span, and its context in the call's metadata, only when traces are exported.
    let span = rampart_common::logging::tracing_enabled().then(|| call_span(job, endpoint));
    if let Some(span) = &span {
        let _entered = span.enter();
        rampart_common::trace_context::inject_into_metadata(request.metadata_mut());
    }
    let started = clock::now();
    let in_flight = endpoint.load().start(started);
    let call = tokio::time::timeout(remaining, client.execute(request));
    let answer = match span {
        Some(span) => call.instrument(span).await,
        None => call.await,
    };
    drop(in_flight);
    let now = clock::now();
    let failed = |reason| {
        endpoint.load().observe_failure(now);
        set.record_failure(endpoint);
        reason
    };
    let status = match answer {
        Err(_elapsed) => {
            permit.failure();
            failed(());
            return Attempt::Done(Err(DispatchError::DeadlineExceeded));
        }
        Ok(Ok(response)) => {
            permit.success();
            endpoint.load().observe(now.saturating_sub(started), now);
            endpoint.record_success();
            return Attempt::Done(Ok(Dispatched { result: response.into_inner(), endpoint: Arc::clone(endpoint) }));
        }
        Ok(Err(status)) => status,
    };
    // The worker gave up on the deadline the gateway forwarded (tonic answers CANCELLED for it);
    // it is the same timeout as the gateway's own, a hair sooner.
    let deadline_passed = deadline.saturating_duration_since(Instant::now()) < DEADLINE_SLACK;
    if deadline_passed && matches!(status.code(), Code::Cancelled | Code::DeadlineExceeded) {
        permit.failure();
        failed(());
        return Attempt::Done(Err(DispatchError::DeadlineExceeded));
    }
    let worker = endpoint.url().to_owned();
    let error = WorkerError::from_status(&status);
    if let WorkerError::Full { pushback, .. } = &error {
        permit.failure();
        let pushback = pushback.unwrap_or(DEFAULT_PUSHBACK);
        endpoint.load().penalize_until(now + clock::nanos(pushback));
        failed(());
        return Attempt::Retry("overloaded", DispatchError::Overloaded { retry_after: pushback });
    }
    if never_reached(&status) {
        if matches!(error, WorkerError::Draining(_)) {
            drop(permit);
        } else {
            permit.failure();
            failed(());
        }
        if endpoint.health_tracker().mark_unreachable() != crate::endpoint::Health::Unhealthy {
            tracing::warn!(worker, reason = %status.message(), "worker unreachable, trying another");
        }
        return Attempt::Retry("unreached", DispatchError::NoHealthyBackend);
    }
    if error.counts_against_endpoint() {
        permit.failure();
        endpoint.load().penalize_until(now + clock::nanos(DEFAULT_PUSHBACK));
        failed(());
        if idempotent {
            return Attempt::Retry("idempotent", DispatchError::Worker { error, worker });
        }
    } else {
        permit.success();
        endpoint.load().observe(now.saturating_sub(started), now);
        endpoint.record_success();
    }
    Attempt::Done(Err(DispatchError::Worker { error, worker }))
}

/// A client span for one call to a worker.
fn call_span(job: &JobRequest, endpoint: &Endpoint) -> tracing::Span {
    tracing::info_span!(
        "worker.execute",
        otel.kind = "client",
        rpc.system = "grpc",
        rpc.method = "rampart.v1.Worker/Execute",
        server.address = %endpoint.url(),
        job.id = %job.id,
        job.kind = %job.kind,
    )
}

/// True when the job certainly did not start on the worker, so another may run it: no
/// connection could be made; the request was never sent because the connection closed first
/// (hyper reports that as cancelled, with the request unsent); the worker refused the HTTP/2
/// stream (RFC 9113 §8.7) or its GOAWAY excluded it (§6.8); or the worker answered that it is
/// draining and did not start it.
pub fn never_reached(status: &Status) -> bool {
    if matches!(WorkerError::from_status(status), WorkerError::Draining(_)) {
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
    use crate::{
        config::{Balance, OutlierConfig},
        endpoint::Health,
        endpoint_set::EndpointKind,
    };
    use rampart_common::breaker::{BreakerConfig, State};

    /// A loopback port with nothing listening on it.
    async fn closed_port() -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    }

    /// A set of gRPC endpoints at `urls`, all believed healthy.
    fn healthy_set(urls: &[String], breaker: &BreakerConfig) -> EndpointSet {
        let set = EndpointSet::new("test", EndpointKind::Grpc, Balance::RoundRobin, &OutlierConfig::default(), breaker);
        set.replace(urls).unwrap();
        for endpoint in set.snapshot().iter() {
            endpoint.health_tracker().record_check(true, 1, 1);
        }
        set
    }

    async fn run(set: &EndpointSet, deadline: Instant) -> Result<Dispatched, DispatchError> {
        let retry = RetryConfig::default();
        let budget = RetryBudget::new(&retry);
        dispatch(
            set,
            &JobRequest::default(),
            deadline,
            &DispatchPolicy { idempotent: false, retry: &retry, budget: &budget },
        )
        .await
    }

    #[tokio::test]
    async fn a_refused_connection_is_known_not_to_have_reached_the_worker() {
        let endpoint =
            Endpoint::grpc(&format!("http://127.0.0.1:{}", closed_port().await), &BreakerConfig::default(), 1 << 20)
                .unwrap();
        let status = endpoint.worker_client().unwrap().execute(JobRequest::default()).await.unwrap_err();
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
        let counts = |code| WorkerError::from_status(&Status::new(code, "x")).counts_against_endpoint();
        for code in [Code::Unavailable, Code::Internal, Code::Unknown, Code::ResourceExhausted] {
            assert!(counts(code), "{code:?}");
        }
        for code in [Code::InvalidArgument, Code::Unimplemented, Code::DeadlineExceeded, Code::NotFound] {
            assert!(!counts(code), "{code:?}");
        }
    }

    #[tokio::test]
    async fn with_every_endpoint_refusing_the_answer_is_no_healthy_backend() {
        let urls =
            [format!("http://127.0.0.1:{}", closed_port().await), format!("http://127.0.0.1:{}", closed_port().await)];
        let set = healthy_set(&urls, &BreakerConfig::default());
        let error = run(&set, Instant::now() + Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(error, DispatchError::NoHealthyBackend), "{error:?}");
        assert!(set.snapshot().iter().all(|endpoint| endpoint.health() == Health::Unhealthy));
    }

    #[tokio::test]
    async fn refused_connections_open_the_breaker_and_then_it_answers_at_once() {
        let config = BreakerConfig { consecutive_failures: 2, ..BreakerConfig::default() };
        let set = healthy_set(&[format!("http://127.0.0.1:{}", closed_port().await)], &config);
        let deadline = Instant::now() + Duration::from_secs(5);
        for _ in 0..2 {
            // Health would skip the endpoint after the first refusal; keep it eligible so the
            // breaker is what decides.
            set.snapshot()[0].health_tracker().record_check(true, 1, 1);
            let error = run(&set, deadline).await.unwrap_err();
            assert!(matches!(error, DispatchError::NoHealthyBackend), "{error:?}");
        }
        assert_eq!(set.snapshot()[0].breaker().state(), State::Open);
        set.snapshot()[0].health_tracker().record_check(true, 1, 1);
        let error = run(&set, deadline).await.unwrap_err();
        let DispatchError::BreakerOpen { retry_after } = error else { panic!("{error:?}") };
        assert!(retry_after > Duration::from_secs(3) && retry_after <= Duration::from_secs(6), "{retry_after:?}");
    }

    #[tokio::test]
    async fn a_spent_budget_contacts_no_worker() {
        let set = healthy_set(&["http://127.0.0.1:9".to_owned()], &BreakerConfig::default());
        let error = run(&set, Instant::now()).await.unwrap_err();
        assert!(matches!(error, DispatchError::DeadlineExceeded), "{error:?}");
        assert_eq!(set.snapshot()[0].health(), Health::Healthy);
        assert_eq!(set.snapshot()[0].breaker().snapshot().window_failures, 0);
    }
}
