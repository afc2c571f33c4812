//! `rampart`: one binary to run Rampart on a machine.
//!
//! `rampart up` starts N worker processes and a gateway in front of them; `rampart gateway` and
//! `rampart worker` run one process of each kind, exactly as `rampart-gateway` and
//! `rampart-worker` do (`rampart up` starts its children through them, so one build is enough).

mod children;
mod probe;
mod up;

use clap::{Parser, Subcommand};

// mimalloc: faster than the system allocator under many threads, and it returns memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Rampart: a high-concurrency API gateway and job platform.
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
    /// Check that a URL answers 2xx within 2 s (a container health check): exit 0 if so.
    Probe(probe::ProbeArgs),
    /// API keys for the gateway's `[auth]`.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print a fresh API key, and the `[[auth.keys]]` entry that stores only its digest.
    New {
        /// The key's name, for logs.
        #[arg(long, default_value = "key")]
        id: String,
        /// The tenant the key speaks for.
        #[arg(long)]
        tenant: String,
    },
}

/// Prints a new key and its config entry.
fn new_key(id: &str, tenant: &str) -> anyhow::Result<()> {
    let (key, digest) = rampart_gateway::auth::new_key()?;
    println!("# the key (shown once; give it to the client):\n# {key}");
    println!("[[auth.keys]]\nid = {id:?}\ntenant = {tenant:?}\nhash = \"{digest}\"");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let command = Cli::parse().command;
    if let Command::Probe(args) = &command {
        return probe::run(args);
    }
    if let Command::Keys(KeysCommand::New { id, tenant }) = &command {
        return new_key(id, tenant);
    }
    let service = match command {
        Command::Up(_) => "rampart",
        Command::Gateway(_) => "rampart-gateway",
        Command::Worker(_) => "rampart-worker",
        Command::Probe(_) | Command::Keys(_) => "rampart",
    };
    let telemetry = rampart_common::logging::init(service);
    let outcome = match command {
        Command::Up(args) => up::run(args).await,
        Command::Gateway(args) => rampart_gateway::run(args).await,
        Command::Worker(args) => rampart_worker::run(args, rampart_worker::Registry::builtin()).await,
        Command::Probe(_) | Command::Keys(_) => Ok(()),
    };
    telemetry.shutdown();
    outcome
}
