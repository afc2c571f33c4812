//! `rampart-gateway`: Rampart's REST front door.

use clap::Parser;
use rampart_gateway::cli::GatewayArgs;

// mimalloc: faster than the system allocator under many threads, and it returns memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Serves Rampart's REST API and runs each request as a job on the workers over gRPC.
#[derive(Parser)]
#[command(name = "rampart-gateway", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    args: GatewayArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = rampart_common::logging::init("rampart-gateway");
    let outcome = rampart_gateway::run(Cli::parse().args).await;
    telemetry.shutdown();
    outcome
}
