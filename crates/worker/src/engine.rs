//! The engine: looks up a job's kind, prepares it, schedules it on the right pool under its time
//! limit and reports the outcome. It knows nothing of gRPC, so it can be driven directly (tests,
//! benchmarks) or through [`crate::service`].

use crate::{
    InvalidPayload, JobOutput, PoolKind, Registry, Work,
    pool::{CpuPool, IoPool, PoolFull, Ran},
};
use bytes::Bytes;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Sizes of the engine's pools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// I/O jobs that may run at once.
    pub io_concurrency: usize,
    /// Threads in the CPU pool.
    pub cpu_threads: usize,
    /// CPU jobs that may wait for a thread.
    pub cpu_queue: usize,
}

impl Default for EngineConfig {
    /// 10,000 I/O jobs; one CPU thread per core the process may really use (cgroup quotas
    /// included); a CPU queue of 64 jobs per thread.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self { io_concurrency: 10_000, cpu_threads: cores, cpu_queue: 64 * cores }
    }
}

/// One job to run.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// The kind's registered name.
    pub kind: String,
    /// The job's input, a JSON document.
    pub payload: Bytes,
    /// The job's own time limit, if any.
    pub timeout: Option<Duration>,
}

/// A job that ran to an outcome.
#[derive(Debug)]
pub struct Finished {
    /// The job's output, or why it failed by its own logic (panics included).
    pub output: JobOutput,
    /// Time the job waited for a pool slot.
    pub queued: Duration,
    /// Time the job ran.
    pub ran: Duration,
}

/// Why a job did not run to an outcome.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No handler is registered for the kind.
    #[error("unknown job kind {kind:?}; this worker runs: {}", known.join(", "))]
    UnknownKind {
        /// The kind asked for.
        kind: String,
        /// The kinds this worker runs.
        known: Vec<String>,
    },
    /// The handler refused the payload.
    #[error(transparent)]
    InvalidPayload(#[from] InvalidPayload),
    /// The pool the job needs is full.
    #[error("the {} pool is full", pool.as_str())]
    PoolFull {
        /// The pool that is full.
        pool: PoolKind,
        /// When a retry has a fair chance.
        retry_after: Duration,
    },
    /// The job's own time limit passed; it was cancelled.
    #[error("the job did not finish within its {} ms time limit", after.as_millis())]
    TimedOut {
        /// The limit that passed.
        after: Duration,
    },
}

/// How long a caller should wait before retrying a full pool: long enough for some jobs to end,
/// short enough not to idle a worker that frees up quickly.
const POOL_FULL_PUSHBACK: Duration = Duration::from_millis(100);

/// Runs jobs of the registered kinds on an I/O pool and a CPU pool.
pub struct Engine {
    registry: Registry,
    io: IoPool,
    cpu: CpuPool,
}

/// A snapshot of one pool's size and load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Which pool.
    pub kind: PoolKind,
    /// Jobs that can run at once.
    pub concurrency: usize,
    /// Jobs that can wait for a slot.
    pub queue_capacity: usize,
    /// Jobs running now.
    pub busy: usize,
    /// Jobs waiting now.
    pub queued: usize,
}

impl Engine {
    /// Starts an engine for `registry`'s kinds with pools sized by `config`.
    pub fn start(registry: Registry, config: &EngineConfig) -> std::io::Result<Self> {
        Ok(Self {
            registry,
            io: IoPool::new(config.io_concurrency),
            cpu: CpuPool::start(config.cpu_threads, config.cpu_queue)?,
        })
    }

    /// The registered job kinds.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Size and load of both pools.
    pub fn pools(&self) -> [PoolStats; 2] {
        [
            PoolStats {
                kind: PoolKind::Io,
                concurrency: self.io.capacity(),
                queue_capacity: 0,
                busy: self.io.busy(),
                queued: 0,
            },
            PoolStats {
                kind: PoolKind::Cpu,
                concurrency: self.cpu.threads(),
                queue_capacity: self.cpu.queue_capacity(),
                busy: self.cpu.busy(),
                queued: self.cpu.queued(),
            },
        ]
    }

    /// Runs one job to its outcome. Dropping the returned future cancels the job.
    pub async fn run(&self, spec: JobSpec) -> Result<Finished, RunError> {
        let JobSpec { kind, payload, timeout } = spec;
        let Some(handler) = self.registry.get(&kind) else {
            let known = self.registry.kinds().into_iter().map(str::to_owned).collect();
            return Err(RunError::UnknownKind { kind, known });
        };
        let work = handler.prepare(payload)?;
        let pool = work.pool();
        let full = |PoolFull| RunError::PoolFull { pool, retry_after: POOL_FULL_PUSHBACK };
        let ran = match work {
            Work::Io(work) => with_limit(timeout, self.io.try_run(work).map_err(full)?).await?,
            Work::Cpu(work) => {
                let cancel = CancellationToken::new();
                with_limit(timeout, self.cpu.try_run(work, cancel).map_err(full)?).await?
            }
        };
        let Ran { output, queued, ran } = ran;
        Ok(Finished { output, queued, ran })
    }
}

/// Awaits `job` for at most `limit`; on expiry the job's future is dropped, which cancels it.
async fn with_limit(limit: Option<Duration>, job: impl Future<Output = Ran>) -> Result<Ran, RunError> {
    match limit {
        None => Ok(job.await),
        Some(after) => tokio::time::timeout(after, job).await.map_err(|_| RunError::TimedOut { after }),
    }
}
