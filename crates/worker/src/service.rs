//! The gRPC face of the engine: `rampart.v1.Worker`.

use crate::{Engine, JobSpec, PoolKind, RunError};
use rampart_proto::v1::{
    DescribeRequest, JobKindInfo, JobRequest, JobResult, JobStatus, PoolInfo, WorkerInfo, worker_server::Worker,
};
use std::{sync::Arc, time::Duration};
use tonic::{Request, Response, Status, metadata::MetadataValue};

/// The metadata key a full worker uses to tell the caller when to retry (gRFC A6).
pub const PUSHBACK_METADATA: &str = "grpc-retry-pushback-ms";

/// Serves `rampart.v1.Worker` from an [`Engine`].
#[derive(Clone)]
pub struct WorkerService {
    engine: Arc<Engine>,
    name: Arc<str>,
}

impl WorkerService {
    /// A service running jobs on `engine` and signing results as `name`.
    pub fn new(engine: Arc<Engine>, name: impl Into<Arc<str>>) -> Self {
        Self { engine, name: name.into() }
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

fn pool_kind(pool: PoolKind) -> rampart_proto::v1::PoolKind {
    match pool {
        PoolKind::Io => rampart_proto::v1::PoolKind::Io,
        PoolKind::Cpu => rampart_proto::v1::PoolKind::Cpu,
    }
}

/// Maps a job that did not run to an outcome onto the gRPC status the contract promises.
fn status_of(error: &RunError) -> Status {
    let message = error.to_string();
    match error {
        RunError::UnknownKind { .. } => Status::unimplemented(message),
        RunError::InvalidPayload(_) => Status::invalid_argument(message),
        RunError::TimedOut { .. } => Status::deadline_exceeded(message),
        RunError::PoolFull { retry_after, .. } => {
            let mut status = Status::resource_exhausted(message);
            let millis = MetadataValue::from(u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX));
            status.metadata_mut().insert(PUSHBACK_METADATA, millis);
            status
        }
    }
}

#[tonic::async_trait]
impl Worker for WorkerService {
    async fn execute(&self, request: Request<JobRequest>) -> Result<Response<JobResult>, Status> {
        let JobRequest { id, kind, payload, timeout_ms, .. } = request.into_inner();
        let timeout = (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms));
        let finished = match self.engine.run(JobSpec { kind, payload, timeout }).await {
            Ok(finished) => finished,
            Err(error) => {
                tracing::debug!(job = %id, %error, "job did not run");
                return Err(status_of(&error));
            }
        };
        let (status, output, error) = match finished.output {
            Ok(output) => (JobStatus::Succeeded, output, String::new()),
            Err(failure) => (JobStatus::Failed, Default::default(), failure.0),
        };
        Ok(Response::new(JobResult {
            id,
            status: status.into(),
            output,
            error,
            run_us: micros(finished.ran),
            queue_us: micros(finished.queued),
            worker: self.name.to_string(),
        }))
    }

    async fn describe(&self, _request: Request<DescribeRequest>) -> Result<Response<WorkerInfo>, Status> {
        let kinds = self
            .engine
            .registry()
            .handlers()
            .map(|handler| JobKindInfo { name: handler.kind().to_owned(), pool: pool_kind(handler.pool()).into() })
            .collect();
        let pools = self
            .engine
            .pools()
            .iter()
            .map(|pool| PoolInfo {
                kind: pool_kind(pool.kind).into(),
                concurrency: u32::try_from(pool.concurrency).unwrap_or(u32::MAX),
                queue_capacity: u32::try_from(pool.queue_capacity).unwrap_or(u32::MAX),
                busy: u32::try_from(pool.busy).unwrap_or(u32::MAX),
                queued: u32::try_from(pool.queued).unwrap_or(u32::MAX),
            })
            .collect();
        Ok(Response::new(WorkerInfo {
            name: self.name.to_string(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            kinds,
            pools,
        }))
    }
}
