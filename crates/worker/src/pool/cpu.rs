//! The CPU pool: a fixed set of OS threads fed by a bounded priority queue, never the async
//! runtime's threads, so computation cannot stall the tasks that serve requests and wait on I/O.
//!
//! Cancellation is cooperative: a job receives its token and should check it between chunks. A
//! job still running `cancel_grace` after its cancellation is abandoned: the caller hears so at
//! once, the slot is freed, a fresh thread takes the abandoned thread's place (which exits when
//! its job finally returns), and the abandonment is counted.
//!
//! Abandoned threads still burn their cores, so they are capped (`max_abandoned`): at the cap
//! no more jobs are abandoned (a runaway keeps its slot) and the pool takes no new job — it
//! answers full, with a pushback, until an abandoned job ends — rather than pile more work onto
//! cores that runaway jobs already hold.

use super::{Ended, PoolFull, Priority, Ran, priority::PriorityQueue};
use crate::{CpuWork, JobFailure, panic_message::panic_message};
use std::{
    collections::HashMap,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{
        Arc, Condvar, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// Sizes and timings of a CPU pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CpuPoolConfig {
    pub(crate) threads: usize,
    pub(crate) queue_capacity: usize,
    pub(crate) aging: Duration,
    pub(crate) cancel_grace: Duration,
    /// Abandoned jobs that may still be running at once; at the cap the pool takes no job.
    pub(crate) max_abandoned: usize,
}

/// One queued CPU job.
struct Task {
    work: CpuWork,
    cancel: CancellationToken,
    enqueued: Instant,
    done: oneshot::Sender<Ended>,
}

/// The job a thread is running.
struct Running {
    cancel: CancellationToken,
    done: oneshot::Sender<Ended>,
    /// When the watchdog first saw the job cancelled.
    cancel_seen: Option<Instant>,
}

struct State {
    /// Threads (not counting abandoned ones) running a job.
    running: usize,
    queue: PriorityQueue<Task>,
    /// The job of each busy thread, by thread number.
    jobs: HashMap<u64, Running>,
    next_thread: u64,
}

struct Shared {
    config: CpuPoolConfig,
    state: Mutex<State>,
    work_ready: Condvar,
    abandoned: AtomicU64,
    /// Abandoned jobs whose threads have not returned yet.
    abandoned_running: AtomicUsize,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Runs CPU work on dedicated threads.
pub(crate) struct CpuPool {
    shared: Arc<Shared>,
}

impl Drop for CpuPool {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.work_ready.notify_all();
    }
}

impl CpuPool {
    /// Starts the threads (at least one) and the watchdog that abandons runaway jobs.
    pub(crate) fn start(config: CpuPoolConfig) -> std::io::Result<Self> {
        let threads = config.threads.max(1);
        let state = State { running: 0, queue: PriorityQueue::new(config.aging), jobs: HashMap::new(), next_thread: 0 };
        let shared = Arc::new(Shared {
            config: CpuPoolConfig { threads, ..config },
            state: Mutex::new(state),
            work_ready: Condvar::new(),
            abandoned: AtomicU64::new(0),
            abandoned_running: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        for _ in 0..threads {
            spawn_thread(&shared)?;
        }
        let watched = Arc::downgrade(&shared);
        std::thread::Builder::new().name("rampart-cpu-watchdog".into()).spawn(move || watchdog(&watched))?;
        Ok(Self { shared })
    }

    /// The number of threads.
    pub(crate) fn threads(&self) -> usize {
        self.shared.config.threads
    }

    /// How many jobs may wait for a thread.
    pub(crate) fn queue_capacity(&self) -> usize {
        self.shared.config.queue_capacity
    }

    /// Jobs running and waiting now.
    pub(crate) fn load(&self) -> (usize, usize) {
        let state = self.shared.lock();
        (state.running, state.queue.len())
    }

    /// Jobs abandoned since the start.
    pub(crate) fn abandoned(&self) -> u64 {
        self.shared.abandoned.load(Ordering::Relaxed)
    }

    /// Abandoned jobs still running.
    pub(crate) fn abandoned_running(&self) -> usize {
        self.shared.abandoned_running.load(Ordering::Acquire)
    }

    /// Whether the pool takes new jobs (it is not at its cap of abandoned jobs).
    pub(crate) fn accepting(&self) -> bool {
        self.abandoned_running() < self.shared.config.max_abandoned
    }

    /// Cancels every job: queued ones at once, running ones through their tokens (and the
    /// watchdog, for those that ignore it).
    pub(crate) fn cancel_all(&self) {
        let queued = {
            let mut state = self.shared.lock();
            for job in state.jobs.values() {
                job.cancel.cancel();
            }
            state.queue.take_all()
        };
        for task in queued {
            task.cancel.cancel();
            let _ = task.done.send(Ended::Cancelled);
        }
    }

    /// Queues `work` at `priority` if there is room. The returned future yields how the job
    /// ended; dropping it cancels the job's token, which the work should check between chunks.
    pub(crate) fn try_run(
        &self,
        work: CpuWork,
        priority: Priority,
    ) -> Result<impl Future<Output = Ended> + Send + use<>, PoolFull> {
        let abandoned_running = self.abandoned_running();
        if abandoned_running >= self.shared.config.max_abandoned {
            return Err(PoolFull::Stuck { abandoned_running });
        }
        let cancel = CancellationToken::new();
        let (done, ended) = oneshot::channel();
        {
            let mut state = self.shared.lock();
            if state.running + state.queue.len() >= self.shared.config.threads + self.shared.config.queue_capacity {
                return Err(PoolFull::Busy);
            }
            let now = Instant::now();
            state.queue.push(Task { work, cancel: cancel.clone(), enqueued: now, done }, priority, now);
        }
        self.shared.work_ready.notify_one();
        let cancel_on_drop = cancel.drop_guard();
        Ok(async move {
            let ended = ended.await.unwrap_or(Ended::Cancelled);
            // The job is over either way; nothing is left to cancel.
            drop(cancel_on_drop.disarm());
            ended
        })
    }
}

fn spawn_thread(shared: &Arc<Shared>) -> std::io::Result<()> {
    let number = {
        let mut state = shared.lock();
        state.next_thread += 1;
        state.next_thread
    };
    let shared = Arc::clone(shared);
    std::thread::Builder::new().name(format!("rampart-cpu-{number}")).spawn(move || run_thread(&shared, number))?;
    Ok(())
}

/// Takes the next live job, marking this thread busy with it; `None` when the pool stops.
fn next_job(shared: &Shared, number: u64) -> Option<(CpuWork, CancellationToken, Duration)> {
    let mut state = shared.lock();
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return None;
        }
        let now = Instant::now();
        if let Some(task) = state.queue.pop(now) {
            if task.cancel.is_cancelled() || task.done.is_closed() {
                // Nobody waits for this job any more; do not spend a core on it.
                let _ = task.done.send(Ended::Cancelled);
                continue;
            }
            state.running += 1;
            state.jobs.insert(number, Running { cancel: task.cancel.clone(), done: task.done, cancel_seen: None });
            return Some((task.work, task.cancel, now - task.enqueued));
        }
        state = shared.work_ready.wait(state).unwrap_or_else(PoisonError::into_inner);
    }
}

fn run_thread(shared: &Shared, number: u64) {
    while let Some((work, cancel, queued)) = next_job(shared, number) {
        let started = Instant::now();
        let output = catch_unwind(AssertUnwindSafe(|| work(&cancel)))
            .unwrap_or_else(|payload| Err(JobFailure(panic_message(payload.as_ref()))));
        let ran = started.elapsed();
        let mut state = shared.lock();
        let Some(job) = state.jobs.remove(&number) else {
            // The watchdog abandoned this job and gave the slot to a fresh thread: bow out.
            drop(state);
            shared.abandoned_running.fetch_sub(1, Ordering::AcqRel);
            tracing::info!(ran_ms = ran.as_millis(), "an abandoned CPU job finally returned; its thread exits");
            return;
        };
        state.running -= 1;
        drop(state);
        let ended = if cancel.is_cancelled() && output.is_err() {
            Ended::Cancelled
        } else {
            Ended::Ran(Ran { output, queued, ran })
        };
        let _receiver_gone = job.done.send(ended);
    }
}

/// Abandons jobs that keep running `cancel_grace` after their cancellation. Holds only a weak
/// reference, so it ends with the pool.
fn watchdog(shared: &std::sync::Weak<Shared>) {
    loop {
        let Some(shared) = shared.upgrade() else { return };
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let grace = shared.config.cancel_grace;
        let tick = (grace / 4).clamp(Duration::from_millis(5), Duration::from_millis(250));
        let now = Instant::now();
        let mut abandoned = Vec::new();
        {
            let mut state = shared.lock();
            let overdue: Vec<u64> = state
                .jobs
                .iter_mut()
                .filter(|(_, job)| job.cancel.is_cancelled())
                .filter_map(|(&number, job)| {
                    let seen = *job.cancel_seen.get_or_insert(now);
                    (now.duration_since(seen) >= grace).then_some(number)
                })
                .collect();
            for number in overdue {
                // At the cap a runaway keeps its thread and slot: no more threads are spent.
                if shared.abandoned_running.load(Ordering::Acquire) >= shared.config.max_abandoned {
                    break;
                }
                if let Some(job) = state.jobs.remove(&number) {
                    state.running -= 1;
                    shared.abandoned_running.fetch_add(1, Ordering::AcqRel);
                    abandoned.push(job.done);
                }
            }
        }
        for done in abandoned {
            shared.abandoned.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(grace_ms = grace.as_millis(), "abandoned a CPU job that ignored its cancellation");
            let _ = done.send(Ended::Abandoned);
            if let Err(error) = spawn_thread(&shared) {
                tracing::error!(%error, "cannot start a thread to replace an abandoned one");
            }
            shared.work_ready.notify_one();
        }
        drop(shared);
        std::thread::sleep(tick);
    }
}
