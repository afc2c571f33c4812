//! A million concurrent 1 ms sleep jobs through the worker engine in one process: the article's
//! first demo (a million goroutines that each sleep 1 ms), done with Rampart's real job
//! bookkeeping: kind lookup, payload parsing, pool admission, cancellation tokens, timings.
//!
//! `cargo run --release -p rampart-worker --example million [-- JOBS]`
//!
//! Prints the wall time, the peak resident memory and the most jobs in flight at once. One
//! producer per core, each on its own current-thread runtime (thread per core), submits its
//! share, each job as its own task, keeping a window of jobs in flight as a gateway would.
//! `--all-at-once` spawns every job before any finishes instead; `--multi-thread` uses one
//! work-stealing runtime instead of a runtime per core.
//! `bench/million.sh` runs it beside the article's Go program.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use bytes::Bytes;
use rampart_worker::{Engine, EngineConfig, JobSpec, Registry};
use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};
use tokio::sync::Semaphore;

/// The allocator the worker binary uses, so the figures are the deployed engine's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Jobs each producer keeps in flight at once: enough to keep its core busy, few enough that a
/// job's 1 ms timer fires on time instead of queueing behind a backlog of unstarted tasks.
const WINDOW: usize = 8192;

fn main() -> anyhow::Result<()> {
    let mut jobs = 1_000_000;
    let mut all_at_once = false;
    let mut multi_thread = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--all-at-once" => all_at_once = true,
            "--multi-thread" => multi_thread = true,
            number => {
                jobs = number.parse().map_err(|_| {
                    anyhow::anyhow!("usage: million [JOBS] [--all-at-once] [--multi-thread] (got {number:?})")
                })?;
            }
        }
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let config = EngineConfig { io_concurrency: jobs, io_queue: 0, ..EngineConfig::default() };
    let engine = Arc::new(Engine::start(Registry::builtin(), &config)?);
    let counters = Counters::default();
    let window = if all_at_once { jobs } else { WINDOW };
    let share = |producer: usize| jobs / cores + usize::from(producer < jobs % cores);

    let started = Instant::now();
    if multi_thread {
        // One multi-thread runtime; one producer task per core.
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        runtime.block_on(async {
            let producers: Vec<_> = (0..cores)
                .map(|producer| tokio::spawn(produce(Arc::clone(&engine), share(producer), window, counters.clone())))
                .collect();
            for producer in producers {
                producer.await.expect("producer panicked");
            }
        });
    } else {
        // Thread per core: a current-thread runtime on each, all sharing the one engine.
        std::thread::scope(|scope| -> anyhow::Result<()> {
            let mut threads = Vec::new();
            for producer in 0..cores {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                let (engine, counters) = (Arc::clone(&engine), counters.clone());
                threads.push(scope.spawn(move || runtime.block_on(produce(engine, share(producer), window, counters))));
            }
            for thread in threads {
                thread.join().map_err(|_| anyhow::anyhow!("producer thread panicked"))?;
            }
            Ok(())
        })?;
    }
    let elapsed = started.elapsed();
    let succeeded = counters.succeeded.load(Ordering::Relaxed);
    let peak = counters.peak.load(Ordering::Relaxed);
    let peak_rss = rampart_common::process::peak_resident_bytes().unwrap_or(0);
    #[allow(clippy::cast_precision_loss)]
    let peak_mb = peak_rss as f64 / 1e6;
    let runtime = if multi_thread { "one multi-thread runtime" } else { "a current-thread runtime per core" };
    println!(
        "{jobs} jobs of 1 ms sleep on {runtime}: wall {:.3} s, peak RSS {peak_mb:.1} MB, {succeeded} succeeded, at most {peak} in flight",
        elapsed.as_secs_f64()
    );
    anyhow::ensure!(succeeded == jobs, "{} jobs failed", jobs - succeeded);
    Ok(())
}

/// Shared tallies of the run.
#[derive(Clone, Default)]
struct Counters {
    succeeded: Arc<AtomicUsize>,
    in_flight: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

/// Submits `jobs` sleep jobs, each as its own task, keeping at most `window` in flight, and waits
/// for all of them.
async fn produce(engine: Arc<Engine>, jobs: usize, window: usize, counters: Counters) {
    let slots = Arc::new(Semaphore::new(window));
    let payload = Bytes::from_static(br#"{"ms":1}"#);
    for _ in 0..jobs {
        let slot = Arc::clone(&slots).acquire_owned().await.expect("semaphore open");
        let (engine, payload, counters) = (Arc::clone(&engine), payload.clone(), counters.clone());
        tokio::spawn(async move {
            let now = counters.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
            counters.peak.fetch_max(now, Ordering::Relaxed);
            if let Ok(finished) = engine.run(JobSpec::new("sleep", payload)).await
                && finished.output.is_ok()
            {
                counters.succeeded.fetch_add(1, Ordering::Relaxed);
            }
            counters.in_flight.fetch_sub(1, Ordering::Relaxed);
            drop(slot);
        });
    }
    // Every slot back means every job of this producer has finished.
    let _all = slots.acquire_many(u32::try_from(window).unwrap_or(u32::MAX)).await.expect("semaphore open");
}
