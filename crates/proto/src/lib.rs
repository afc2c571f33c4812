//! Rampart's gRPC contract between the gateway and its workers, generated from
//! `proto/rampart/v1/worker.proto` at build time.

/// Version 1 of the worker service.
pub mod v1 {
    #![allow(clippy::all, missing_docs, unreachable_pub)]
    tonic::include_proto!("rampart.v1");

    /// The encoded file descriptor set of the Rampart protos, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("rampart_descriptor");
}
