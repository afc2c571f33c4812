//! `rampart-worker`: a Rampart job worker serving the built-in job kinds over gRPC.

use clap::Parser;
use rampart_worker::{Registry, WorkerArgs};

// mimalloc: faster than the system allocator under many threads, and it returns memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs Rampart jobs (echo, sleep, cpu, hash, fail) for a gateway, over gRPC.
#[derive(Parser)]
#[command(name = "rampart-worker", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    args: WorkerArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = rampart_common::logging::init("rampart-worker");
    let outcome = rampart_worker::run(Cli::parse().args, Registry::builtin()).await;
    telemetry.shutdown();
    outcome
}
