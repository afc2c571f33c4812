//! The CPU pool: a fixed set of OS threads fed by a bounded queue, never the async runtime's
//! threads, so computation cannot stall the tasks that serve requests and wait on I/O.

use super::{PoolFull, Ran};
use crate::{CpuWork, JobFailure, panic_message::panic_message};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// One queued CPU job.
struct Task {
    work: CpuWork,
    cancel: CancellationToken,
    enqueued: Instant,
    done: oneshot::Sender<Ran>,
}

/// Runs CPU work on `threads` dedicated threads with up to `queue_capacity` jobs waiting.
pub(crate) struct CpuPool {
    queue: Sender<Task>,
    threads: usize,
    queue_capacity: usize,
    busy: Arc<AtomicUsize>,
}

impl CpuPool {
    /// Starts `threads` threads (at least one) behind a queue of `queue_capacity` jobs.
    pub(crate) fn start(threads: usize, queue_capacity: usize) -> std::io::Result<Self> {
        let threads = threads.max(1);
        let (queue, receiver) = crossbeam_channel::bounded(queue_capacity);
        let busy = Arc::new(AtomicUsize::new(0));
        for index in 0..threads {
            let receiver = receiver.clone();
            let busy = Arc::clone(&busy);
            std::thread::Builder::new()
                .name(format!("rampart-cpu-{index}"))
                .spawn(move || run_thread(&receiver, &busy))?;
        }
        Ok(Self { queue, threads, queue_capacity, busy })
    }

    /// The number of threads.
    pub(crate) fn threads(&self) -> usize {
        self.threads
    }

    /// How many jobs may wait for a thread.
    pub(crate) fn queue_capacity(&self) -> usize {
        self.queue_capacity
    }

    /// Threads running a job now.
    pub(crate) fn busy(&self) -> usize {
        self.busy.load(Ordering::Relaxed)
    }

    /// Jobs waiting for a thread now.
    pub(crate) fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Queues `work` if there is room. The returned future yields the outcome; dropping it
    /// cancels `cancel`, which the work checks between chunks.
    pub(crate) fn try_run(
        &self,
        work: CpuWork,
        cancel: CancellationToken,
    ) -> Result<impl Future<Output = Ran> + Send + use<>, PoolFull> {
        let (done, outcome) = oneshot::channel();
        let task = Task { work, cancel: cancel.clone(), enqueued: Instant::now(), done };
        match self.queue.try_send(task) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => return Err(PoolFull),
        }
        let cancel_on_drop = cancel.drop_guard();
        Ok(async move {
            let result = outcome.await;
            // The job is over either way; nothing is left to cancel.
            drop(cancel_on_drop.disarm());
            result.unwrap_or_else(|_| Ran {
                output: Err(JobFailure::new("the CPU pool dropped the job")),
                queued: Default::default(),
                ran: Default::default(),
            })
        })
    }
}

fn run_thread(receiver: &Receiver<Task>, busy: &AtomicUsize) {
    for Task { work, cancel, enqueued, done } in receiver.iter() {
        let queued = enqueued.elapsed();
        if cancel.is_cancelled() || done.is_closed() {
            // Nobody waits for this job any more; do not spend a core on it.
            continue;
        }
        busy.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let output = catch_unwind(AssertUnwindSafe(|| work(&cancel)))
            .unwrap_or_else(|payload| Err(JobFailure(panic_message(payload.as_ref()))));
        let ran = started.elapsed();
        busy.fetch_sub(1, Ordering::Relaxed);
        let _receiver_gone = done.send(Ran { output, queued, ran });
    }
}
