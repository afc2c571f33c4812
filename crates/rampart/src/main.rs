//! `rampart`: one binary to run Rampart on a machine.
//!
//! `rampart up` starts N worker processes and a gateway in front of them; `rampart gateway` and
//! `rampart worker` run one process of each kind, exactly as `rampart-gateway` and
//! `rampart-worker` do (`rampart up` starts its children through them, so one build is enough).

mod children;
mod up;

use clap::{Parser, Subcommand};

/// Rampart: a high-concurrency API gateway and job platform.
/// mimalloc: faster than the system allocator under many threads, and it returns memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "rampart", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start workers and a gateway on this machine; Ctrl-C stops them all.
    Up(up::UpArgs),
    /// Run one gateway process (the same as `rampart-gateway`).
    Gateway(rampart_gateway::cli::GatewayArgs),
    /// Run one worker process with the built-in job kinds (the same as `rampart-worker`).
    Worker(rampart_worker::WorkerArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let command = Cli::parse().command;
    let service = match command {
        Command::Up(_) => "rampart",
        Command::Gateway(_) => "rampart-gateway",
        Command::Worker(_) => "rampart-worker",
    };
    let telemetry = rampart_common::logging::init(service);
    let outcome = match command {
        Command::Up(args) => up::run(args).await,
        Command::Gateway(args) => rampart_gateway::run(args).await,
        Command::Worker(args) => rampart_worker::run(args, rampart_worker::Registry::builtin()).await,
    };
    telemetry.shutdown();
    outcome
}
