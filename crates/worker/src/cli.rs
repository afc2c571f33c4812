//! Command-line options of a worker process, shared by `rampart-worker` and `rampart worker`.

use crate::EngineConfig;

/// Options of a worker process. Each can also be set by the environment variable named in its
/// help.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// Address to serve gRPC on; port 0 picks a free port (the chosen address is printed).
    #[arg(long, env = "RAMPART_WORKER_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: String,

    /// Instance name reported with every result [default: HOSTNAME:PORT].
    #[arg(long, env = "RAMPART_WORKER_NAME")]
    pub name: Option<String>,

    /// I/O jobs that may run at once.
    #[arg(long, env = "RAMPART_WORKER_IO_CONCURRENCY", default_value_t = EngineConfig::default().io_concurrency)]
    pub io_concurrency: usize,

    /// Threads of the CPU pool [default: the cores this process may use].
    #[arg(long, env = "RAMPART_WORKER_CPU_THREADS")]
    pub cpu_threads: Option<usize>,

    /// CPU jobs that may wait for a thread before the worker answers RESOURCE_EXHAUSTED
    /// [default: 64 per CPU thread].
    #[arg(long, env = "RAMPART_WORKER_CPU_QUEUE")]
    pub cpu_queue: Option<usize>,

    /// Stop when standard input closes (used by `rampart up` so workers never outlive it).
    #[arg(long, hide = true)]
    pub exit_with_parent: bool,
}

impl WorkerArgs {
    /// The pool sizes these options ask for.
    pub fn engine_config(&self) -> EngineConfig {
        let defaults = EngineConfig::default();
        let cpu_threads = self.cpu_threads.unwrap_or(defaults.cpu_threads).max(1);
        EngineConfig {
            io_concurrency: self.io_concurrency.max(1),
            cpu_threads,
            cpu_queue: self.cpu_queue.unwrap_or(64 * cpu_threads),
        }
    }
}
