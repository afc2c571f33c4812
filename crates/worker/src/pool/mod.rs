//! The worker's two pools: async tasks for I/O-bound work and dedicated threads for CPU-bound
//! work, so that a flood of computation never starves jobs that wait.

mod cpu;
mod io;

pub(crate) use cpu::CpuPool;
pub(crate) use io::IoPool;

use crate::JobOutput;
use std::time::Duration;

/// A job that ran to an outcome on a pool.
#[derive(Debug)]
pub(crate) struct Ran {
    /// The job's output or failure (a panic is a failure).
    pub(crate) output: JobOutput,
    /// Time between submission and the start of the run.
    pub(crate) queued: Duration,
    /// Time the job ran.
    pub(crate) ran: Duration,
}

/// The pool has no free slot and no queue space; the caller should retry after the pushback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PoolFull;
