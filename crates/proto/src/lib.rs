//! Rampart's gRPC contract between the gateway and its workers, generated from
//! `proto/rampart/v1/worker.proto` at build time.

/// Version 1 of the worker service.
pub mod v1 {
    #![allow(clippy::all, missing_docs, unreachable_pub)]
    tonic::include_proto!("rampart.v1");

    /// The encoded file descriptor set of the Rampart protos, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("rampart_descriptor");
}

impl v1::JobRefusal {
    /// The refusal a dispatch stream carries for what `Execute` answers as `status`.
    pub fn of_status(status: &tonic::Status) -> Self {
        let pushback = status
            .metadata()
            .get(metadata::RETRY_PUSHBACK_MS)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.parse().ok())
            .unwrap_or(0);
        Self {
            code: status.code() as i32,
            message: status.message().to_owned(),
            not_started: status.metadata().get(metadata::NOT_STARTED).is_some(),
            retry_pushback_ms: pushback,
        }
    }

    /// The gRPC status `Execute` would have answered, its metadata included, so one reading of
    /// the contract ([`WorkerError::from_status`]) serves both ways of calling.
    pub fn into_status(self) -> tonic::Status {
        use tonic::metadata::MetadataValue;
        let mut status = tonic::Status::new(tonic::Code::from_i32(self.code), self.message);
        if self.not_started {
            status.metadata_mut().insert(metadata::NOT_STARTED, MetadataValue::from_static("1"));
        }
        if self.retry_pushback_ms > 0 {
            status.metadata_mut().insert(metadata::RETRY_PUSHBACK_MS, MetadataValue::from(self.retry_pushback_ms));
        }
        status
    }
}

/// Metadata keys that are part of the worker contract.
pub mod metadata {
    /// On an error for a job that certainly never started (the worker was full, draining, or
    /// refused the kind or payload): another worker may run it without risk of running it twice.
    pub const NOT_STARTED: &str = "rampart-not-started";

    /// How long a full worker asks the caller to wait before retrying, in milliseconds (gRFC A6).
    pub const RETRY_PUSHBACK_MS: &str = "grpc-retry-pushback-ms";
}

/// Service names a worker reports on `grpc.health.v1`, beside the worker service itself.
pub mod health {
    /// The CPU pool: NOT_SERVING while it takes no jobs (its cores are held by jobs that ignored
    /// their cancellation); the worker as a whole still serves I/O jobs.
    pub const CPU_POOL: &str = "rampart.v1.Worker/cpu";
}

/// Message sizes both sides of the contract agree on, so a payload the gateway accepts is never
/// refused by the worker's gRPC layer (and a job that can never fit fails once, not five times).
pub mod limits {
    /// Room for what travels around a payload in a message (job id, kind, framing).
    pub const ENVELOPE_BYTES: usize = 64 * 1024;

    /// The smallest message limit either side uses: payloads and results up to 16 MiB.
    pub const DEFAULT_MESSAGE_BYTES: usize = 16 << 20;

    /// The gRPC message limit for payloads of up to `max_payload` bytes.
    pub fn message_bytes(max_payload: usize) -> usize {
        max_payload.saturating_add(ENVELOPE_BYTES).max(DEFAULT_MESSAGE_BYTES)
    }
}

/// The ways a worker answers a call without a job outcome, one definition for both sides: the
/// worker encodes them as gRPC statuses ([`WorkerError::into_status`]), the gateway decodes them
/// ([`WorkerError::from_status`]). A job that ran and failed by its own logic is an outcome
/// (`JobResult` with status `FAILED`), not one of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkerError {
    /// The worker runs no such kind (`UNIMPLEMENTED`). Not started; every worker of the pool
    /// would say the same.
    #[error("{0}")]
    UnknownKind(String),
    /// The kind refused the payload (`INVALID_ARGUMENT`). Not started; retrying cannot help.
    #[error("{0}")]
    InvalidPayload(String),
    /// A message over a gRPC size limit (`OUT_OF_RANGE`, from tonic's codec on either side).
    /// Retrying cannot help.
    #[error("{0}")]
    TooLarge(String),
    /// The worker is full, or its CPU pool is held by abandoned jobs (`RESOURCE_EXHAUSTED`). Not
    /// started; try another worker, or this one after `pushback`.
    #[error("{message}")]
    Full {
        /// What the worker said.
        message: String,
        /// How long it asked callers to wait (`grpc-retry-pushback-ms`).
        pushback: Option<std::time::Duration>,
    },
    /// The worker is shutting down (`UNAVAILABLE` marked not started). Try another worker.
    #[error("{0}")]
    Draining(String),
    /// The job's own time limit passed on the worker (`DEADLINE_EXCEEDED`).
    #[error("{0}")]
    TimedOut(String),
    /// The call was cancelled (`CANCELLED`).
    #[error("{0}")]
    Cancelled(String),
    /// The worker stopped the job itself (`ABORTED`): it is shutting down and its drain timeout
    /// passed. Another worker should take it at once.
    #[error("{0}")]
    Interrupted(String),
    /// Anything else: the worker or the connection failed during the call, so the job may or
    /// may not have run.
    #[error("{code:?}: {message}")]
    Broken {
        /// The gRPC code.
        code: tonic::Code,
        /// Its message.
        message: String,
    },
}

impl WorkerError {
    /// The status a worker sends for this error, with the contract's metadata.
    pub fn into_status(self) -> tonic::Status {
        use tonic::{Status, metadata::MetadataValue};
        let never_started = self.never_started();
        let mut status = match self {
            Self::UnknownKind(message) => Status::unimplemented(message),
            Self::InvalidPayload(message) => Status::invalid_argument(message),
            Self::TooLarge(message) => Status::out_of_range(message),
            Self::Full { message, pushback } => {
                let mut status = Status::resource_exhausted(message);
                if let Some(pushback) = pushback {
                    let millis = u64::try_from(pushback.as_millis()).unwrap_or(u64::MAX);
                    status.metadata_mut().insert(metadata::RETRY_PUSHBACK_MS, MetadataValue::from(millis));
                }
                status
            }
            Self::Draining(message) => Status::unavailable(message),
            Self::TimedOut(message) => Status::deadline_exceeded(message),
            Self::Cancelled(message) => Status::cancelled(message),
            Self::Interrupted(message) => Status::aborted(message),
            Self::Broken { code, message } => Status::new(code, message),
        };
        if never_started {
            status.metadata_mut().insert(metadata::NOT_STARTED, MetadataValue::from_static("1"));
        }
        status
    }

    /// What a status from a worker (or from the call's own transport) says.
    pub fn from_status(status: &tonic::Status) -> Self {
        use tonic::Code;
        let message = status.message().to_owned();
        let not_started = status.metadata().get(metadata::NOT_STARTED).is_some();
        match status.code() {
            Code::Unimplemented => Self::UnknownKind(message),
            Code::InvalidArgument => Self::InvalidPayload(message),
            Code::OutOfRange => Self::TooLarge(message),
            Code::ResourceExhausted => {
                let pushback = status
                    .metadata()
                    .get(metadata::RETRY_PUSHBACK_MS)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|text| text.parse().ok())
                    .map(std::time::Duration::from_millis);
                Self::Full { message, pushback }
            }
            Code::Unavailable if not_started => Self::Draining(message),
            Code::DeadlineExceeded => Self::TimedOut(message),
            Code::Cancelled => Self::Cancelled(message),
            Code::Aborted => Self::Interrupted(message),
            code => Self::Broken { code, message },
        }
    }

    /// Whether the job certainly never started, so another worker may run it safely.
    pub fn never_started(&self) -> bool {
        matches!(self, Self::UnknownKind(_) | Self::InvalidPayload(_) | Self::Full { .. } | Self::Draining(_))
    }

    /// Whether sending the job again, anywhere, cannot help.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::UnknownKind(_) | Self::InvalidPayload(_) | Self::TooLarge(_))
    }

    /// Whether the error says the endpoint (not the job) is in trouble: it should count against
    /// the endpoint's breaker and balancing cost.
    pub fn counts_against_endpoint(&self) -> bool {
        match self {
            Self::Full { .. } => true,
            Self::Broken { code, .. } => {
                matches!(
                    code,
                    tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Internal | tonic::Code::DataLoss
                )
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn every_error_survives_the_wire() {
        for error in [
            WorkerError::UnknownKind("no such kind".into()),
            WorkerError::InvalidPayload("bad".into()),
            WorkerError::TooLarge("big".into()),
            WorkerError::Full { message: "full".into(), pushback: Some(Duration::from_millis(250)) },
            WorkerError::Full { message: "full".into(), pushback: None },
            WorkerError::Draining("bye".into()),
            WorkerError::TimedOut("late".into()),
            WorkerError::Cancelled("stopped".into()),
            WorkerError::Interrupted("shutting down".into()),
            WorkerError::Broken { code: tonic::Code::Internal, message: "boom".into() },
        ] {
            let status = error.clone().into_status();
            assert_eq!(status.metadata().get(metadata::NOT_STARTED).is_some(), error.never_started(), "{error:?}");
            assert_eq!(WorkerError::from_status(&status), error);
        }
    }

    #[test]
    fn a_plain_unavailable_is_a_broken_call_not_a_drain() {
        let error = WorkerError::from_status(&tonic::Status::unavailable("connection reset"));
        assert!(matches!(error, WorkerError::Broken { code: tonic::Code::Unavailable, .. }));
        assert!(!error.never_started() && error.counts_against_endpoint());
    }
}
