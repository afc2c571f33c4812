//! `rampart-example-service`: a worker process serving the `wordcount` kind.

use clap::Parser;
use rampart_worker::{Registry, WorkerArgs};
use std::sync::Arc;

// mimalloc: faster than the system allocator under many threads, and it returns memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Serves the `wordcount` job kind to a Rampart gateway over gRPC.
#[derive(Parser)]
#[command(name = "rampart-example-service", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    args: WorkerArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = rampart_common::logging::init("rampart-example-service");
    let mut registry = Registry::new();
    registry.register(Arc::new(rampart_example_service::WordCount))?;
    let outcome = rampart_worker::run(Cli::parse().args, registry).await;
    telemetry.shutdown();
    outcome
}
