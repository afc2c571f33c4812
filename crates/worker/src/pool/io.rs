//! The I/O pool: jobs run as async tasks (on the task that asked for them), at most `capacity` at
//! once, with up to `queue_capacity` more waiting by priority.

use super::{Ended, PoolFull, Priority, Ran, priority::PriorityQueue};
use crate::{IoWork, JobFailure, panic_message::panic_message};
use futures_util::FutureExt as _;
use std::{
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// Runs I/O work under a bound, queueing the overflow.
pub(crate) struct IoPool {
    shared: Arc<Shared>,
    /// Cancels every job when the worker gives up draining. Sharded, because each job waits on
    /// one and a single token's waiter list would be a point of contention between threads.
    cancel_all: [CancellationToken; CANCEL_SHARDS],
}

/// Shards of the cancel-all signal.
const CANCEL_SHARDS: usize = 16;

struct Shared {
    capacity: usize,
    queue_capacity: usize,
    state: Mutex<State>,
}

struct State {
    running: usize,
    queue: PriorityQueue<Waiter>,
    next_id: u64,
}

struct Waiter {
    id: u64,
    wake: oneshot::Sender<()>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Frees a slot, handing it straight to the next waiting job if there is one.
    fn release(&self) {
        let mut state = self.lock();
        match state.queue.pop(Instant::now()) {
            // A waiter in the queue is alive (it removes itself when dropped), so the send
            // cannot fail; the slot now belongs to it.
            Some(waiter) => drop(waiter.wake.send(())),
            None => state.running -= 1,
        }
    }
}

/// A running slot; freed (or handed on) when dropped.
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// A place in the queue. If dropped before its slot arrives it leaves the queue; if dropped after
/// its slot was handed over but before it was used, it hands the slot on.
struct Queued {
    shared: Arc<Shared>,
    id: u64,
    wake: Option<oneshot::Receiver<()>>,
    /// Set once the slot has been turned into a [`Slot`], which then owns it.
    claimed: bool,
}

impl Queued {
    async fn slot(mut self) -> Slot {
        if let Some(wake) = self.wake.take() {
            // The sender lives in the queue until it is used, so this only ends by a send.
            let _ = wake.await;
        }
        self.claimed = true;
        Slot(Arc::clone(&self.shared))
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        if self.claimed {
            return;
        }
        let id = self.id;
        let removed = self.shared.lock().queue.remove(|waiter| waiter.id == id);
        if !removed {
            self.shared.release();
        }
    }
}

impl IoPool {
    /// A pool that runs up to `capacity` jobs at once with up to `queue_capacity` waiting.
    pub(crate) fn new(capacity: usize, queue_capacity: usize, aging: Duration) -> Self {
        let state = State { running: 0, queue: PriorityQueue::new(aging), next_id: 0 };
        Self {
            shared: Arc::new(Shared { capacity: capacity.max(1), queue_capacity, state: Mutex::new(state) }),
            cancel_all: std::array::from_fn(|_| CancellationToken::new()),
        }
    }

    /// How many jobs can run at once.
    pub(crate) fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// How many jobs may wait.
    pub(crate) fn queue_capacity(&self) -> usize {
        self.shared.queue_capacity
    }

    /// Jobs running and waiting now.
    pub(crate) fn load(&self) -> (usize, usize) {
        let state = self.shared.lock();
        (state.running, state.queue.len())
    }

    /// Cancels every job admitted so far, queued or running.
    pub(crate) fn cancel_all(&self) {
        for shard in &self.cancel_all {
            shard.cancel();
        }
    }

    /// Admits `work` at `priority`, or refuses it at once if the pool and its queue are full.
    /// The returned future runs the job once it has a slot; dropping it cancels the job (or
    /// takes it out of the queue), as does [`IoPool::cancel_all`].
    pub(crate) fn try_run(
        &self,
        work: IoWork,
        priority: Priority,
    ) -> Result<impl Future<Output = Ended> + Send + use<>, PoolFull> {
        let cancel = self.cancel_all[fastrand::usize(..CANCEL_SHARDS)].clone();
        let submitted = Instant::now();
        let admission = {
            let mut state = self.shared.lock();
            if state.running < self.shared.capacity && state.queue.len() == 0 {
                state.running += 1;
                Ok(Slot(Arc::clone(&self.shared)))
            } else if state.queue.len() < self.shared.queue_capacity {
                let (wake, woken) = oneshot::channel();
                let id = state.next_id;
                state.next_id += 1;
                state.queue.push(Waiter { id, wake }, priority, submitted);
                Err(Queued { shared: Arc::clone(&self.shared), id, wake: Some(woken), claimed: false })
            } else {
                return Err(PoolFull::Busy);
            }
        };
        Ok(async move {
            let slot = match admission {
                Ok(slot) => slot,
                Err(queued) => tokio::select! {
                    slot = queued.slot() => slot,
                    () = cancel.cancelled() => return Ended::Cancelled,
                },
            };
            let started = Instant::now();
            let queued = started - submitted;
            let outcome = tokio::select! {
                outcome = AssertUnwindSafe(work).catch_unwind() => outcome,
                () = cancel.cancelled() => return Ended::Cancelled,
            };
            drop(slot);
            let output = outcome.unwrap_or_else(|payload| Err(JobFailure(panic_message(payload.as_ref()))));
            Ended::Ran(Ran { output, queued, ran: started.elapsed() })
        })
    }
}
