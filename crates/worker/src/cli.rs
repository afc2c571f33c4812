//! Command-line options of a worker process, shared by `rampart-worker`, `rampart worker` and
//! service crates' own binaries.

use crate::EngineConfig;
use std::{path::PathBuf, time::Duration};

fn duration(text: &str) -> Result<Duration, String> {
    rampart_common::duration::parse(text)
}

/// Options of a worker process. Each can also be set by the environment variable named in its
/// help.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// Address to serve gRPC on; port 0 picks a free port (the chosen address is printed).
    #[arg(long, env = "RAMPART_WORKER_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: String,

    /// Admin address for /metrics, /health and /debug/pprof/profile; port 0 (the default) picks a
    /// free port, printed with the gRPC address.
    #[arg(long, env = "RAMPART_WORKER_ADMIN_LISTEN", default_value = "127.0.0.1:0")]
    pub admin_listen: String,

    /// Instance name reported with every result [default: HOSTNAME:PORT].
    #[arg(long, env = "RAMPART_WORKER_NAME")]
    pub name: Option<String>,

    /// I/O jobs that may run at once.
    #[arg(long, env = "RAMPART_WORKER_IO_CONCURRENCY", default_value_t = EngineConfig::default().io_concurrency)]
    pub io_concurrency: usize,

    /// I/O jobs that may wait for a slot before the worker answers RESOURCE_EXHAUSTED.
    #[arg(long, env = "RAMPART_WORKER_IO_QUEUE", default_value_t = EngineConfig::default().io_queue)]
    pub io_queue: usize,

    /// Threads of the CPU pool [default: the cores this process may use].
    #[arg(long, env = "RAMPART_WORKER_CPU_THREADS")]
    pub cpu_threads: Option<usize>,

    /// CPU jobs that may wait for a thread before the worker answers RESOURCE_EXHAUSTED
    /// [default: 64 per CPU thread].
    #[arg(long, env = "RAMPART_WORKER_CPU_QUEUE")]
    pub cpu_queue: Option<usize>,

    /// A queued job that has waited this long competes as high priority, so low-priority jobs
    /// are never starved.
    #[arg(long, env = "RAMPART_WORKER_AGING", value_parser = duration, default_value = "1s")]
    pub aging: Duration,

    /// How long a cancelled CPU job may keep running before its thread is written off and
    /// replaced.
    #[arg(long, env = "RAMPART_WORKER_CANCEL_GRACE", value_parser = duration, default_value = "1s")]
    pub cancel_grace: Duration,

    /// The largest gRPC message read or written, in bytes: job payloads and results must fit.
    /// Keep it at least the gateway's `max_body_bytes` plus 64 KiB (`rampart up` does).
    #[arg(long, env = "RAMPART_WORKER_MAX_MESSAGE_BYTES", default_value_t = rampart_proto::limits::DEFAULT_MESSAGE_BYTES)]
    pub max_message_bytes: usize,

    /// Abandoned CPU jobs (ones that ignored their cancellation) that may still run at once;
    /// at the cap the CPU pool takes no new job until one ends [default: the CPU threads].
    #[arg(long, env = "RAMPART_WORKER_MAX_ABANDONED")]
    pub max_abandoned: Option<usize>,

    /// On SIGTERM, how long running jobs may take to finish before they are cancelled.
    #[arg(long, env = "RAMPART_WORKER_DRAIN_TIMEOUT", value_parser = duration, default_value = "30s")]
    pub drain_timeout: Duration,

    /// A file holding the admin listener's bearer token. Needed when --admin-listen is not a
    /// loopback address: metrics and CPU profiles are not for every host (`/health` stays open).
    #[arg(long, env = "RAMPART_WORKER_ADMIN_TOKEN_FILE", value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,

    /// The admin token itself (prefer --admin-token-file: arguments are visible to every user).
    #[arg(long, env = "RAMPART_WORKER_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Serve gRPC over TLS with this certificate chain (PEM), so callers on other hosts know
    /// whom they reach; needs --tls-key.
    #[arg(long, env = "RAMPART_WORKER_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "RAMPART_WORKER_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Take calls only from clients presenting a certificate this CA bundle (PEM) signed: the
    /// gateways, given their `[worker_tls]` certificate. Needs --tls-cert.
    #[arg(long, env = "RAMPART_WORKER_TLS_CLIENT_CA", value_name = "FILE", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// Stop when standard input closes (used by `rampart up` so workers never outlive it).
    #[arg(long, hide = true)]
    pub exit_with_parent: bool,
}

impl WorkerArgs {
    /// The pool sizes and timings these options ask for.
    pub fn engine_config(&self) -> EngineConfig {
        let defaults = EngineConfig::default();
        let cpu_threads = self.cpu_threads.unwrap_or(defaults.cpu_threads).max(1);
        EngineConfig {
            io_concurrency: self.io_concurrency.max(1),
            io_queue: self.io_queue,
            cpu_threads,
            cpu_queue: self.cpu_queue.unwrap_or(64 * cpu_threads),
            aging: self.aging,
            cancel_grace: self.cancel_grace,
            max_abandoned: self.max_abandoned.unwrap_or(cpu_threads),
        }
    }
}
