//! The contract a job kind implements to run on a Rampart worker.

use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};
use std::{future::Future, pin::Pin};
use tokio_util::sync::CancellationToken;

/// Which pool a job kind runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PoolKind {
    /// Async tasks on the runtime, for jobs that mostly wait (network, disk, timers).
    Io,
    /// Dedicated threads sized to the cores, for jobs that compute. Never the runtime's threads.
    Cpu,
}

impl PoolKind {
    /// The pool's name in logs, errors and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Io => "io",
            Self::Cpu => "cpu",
        }
    }
}

/// What a finished job produced: its JSON output, or why it failed by its own logic.
pub type JobOutput = Result<Bytes, JobFailure>;

/// A job that ran and failed by its own logic. This is an answer about the job, not a fault of
/// the worker: the gateway reports it to the caller and does not count it against the endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JobFailure(pub String);

impl JobFailure {
    /// A failure with the given reason.
    pub fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}

/// Asynchronous work for the I/O pool.
pub type IoWork = Pin<Box<dyn Future<Output = JobOutput> + Send + 'static>>;

/// Blocking work for the CPU pool. It receives the job's cancellation token and should check it
/// between chunks of computation so that a cancelled or timed-out job stops promptly.
pub type CpuWork = Box<dyn FnOnce(&CancellationToken) -> JobOutput + Send + 'static>;

/// A prepared job, ready to be scheduled on the pool its variant names.
pub enum Work {
    /// Runs as a task on the I/O pool; dropping it cancels the job.
    Io(IoWork),
    /// Runs on a CPU pool thread.
    Cpu(CpuWork),
}

impl Work {
    /// Wraps an async block as I/O work.
    pub fn io(future: impl Future<Output = JobOutput> + Send + 'static) -> Self {
        Self::Io(Box::pin(future))
    }

    /// Wraps a closure as CPU work.
    pub fn cpu(run: impl FnOnce(&CancellationToken) -> JobOutput + Send + 'static) -> Self {
        Self::Cpu(Box::new(run))
    }

    /// The pool this work runs on.
    pub fn pool(&self) -> PoolKind {
        match self {
            Self::Io(_) => PoolKind::Io,
            Self::Cpu(_) => PoolKind::Cpu,
        }
    }
}

/// Why a job could not be prepared; the caller gets `INVALID_ARGUMENT` and no pool slot is used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid payload for job kind {kind:?}: {reason}")]
pub struct InvalidPayload {
    /// The job kind that refused the payload.
    pub kind: String,
    /// What is wrong with it, in words a caller can act on.
    pub reason: String,
}

/// A job kind as the worker runs it: validates its raw payload and turns it into work for one of
/// the worker's pools. Most kinds implement [`JobKind`] instead and get this for free; implement
/// it directly only for a kind that takes its payload as raw bytes (`echo`).
///
/// Register implementations with [`crate::Registry::register`]. `prepare` runs on the request
/// path, so it should only parse and validate; the work it returns runs once a pool slot is free.
pub trait JobHandler: Send + Sync + 'static {
    /// The kind's name as callers write it in `"kind"`, for example `"resize_image"`.
    fn kind(&self) -> &str;

    /// The pool this kind's work runs on, as reported by `Describe`. Each job is scheduled on
    /// the pool its [`Work`] variant names, so a kind that sometimes computes and sometimes waits
    /// reports the pool it uses most.
    fn pool(&self) -> PoolKind;

    /// Validates `payload` (a JSON document) and returns the work to run.
    fn prepare(&self, payload: Bytes) -> Result<Work, InvalidPayload>;
}

/// A job kind with a typed payload, the usual way to write one: the library decodes the JSON
/// payload into [`JobKind::Payload`] (an object; an empty or `null` payload reads as `{}`) and
/// answers a payload that does not decode the same way for every kind, naming the kind; `work`
/// checks only what the type cannot say and returns the work to run. Every `JobKind` is a
/// [`JobHandler`], ready for [`crate::Registry::register`].
pub trait JobKind: Send + Sync + 'static {
    /// What the payload decodes into (`#[derive(Deserialize)]`, usually with
    /// `#[serde(deny_unknown_fields)]`).
    type Payload: DeserializeOwned;

    /// The kind's name as callers write it in `"kind"`, for example `"resize_image"`.
    const NAME: &'static str;

    /// The pool its work runs on (see [`JobHandler::pool`]).
    const POOL: PoolKind;

    /// Checks a decoded payload and returns the work to run; `Err` says what is wrong with it,
    /// in words a caller can act on.
    fn work(&self, payload: Self::Payload) -> Result<Work, String>;
}

impl<K: JobKind> JobHandler for K {
    fn kind(&self) -> &str {
        K::NAME
    }

    fn pool(&self) -> PoolKind {
        K::POOL
    }

    fn prepare(&self, payload: Bytes) -> Result<Work, InvalidPayload> {
        let payload = parse_payload(K::NAME, &payload)?;
        self.work(payload).map_err(|reason| InvalidPayload { kind: K::NAME.to_owned(), reason })
    }
}

/// Parses a JSON object payload into `T`, naming the kind in the error. An empty or `null`
/// payload reads as `{}` so that kinds whose fields all have defaults accept a missing payload.
/// Anything but an object is refused (serde would otherwise read `[1]` as a struct).
fn parse_payload<T: DeserializeOwned>(kind: &str, payload: &[u8]) -> Result<T, InvalidPayload> {
    let invalid = |reason: String| InvalidPayload { kind: kind.to_owned(), reason };
    let document = payload.trim_ascii();
    let document: &[u8] = if document.is_empty() || document == b"null" { b"{}" } else { document };
    if !document.starts_with(b"{") {
        return Err(invalid("the payload must be a JSON object".into()));
    }
    serde_json::from_slice(document).map_err(|error| invalid(error.to_string()))
}

/// Encodes a job's output as JSON.
pub fn json_output<T: Serialize>(value: &T) -> JobOutput {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|error| JobFailure::new(format!("cannot encode the job's output: {error}")))
}
