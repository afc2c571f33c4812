//! The engine: looks up a job's kind, prepares it, schedules it on the right pool at its
//! priority under its time limit, and reports the outcome. It knows nothing of gRPC, so it can be
//! driven directly (tests, benchmarks, the `million` example) or through [`crate::WorkerService`].

use crate::progress::ProgressSink;
use crate::{
    InvalidPayload, JobOutput, PoolKind, Priority, Registry, Work,
    pool::{CpuPool, CpuPoolConfig, Ended, IoPool, PoolFull},
};
use bytes::Bytes;
use futures_util::{FutureExt as _, future::Either};
use rampart_proto::WorkerError;
use std::{
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
    time::{Duration, Instant},
};
use tokio::sync::Notify;

/// Sizes and timings of the engine's pools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// I/O jobs that may run at once.
    pub io_concurrency: usize,
    /// I/O jobs that may wait for a slot.
    pub io_queue: usize,
    /// Threads in the CPU pool.
    pub cpu_threads: usize,
    /// CPU jobs that may wait for a thread.
    pub cpu_queue: usize,
    /// A queued job waiting this long competes as high priority, so none waits for ever.
    pub aging: Duration,
    /// How long a cancelled CPU job may keep running before it is abandoned.
    pub cancel_grace: Duration,
    /// Abandoned CPU jobs that may still be running at once; at the cap the CPU pool takes no
    /// new job until one of them ends.
    pub max_abandoned: usize,
}

impl Default for EngineConfig {
    /// 10,000 I/O jobs running and as many waiting; one CPU thread per core the process may
    /// really use (cgroup quotas included) with 64 waiting per thread; 1 s aging and grace; as
    /// many abandoned jobs as there are CPU threads.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            io_concurrency: 10_000,
            io_queue: 10_000,
            cpu_threads: cores,
            cpu_queue: 64 * cores,
            aging: Duration::from_secs(1),
            cancel_grace: Duration::from_secs(1),
            max_abandoned: cores,
        }
    }
}

/// One job to run.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// The kind's registered name.
    pub kind: String,
    /// The job's input, a JSON document.
    pub payload: Bytes,
    /// Its place in the pool's queue.
    pub priority: Priority,
    /// The job's time limit, if any.
    pub timeout: Option<Duration>,
    /// Where its progress reports go, if its caller follows them.
    pub progress: Option<ProgressSink>,
}

impl JobSpec {
    /// A normal-priority job with no time limit, whose progress nobody follows.
    pub fn new(kind: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        Self { kind: kind.into(), payload: payload.into(), priority: Priority::Normal, timeout: None, progress: None }
    }
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
    /// The pool the job needs is full, queue included. The job was not started.
    #[error("the {} pool is full", pool.as_str())]
    PoolFull {
        /// The pool that is full.
        pool: PoolKind,
        /// When a retry has a fair chance.
        retry_after: Duration,
    },
    /// The CPU pool is at its cap of abandoned jobs, which still hold the cores: it takes no
    /// job until one of them ends. The job was not started.
    #[error(
        "the cpu pool takes no jobs: {abandoned_running} abandoned jobs that ignored their cancellation still hold its cores"
    )]
    PoolStuck {
        /// Abandoned jobs still running.
        abandoned_running: usize,
        /// When a retry has a fair chance.
        retry_after: Duration,
    },
    /// The worker is draining for shutdown and takes no new jobs. The job was not started.
    #[error("the worker is shutting down and takes no new jobs")]
    Draining,
    /// The job's time limit passed; it was cancelled.
    #[error("the job did not finish within its {} ms time limit", after.as_millis())]
    TimedOut {
        /// The limit that passed.
        after: Duration,
    },
    /// The worker cancelled the job because it is shutting down and the drain timeout passed.
    #[error("the job was cancelled because the worker is shutting down{}", if *abandoned { " (it ignored the cancellation and was abandoned)" } else { "" })]
    Cancelled {
        /// Whether the job ignored the cancellation and its thread was written off.
        abandoned: bool,
    },
}

impl RunError {
    /// Whether the job certainly never started, so another worker may run it safely (as the
    /// contract's [`WorkerError`] says of it).
    pub fn never_started(&self) -> bool {
        WorkerError::from(self).never_started()
    }
}

impl From<&RunError> for WorkerError {
    /// The contract's name for a job that did not run to an outcome.
    fn from(error: &RunError) -> Self {
        let message = error.to_string();
        match error {
            RunError::UnknownKind { .. } => Self::UnknownKind(message),
            RunError::InvalidPayload(_) => Self::InvalidPayload(message),
            RunError::TimedOut { .. } => Self::TimedOut(message),
            RunError::Draining => Self::Draining(message),
            RunError::Cancelled { .. } => Self::Interrupted(message),
            RunError::PoolFull { retry_after, .. } | RunError::PoolStuck { retry_after, .. } => {
                Self::Full { message, pushback: Some(*retry_after) }
            }
        }
    }
}

/// How long a caller should wait before retrying a full pool: long enough for some jobs to end,
/// short enough not to idle a worker that frees up quickly.
const POOL_FULL_PUSHBACK: Duration = Duration::from_millis(100);

/// How long a caller should wait before retrying a pool held by abandoned jobs: they run for
/// seconds at least, or they would not have been abandoned.
const POOL_STUCK_PUSHBACK: Duration = Duration::from_secs(1);

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
    /// Jobs abandoned after ignoring their cancellation, since the start.
    pub abandoned: u64,
    /// Of those, jobs still running on their written-off threads.
    pub abandoned_running: usize,
    /// Whether the pool takes new jobs.
    pub accepting: bool,
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainReport {
    /// Whether every job finished within the drain timeout.
    pub finished_in_time: bool,
    /// Jobs still running at the timeout, which were cancelled.
    pub cancelled: usize,
}

/// Runs jobs of the registered kinds on an I/O pool and a CPU pool.
pub struct Engine {
    registry: Registry,
    io: IoPool,
    cpu: CpuPool,
    draining: AtomicBool,
    active: AtomicUsize,
    idle: Notify,
    cancel_grace: Duration,
}

/// Counts a job as active for as long as it is held.
struct Active<'a>(&'a Engine);

impl<'a> Active<'a> {
    fn new(engine: &'a Engine) -> Self {
        engine.active.fetch_add(1, Ordering::AcqRel);
        Self(engine)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Engine {
    /// Starts an engine for `registry`'s kinds with pools sized by `config`.
    pub fn start(registry: Registry, config: &EngineConfig) -> std::io::Result<Self> {
        let cpu = CpuPool::start(CpuPoolConfig {
            threads: config.cpu_threads,
            queue_capacity: config.cpu_queue,
            aging: config.aging,
            cancel_grace: config.cancel_grace,
            max_abandoned: config.max_abandoned,
        })?;
        Ok(Self {
            registry,
            io: IoPool::new(config.io_concurrency, config.io_queue, config.aging),
            cpu,
            draining: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            idle: Notify::new(),
            cancel_grace: config.cancel_grace,
        })
    }

    /// The registered job kinds.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Size and load of both pools.
    pub fn pools(&self) -> [PoolStats; 2] {
        let (io_busy, io_queued) = self.io.load();
        let (cpu_busy, cpu_queued) = self.cpu.load();
        [
            PoolStats {
                kind: PoolKind::Io,
                concurrency: self.io.capacity(),
                queue_capacity: self.io.queue_capacity(),
                busy: io_busy,
                queued: io_queued,
                abandoned: 0,
                abandoned_running: 0,
                accepting: true,
            },
            PoolStats {
                kind: PoolKind::Cpu,
                concurrency: self.cpu.threads(),
                queue_capacity: self.cpu.queue_capacity(),
                busy: cpu_busy,
                queued: cpu_queued,
                abandoned: self.cpu.abandoned(),
                abandoned_running: self.cpu.abandoned_running(),
                accepting: self.cpu.accepting(),
            },
        ]
    }

    /// Jobs admitted and not yet ended.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Whether the engine is draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Runs one job to its outcome. Dropping the returned future cancels the job: an I/O job
    /// stops at once, a CPU job at its next check (or is abandoned after the grace period).
    ///
    /// Everything up to pool admission happens before the future is first polled, and the future
    /// is built from combinators rather than an `async fn`: it is moved into a task for every job,
    /// so its size is paid on every job.
    pub fn run(&self, spec: JobSpec) -> impl Future<Output = Result<Finished, RunError>> + Send + '_ {
        match self.admit(spec) {
            Err(error) => Either::Left(std::future::ready(Err(error))),
            Ok((job, active)) => Either::Right(job.map(move |ended| {
                drop(active);
                match ended {
                    Ok(Ended::Ran(ran)) => Ok(Finished { output: ran.output, queued: ran.queued, ran: ran.ran }),
                    Ok(Ended::Cancelled) => Err(RunError::Cancelled { abandoned: false }),
                    Ok(Ended::Abandoned) => Err(RunError::Cancelled { abandoned: true }),
                    Err(error) => Err(error),
                }
            })),
        }
    }

    /// Looks the job up, prepares it and admits it to its pool, under its time limit.
    fn admit(
        &self,
        spec: JobSpec,
    ) -> Result<(impl Future<Output = Result<Ended, RunError>> + Send + use<>, Active<'_>), RunError> {
        let JobSpec { kind, payload, priority, timeout, progress } = spec;
        if self.is_draining() {
            return Err(RunError::Draining);
        }
        let Some(handler) = self.registry.get(&kind) else {
            let known = self.registry.kinds().into_iter().map(str::to_owned).collect();
            return Err(RunError::UnknownKind { kind, known });
        };
        let mut work = handler.prepare(payload)?;
        if let Some(sink) = progress {
            work = crate::progress::follow(work, sink);
        }
        let pool = work.pool();
        let full = |full| match full {
            PoolFull::Busy => RunError::PoolFull { pool, retry_after: POOL_FULL_PUSHBACK },
            PoolFull::Stuck { abandoned_running } => {
                RunError::PoolStuck { abandoned_running, retry_after: POOL_STUCK_PUSHBACK }
            }
        };
        let job = match work {
            Work::Io(work) => Either::Left(self.io.try_run(work, priority).map_err(full)?),
            Work::Cpu(work) => Either::Right(self.cpu.try_run(work, priority).map_err(full)?),
        };
        let limited = match timeout {
            // On expiry the job's future is dropped, which cancels it.
            Some(after) => Either::Left(
                tokio::time::timeout(after, job).map(move |ended| ended.map_err(|_| RunError::TimedOut { after })),
            ),
            None => Either::Right(job.map(Ok)),
        };
        Ok((limited, Active::new(self)))
    }

    /// Stops taking new jobs; jobs already admitted carry on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Cancels every job admitted and not yet ended.
    pub fn cancel_all(&self) {
        self.io.cancel_all();
        self.cpu.cancel_all();
    }

    /// Drains: stops taking jobs, waits up to `timeout` for the admitted ones to end, then
    /// cancels the rest and waits for them to report (at most the cancel grace period, after
    /// which CPU jobs that ignore cancellation are abandoned).
    pub async fn drain(&self, timeout: Duration) -> DrainReport {
        self.start_draining();
        if self.wait_idle(timeout).await {
            return DrainReport { finished_in_time: true, cancelled: 0 };
        }
        let cancelled = self.active();
        self.cancel_all();
        self.wait_idle(self.cancel_grace + Duration::from_secs(1)).await;
        DrainReport { finished_in_time: false, cancelled }
    }

    /// Waits until no job is active, for at most `limit`; true if it got there.
    async fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let idle = self.idle.notified();
            if self.active() == 0 {
                return true;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() || tokio::time::timeout(remaining, idle).await.is_err() {
                return self.active() == 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn the_run_future_stays_small() {
        // It is moved into a task for every job; the million-job example shows what each byte
        // costs. 448 bytes when this test was written; 1,224 before the combinator rewrite.
        let engine = Engine::start(Registry::builtin(), &EngineConfig::default()).unwrap();
        let run = engine.run(JobSpec::new("sleep", Bytes::from_static(br#"{"ms":1}"#)));
        assert!(std::mem::size_of_val(&run) <= 512, "{} bytes", std::mem::size_of_val(&run));
        assert!(run.await.unwrap().output.is_ok());
    }

    #[tokio::test]
    async fn draining_refuses_new_jobs_and_waits_for_running_ones() {
        let engine = Arc::new(Engine::start(Registry::builtin(), &EngineConfig::default()).unwrap());
        let running = tokio::spawn({
            let engine = Arc::clone(&engine);
            async move { engine.run(JobSpec::new("sleep", Bytes::from_static(br#"{"ms":200}"#))).await }
        });
        while engine.active() == 0 {
            tokio::task::yield_now().await;
        }
        let drain = tokio::spawn({
            let engine = Arc::clone(&engine);
            async move { engine.drain(Duration::from_secs(5)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let refused = engine.run(JobSpec::new("echo", Bytes::from_static(b"1"))).await.unwrap_err();
        assert!(matches!(refused, RunError::Draining) && refused.never_started());
        assert!(running.await.unwrap().unwrap().output.is_ok());
        assert_eq!(drain.await.unwrap(), DrainReport { finished_in_time: true, cancelled: 0 });
    }

    #[tokio::test]
    async fn a_drain_past_its_timeout_cancels_what_is_left() {
        let engine = Arc::new(Engine::start(Registry::builtin(), &EngineConfig::default()).unwrap());
        let running = tokio::spawn({
            let engine = Arc::clone(&engine);
            async move { engine.run(JobSpec::new("sleep", Bytes::from_static(br#"{"ms":60000}"#))).await }
        });
        while engine.active() == 0 {
            tokio::task::yield_now().await;
        }
        let report = engine.drain(Duration::from_millis(50)).await;
        assert_eq!(report, DrainReport { finished_in_time: false, cancelled: 1 });
        assert!(matches!(running.await.unwrap(), Err(RunError::Cancelled { abandoned: false })));
    }
}
