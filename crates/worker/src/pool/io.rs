//! The I/O pool: each job is a tokio task, admitted under a bound on how many run at once.

use super::{PoolFull, Ran};
use crate::{IoWork, JobFailure, panic_message::panic_message};
use std::{sync::Arc, time::Instant};
use tokio::sync::Semaphore;
use tokio_util::task::AbortOnDropHandle;

/// Runs I/O work as tasks, at most `capacity` at once.
pub(crate) struct IoPool {
    permits: Arc<Semaphore>,
    capacity: usize,
}

impl IoPool {
    /// A pool that runs up to `capacity` jobs at once.
    pub(crate) fn new(capacity: usize) -> Self {
        Self { permits: Arc::new(Semaphore::new(capacity)), capacity }
    }

    /// How many jobs can run at once.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Jobs running now.
    pub(crate) fn busy(&self) -> usize {
        self.capacity - self.permits.available_permits()
    }

    /// Starts `work` if a slot is free. The returned future yields the outcome; dropping it
    /// aborts the job, which is how a cancelled call reaches an I/O job.
    pub(crate) fn try_run(&self, work: IoWork) -> Result<impl Future<Output = Ran> + Send + use<>, PoolFull> {
        let permit = Arc::clone(&self.permits).try_acquire_owned().map_err(|_| PoolFull)?;
        let task = AbortOnDropHandle::new(tokio::spawn(async move {
            let _slot = permit;
            let started = Instant::now();
            let output = work.await;
            (output, started.elapsed())
        }));
        Ok(async move {
            match task.await {
                Ok((output, ran)) => Ran { output, queued: Default::default(), ran },
                Err(join_error) => {
                    let reason = match join_error.try_into_panic() {
                        Ok(payload) => panic_message(payload.as_ref()),
                        Err(_) => "job task was cancelled".to_owned(),
                    };
                    Ran { output: Err(JobFailure(reason)), queued: Default::default(), ran: Default::default() }
                }
            }
        })
    }
}
