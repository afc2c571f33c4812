//! The worker's two pools: async tasks for I/O-bound work and dedicated threads for CPU-bound
//! work, so that a flood of computation never starves jobs that wait. Each has its own
//! concurrency, a bounded queue and three priorities.

mod cpu;
mod io;
mod priority;

pub(crate) use cpu::{CpuPool, CpuPoolConfig};
pub(crate) use io::IoPool;
pub use priority::Priority;

use crate::JobOutput;
use std::time::Duration;

/// How a job left its pool.
#[derive(Debug)]
pub(crate) enum Ended {
    /// It ran to an outcome (a panic is a failed outcome).
    Ran(Ran),
    /// Its cancellation signal arrived first; an I/O job stopped at once, a CPU job at its next
    /// check.
    Cancelled,
    /// A CPU job kept running after its cancellation and the grace period; its thread was
    /// written off and replaced.
    Abandoned,
}

/// A job that ran to an outcome.
#[derive(Debug)]
pub(crate) struct Ran {
    /// The job's output or failure.
    pub(crate) output: JobOutput,
    /// Time between submission and the start of the run.
    pub(crate) queued: Duration,
    /// Time the job ran.
    pub(crate) ran: Duration,
}

/// Why a pool took no new job; the caller should retry after the pushback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PoolFull {
    /// Every slot is busy and the queue is full.
    Busy,
    /// As many abandoned jobs (which ignored their cancellation) still hold threads as the pool
    /// allows: the cores are theirs until they end.
    Stuck {
        /// Abandoned jobs still running.
        abandoned_running: usize,
    },
}
