//! The gRPC face of the engine: `rampart.v1.Worker`.

use crate::{
    Engine, JobSpec, PoolKind, Priority, RunError,
    observe::{kind_label, record_job},
};
use rampart_proto::WorkerError;
use rampart_proto::v1::{
    self as proto, DescribeRequest, DispatchRequest, JobKindInfo, JobRequest, JobResult, JobStatus, PoolInfo,
    WorkerInfo, worker_server::Worker,
};
use std::{sync::Arc, time::Duration};
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

/// How much sooner than the caller's `grpc-timeout` the worker gives up on a job (plus 1% of the
/// timeout), so that its `DEADLINE_EXCEEDED` usually reaches the caller before the caller's own
/// timer fires.
const ANSWER_MARGIN: Duration = Duration::from_millis(10);

/// Serves `rampart.v1.Worker` from an [`Engine`].
#[derive(Clone)]
pub struct WorkerService {
    engine: Arc<Engine>,
    name: Arc<str>,
    message_limit: usize,
}

impl WorkerService {
    /// A service running jobs on `engine` and signing results as `name`, reading and writing
    /// messages up to [`rampart_proto::limits::DEFAULT_MESSAGE_BYTES`].
    pub fn new(engine: Arc<Engine>, name: impl Into<Arc<str>>) -> Self {
        Self { engine, name: name.into(), message_limit: rampart_proto::limits::DEFAULT_MESSAGE_BYTES }
    }

    /// The same service with messages up to `bytes` (payloads and results must fit).
    pub fn with_message_limit(self, bytes: usize) -> Self {
        Self { message_limit: bytes, ..self }
    }

    /// The largest message it reads or writes.
    pub fn message_limit(&self) -> usize {
        self.message_limit
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

fn pool_kind(pool: PoolKind) -> proto::PoolKind {
    match pool {
        PoolKind::Io => proto::PoolKind::Io,
        PoolKind::Cpu => proto::PoolKind::Cpu,
    }
}

fn priority(priority: proto::Priority) -> Priority {
    match priority {
        proto::Priority::High => Priority::High,
        proto::Priority::Low => Priority::Low,
        proto::Priority::Normal | proto::Priority::Unspecified => Priority::Normal,
    }
}

/// Reads a `grpc-timeout` value: up to 8 digits and a unit (H, M, S, m, u, n).
pub(crate) fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.checked_mul(3600)?),
        "M" => Duration::from_secs(amount.checked_mul(60)?),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// The job's time limit: the sooner of its own `timeout_ms` and the call's deadline.
fn time_limit(timeout_ms: u64, grpc_timeout: Option<Duration>) -> Option<Duration> {
    let own = (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms));
    let call = grpc_timeout.map(|timeout| timeout.saturating_sub(ANSWER_MARGIN + timeout / 100));
    match (own, call) {
        (Some(own), Some(call)) => Some(own.min(call)),
        (limit, None) | (None, limit) => limit,
    }
}

/// Maps a job that did not run to an outcome onto the contract's [`WorkerError`].
fn status_of(error: &RunError) -> Status {
    WorkerError::from(error).into_status()
}

impl WorkerService {
    /// Runs one job under `call_limit` (what is left of the caller's wait) inside `span`, and
    /// answers as `Execute` does: the job's result, or the status for a job that did not run
    /// to an outcome.
    pub(crate) async fn run_job(
        &self,
        job: JobRequest,
        call_limit: Option<Duration>,
        span: Option<tracing::Span>,
        progress: Option<crate::progress::ProgressSink>,
    ) -> Result<JobResult, Status> {
        let kind = kind_label(&self.engine, &job.kind);
        let spec = JobSpec {
            priority: priority(job.priority()),
            timeout: time_limit(job.timeout_ms, call_limit),
            kind: job.kind,
            payload: job.payload,
            progress,
        };
        let ran = match span {
            Some(span) => self.engine.run(spec).instrument(span).await,
            None => self.engine.run(spec).await,
        };
        record_job(kind, ran.as_ref());
        let finished = match ran {
            Ok(finished) => finished,
            Err(error) => {
                tracing::debug!(job = %job.id, %error, "job did not run to an outcome");
                return Err(status_of(&error));
            }
        };
        let (status, output, error) = match finished.output {
            Ok(output) => (JobStatus::Succeeded, output, String::new()),
            Err(failure) => (JobStatus::Failed, Default::default(), failure.0),
        };
        Ok(JobResult {
            id: job.id,
            status: status.into(),
            output,
            error,
            run_us: micros(finished.ran),
            queue_us: micros(finished.queued),
            worker: self.name.to_string(),
        })
    }

    /// The engine it runs jobs on.
    pub(crate) fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }
}

/// A server span for one job, when traces are exported (the job path stays free of them
/// otherwise); `adopt` makes it a child of the caller's trace context.
pub(crate) fn job_span(job: &JobRequest, adopt: impl FnOnce(&tracing::Span)) -> Option<tracing::Span> {
    rampart_common::logging::tracing_enabled().then(|| {
        let span = tracing::info_span!("job.execute", job.id = %job.id, job.kind = %job.kind, job.attempt = job.attempt, otel.kind = "server");
        adopt(&span);
        span
    })
}

#[tonic::async_trait]
impl Worker for WorkerService {
    type DispatchStream = crate::dispatch::Replies;

    async fn execute(&self, request: Request<JobRequest>) -> Result<Response<JobResult>, Status> {
        let grpc_timeout =
            request.metadata().get("grpc-timeout").and_then(|value| value.to_str().ok()).and_then(parse_grpc_timeout);
        let span = job_span(request.get_ref(), |span| {
            rampart_common::trace_context::adopt_from_metadata(span, request.metadata());
        });
        self.run_job(request.into_inner(), grpc_timeout, span, None).await.map(Response::new)
    }

    async fn dispatch(
        &self,
        request: Request<tonic::Streaming<DispatchRequest>>,
    ) -> Result<Response<Self::DispatchStream>, Status> {
        Ok(Response::new(crate::dispatch::serve(self.clone(), request.into_inner())))
    }

    async fn describe(&self, _request: Request<DescribeRequest>) -> Result<Response<WorkerInfo>, Status> {
        let kinds = self
            .engine
            .registry()
            .handlers()
            .map(|handler| JobKindInfo { name: handler.kind().to_owned(), pool: pool_kind(handler.pool()).into() })
            .collect();
        let saturate = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let pools = self
            .engine
            .pools()
            .iter()
            .map(|pool| PoolInfo {
                kind: pool_kind(pool.kind).into(),
                concurrency: saturate(pool.concurrency),
                queue_capacity: saturate(pool.queue_capacity),
                busy: saturate(pool.busy),
                queued: saturate(pool.queued),
                abandoned: pool.abandoned,
                abandoned_running: saturate(pool.abandoned_running),
                accepting: pool.accepting,
            })
            .collect();
        Ok(Response::new(WorkerInfo {
            name: self.name.to_string(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            kinds,
            pools,
            max_message_bytes: self.message_limit as u64,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_grpc_timeout("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "5", "S", "123456789S", "5x", "-5S", "1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_sooner_limit_wins() {
        let call = Some(Duration::from_millis(500));
        assert_eq!(time_limit(100, call), Some(Duration::from_millis(100)));
        assert_eq!(time_limit(0, call), Some(Duration::from_millis(485)));
        assert_eq!(time_limit(1000, call), Some(Duration::from_millis(485)));
        assert_eq!(time_limit(1000, None), Some(Duration::from_secs(1)));
        assert_eq!(time_limit(0, None), None);
    }

    #[test]
    fn errors_for_jobs_never_started_say_so() {
        let full = status_of(&RunError::PoolFull { pool: PoolKind::Cpu, retry_after: Duration::from_millis(100) });
        assert_eq!(full.metadata().get(rampart_proto::metadata::NOT_STARTED).unwrap(), "1");
        assert_eq!(full.metadata().get(rampart_proto::metadata::RETRY_PUSHBACK_MS).unwrap(), "100");
        let draining = status_of(&RunError::Draining);
        assert_eq!(draining.code(), tonic::Code::Unavailable);
        assert!(draining.metadata().get(rampart_proto::metadata::NOT_STARTED).is_some());
        let cancelled = status_of(&RunError::Cancelled { abandoned: false });
        assert_eq!(cancelled.code(), tonic::Code::Aborted);
        assert!(cancelled.metadata().get(rampart_proto::metadata::NOT_STARTED).is_none());
    }
}
