//! Rampart's job worker.
//!
//! A worker runs jobs of the kinds registered with it and serves them over gRPC
//! (`rampart.v1.Worker`, plus `grpc.health.v1`). I/O-bound kinds run as tokio tasks under a
//! bound; CPU-bound kinds run on dedicated threads sized to the cores. A job that panics fails
//! alone; the worker keeps serving.
//!
//! To add a kind, implement [`JobHandler`], register it in a [`Registry`] and hand that to
//! [`run`] from your own binary.

mod cli;
mod dispatch;
mod engine;
mod handler;
pub mod kinds;
pub mod observe;
mod panic_message;
mod pool;
pub mod progress;
mod registry;
mod server;
mod service;

pub use cli::WorkerArgs;
pub use engine::{DrainReport, Engine, EngineConfig, Finished, JobSpec, PoolStats, RunError};
pub use handler::{
    CpuWork, InvalidPayload, IoWork, JobFailure, JobHandler, JobKind, JobOutput, PoolKind, Work, json_output,
};
pub use pool::Priority;
pub use registry::{DuplicateKind, Registry};
pub use server::{run, serve};
pub use service::WorkerService;
