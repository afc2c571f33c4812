//! Rampart's gRPC contract between the gateway and its workers, generated from
//! `proto/rampart/v1/worker.proto` at build time.

/// Version 1 of the worker service.
pub mod v1 {
    #![allow(clippy::all, missing_docs, unreachable_pub)]
    tonic::include_proto!("rampart.v1");

    /// The encoded file descriptor set of the Rampart protos, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("rampart_descriptor");
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
