//! Running one job on a worker pool: the gRPC transport of the call loop
//! ([`rampart_balance::call`]). A job is retried on another endpoint when it provably never ran
//! there, or when the request is idempotent, under the retry budget and with jittered backoff.

use super::{
    Link, Pool,
    channel::worker_client,
    stream::{DispatchStreams, NotSent, OnProgress, Streamed},
};
use rampart_balance::{
    call::{self, Retries, Transport, Verdict},
    config::RetryConfig,
    endpoint::Endpoint,
    retry::RetryBudget,
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
pub struct Executed {
    /// The job's outcome.
    pub result: JobResult,
    /// The endpoint that ran it.
    pub endpoint: Arc<Endpoint>,
}

/// Why a job got no outcome from any worker.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
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
pub struct ExecutePolicy<'a> {
    /// Whether running the job twice is harmless (GET, or an `Idempotency-Key`): then failures
    /// during the call are retried too, not only calls that never reached a worker.
    pub idempotent: bool,
    /// Attempts and backoff.
    pub retry: &'a RetryConfig,
    /// The budget retries draw from.
    pub budget: &'a RetryBudget,
    /// Where the job's progress reports go, if anywhere (a dispatch stream carries them; an
    /// `Execute` call does not).
    pub progress: Option<OnProgress>,
}

/// How close to its deadline a call must be for a worker's CANCELLED or DEADLINE_EXCEEDED to
/// count as the deadline passing.
const DEADLINE_SLACK: Duration = Duration::from_millis(20);

/// Pushback assumed when a full worker does not say how long to wait.
const DEFAULT_PUSHBACK: Duration = Duration::from_millis(100);

/// Runs `job` on an endpoint of `pool` before `deadline`, sent over the endpoint's dispatch
/// stream (many jobs per message, no call of its own; a worker without `Dispatch` gets an
/// `Execute` call instead). Every job goes this way: a job run now (`/api/process`) and each
/// attempt of a durable one.
///
/// Endpoints hear only what says something about them: transport failures, the gateway's own
/// timeouts and overload count against an endpoint (breaker, outlier ejection, balancing cost);
/// any answer about the job itself (it failed, the kind is unknown, the payload is wrong, its own
/// time limit passed) counts as a success.
pub async fn dispatch(
    pool: &Pool,
    job: &JobRequest,
    deadline: Instant,
    policy: &ExecutePolicy<'_>,
) -> Result<Executed, ExecuteError> {
    let mut transport = Grpc {
        job,
        idempotent: policy.idempotent,
        link: &pool.link,
        streams: &pool.streams,
        progress: policy.progress.as_ref(),
    };
    call::call(&pool.set, &mut transport, deadline, Retries::budgeted(policy.retry, policy.budget)).await
}

/// One job's calls over gRPC.
struct Grpc<'a> {
    job: &'a JobRequest,
    idempotent: bool,
    link: &'a Link,
    /// The pool's dispatch streams.
    streams: &'a DispatchStreams,
    progress: Option<&'a OnProgress>,
}

impl Transport for Grpc<'_> {
    type Request = tonic::Request<JobRequest>;
    type Sent = Result<JobResult, Status>;
    type Answer = Executed;
    type Error = ExecuteError;

    fn request(&mut self, _endpoint: &Endpoint) -> Result<Self::Request, ExecuteError> {
        Ok(tonic::Request::new(self.job.clone()))
    }

    fn send(
        &self,
        endpoint: &Arc<Endpoint>,
        mut request: Self::Request,
        remaining: Duration,
    ) -> impl Future<Output = Self::Sent> + Send {
        request.set_timeout(remaining);
        let client = worker_client(endpoint, self.link);
        // A client span, and its context in the call's metadata, only when traces are exported.
        let span = rampart_common::logging::tracing_enabled().then(|| call_span(self.job, endpoint));
        if let Some(span) = &span {
            let _entered = span.enter();
            rampart_common::trace_context::inject_into_metadata(request.metadata_mut());
        }
        let (streams, endpoint, link) = (self.streams, Arc::clone(endpoint), self.link);
        let progress = self.progress.cloned();
        let call = async move {
            let traceparent = rampart_common::trace_context::current_traceparent().unwrap_or_default();
            let job = request.get_ref().clone();
            match streams.run(&endpoint, link, job, remaining, traceparent, progress).await {
                Streamed::Answered(answer) => return answer,
                // A worker without `Dispatch`: a call of its own.
                Streamed::Unsupported => {}
            }
            let mut client = client.map_err(|error| Status::from_error(Box::new(error)))?;
            client.execute(request).await.map(tonic::Response::into_inner)
        };
        async move {
            match span {
                Some(span) => call.instrument(span).await,
                None => call.await,
            }
        }
    }

    fn classify(
        &self,
        endpoint: &Arc<Endpoint>,
        sent: Option<Self::Sent>,
        deadline: Instant,
    ) -> Verdict<Executed, ExecuteError> {
        let status = match sent {
            None => {
                return Verdict::EndpointFailure {
                    outcome: Err(ExecuteError::DeadlineExceeded),
                    pushback: None,
                    retry: None,
                };
            }
            Some(Ok(result)) => return Verdict::Answer(Ok(Executed { result, endpoint: Arc::clone(endpoint) })),
            Some(Err(status)) => status,
        };
        // The worker gave up on the deadline the gateway forwarded (tonic answers CANCELLED for
        // it); it is the same timeout as the gateway's own, a hair sooner.
        let deadline_passed = deadline.saturating_duration_since(Instant::now()) < DEADLINE_SLACK;
        if deadline_passed && matches!(status.code(), Code::Cancelled | Code::DeadlineExceeded) {
            return Verdict::EndpointFailure {
                outcome: Err(ExecuteError::DeadlineExceeded),
                pushback: None,
                retry: None,
            };
        }
        let worker = endpoint.url().to_owned();
        let error = WorkerError::from_status(&status);
        if let WorkerError::Full { pushback, .. } = &error {
            let pushback = pushback.unwrap_or(DEFAULT_PUSHBACK);
            return Verdict::EndpointFailure {
                outcome: Err(ExecuteError::Overloaded { retry_after: pushback }),
                pushback: Some(pushback),
                retry: Some("overloaded"),
            };
        }
        if never_reached(&status) {
            return Verdict::NeverReached {
                error: ExecuteError::NoHealthyBackend,
                blame: !matches!(error, WorkerError::Draining(_)),
                retry: true,
                reason: status.message().to_owned(),
            };
        }
        if error.counts_against_endpoint() {
            return Verdict::EndpointFailure {
                outcome: Err(ExecuteError::Worker { error, worker }),
                pushback: Some(DEFAULT_PUSHBACK),
                retry: self.idempotent.then_some("idempotent"),
            };
        }
        Verdict::Answer(Err(ExecuteError::Worker { error, worker }))
    }

    fn unavailable(&self, breaker_open: Option<Duration>) -> ExecuteError {
        match breaker_open {
            Some(retry_after) => ExecuteError::BreakerOpen { retry_after },
            None => ExecuteError::NoHealthyBackend,
        }
    }

    fn deadline_passed(&self) -> ExecuteError {
        ExecuteError::DeadlineExceeded
    }
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
        if error.is::<tonic::ConnectError>() || error.is::<NotSent>() {
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
    use rampart_balance::{
        config::{Balance, OutlierConfig},
        endpoint::Health,
        set::EndpointSet,
    };
    use rampart_common::breaker::{BreakerConfig, State};

    /// A loopback port with nothing listening on it.
    async fn closed_port() -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    }

    /// A pool of gRPC endpoints at `urls`, all believed healthy.
    fn healthy_set(urls: &[String], breaker: &BreakerConfig) -> Pool {
        let set = EndpointSet::new("test", Balance::RoundRobin, &OutlierConfig::default(), breaker);
        set.replace(urls).unwrap();
        for endpoint in set.snapshot().iter() {
            endpoint.health_tracker().record_check(true, 1, 1);
        }
        Pool {
            set: Arc::new(set),
            specs: Default::default(),
            link: Link { message_limit: 1 << 20, tls: None },
            streams: Default::default(),
            reported: crate::workers::kinds::Reported::default(),
        }
    }

    async fn run(set: &Pool, deadline: Instant) -> Result<Executed, ExecuteError> {
        let retry = RetryConfig::default();
        let budget = RetryBudget::new(&retry);
        dispatch(
            set,
            &JobRequest::default(),
            deadline,
            &ExecutePolicy { idempotent: false, retry: &retry, budget: &budget, progress: None },
        )
        .await
    }

    #[tokio::test]
    async fn a_refused_connection_is_known_not_to_have_reached_the_worker() {
        let endpoint = Endpoint::new(&format!("http://127.0.0.1:{}", closed_port().await), &BreakerConfig::default());
        let status = worker_client(&endpoint, &Link { message_limit: 1 << 20, tls: None })
            .unwrap()
            .execute(JobRequest::default())
            .await
            .unwrap_err();
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
        assert!(matches!(error, ExecuteError::NoHealthyBackend), "{error:?}");
        assert!(set.set.snapshot().iter().all(|endpoint| endpoint.health() == Health::Unhealthy));
    }

    #[tokio::test]
    async fn refused_connections_open_the_breaker_and_then_it_answers_at_once() {
        let config = BreakerConfig { consecutive_failures: 2, ..BreakerConfig::default() };
        let set = healthy_set(&[format!("http://127.0.0.1:{}", closed_port().await)], &config);
        let deadline = Instant::now() + Duration::from_secs(5);
        for _ in 0..2 {
            // Health would skip the endpoint after the first refusal; keep it eligible so the
            // breaker is what decides.
            set.set.snapshot()[0].health_tracker().record_check(true, 1, 1);
            let error = run(&set, deadline).await.unwrap_err();
            assert!(matches!(error, ExecuteError::NoHealthyBackend), "{error:?}");
        }
        assert_eq!(set.set.snapshot()[0].breaker_snapshot().state, State::Open);
        set.set.snapshot()[0].health_tracker().record_check(true, 1, 1);
        let error = run(&set, deadline).await.unwrap_err();
        let ExecuteError::BreakerOpen { retry_after } = error else { panic!("{error:?}") };
        assert!(retry_after > Duration::from_secs(3) && retry_after <= Duration::from_secs(6), "{retry_after:?}");
    }

    #[tokio::test]
    async fn a_spent_budget_contacts_no_worker() {
        let set = healthy_set(&["http://127.0.0.1:9".to_owned()], &BreakerConfig::default());
        let error = run(&set, Instant::now()).await.unwrap_err();
        assert!(matches!(error, ExecuteError::DeadlineExceeded), "{error:?}");
        assert_eq!(set.set.snapshot()[0].health(), Health::Healthy);
        assert_eq!(set.set.snapshot()[0].breaker_snapshot().window_failures, 0);
    }
}
