//! Figures of the process's tokio runtimes (a gateway runs one per serving thread besides its
//! main one), for `/metrics` and `/debug/runtime`.

use serde::Serialize;
use std::{
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};
use tokio::runtime::Handle;

static RUNTIMES: Mutex<Vec<(&'static str, Handle)>> = Mutex::new(Vec::new());

/// Adds the current runtime to those reported, under `name` (for example `main`, `serving-0`).
/// Call it from inside the runtime.
pub fn register(name: &'static str) {
    if let Ok(handle) = Handle::try_current() {
        RUNTIMES.lock().unwrap_or_else(PoisonError::into_inner).push((name, handle));
    }
}

/// One reading of one runtime.
#[derive(Debug, Clone, Serialize)]
pub struct RuntimeFigures {
    /// The name it was registered under.
    pub name: &'static str,
    /// Worker threads.
    pub workers: usize,
    /// Tasks alive (spawned and not yet finished).
    pub alive_tasks: usize,
    /// Tasks waiting in the runtime's shared queue.
    pub global_queue_depth: usize,
    /// Time its workers spent busy, summed over workers, since the runtime started.
    #[serde(skip)]
    pub busy: Duration,
    /// Share of the workers' time spent busy over the reading's window (0 to 1), when measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub busy_ratio: Option<f64>,
}

/// Reads every registered runtime.
pub fn read() -> Vec<RuntimeFigures> {
    let runtimes = RUNTIMES.lock().unwrap_or_else(PoisonError::into_inner).clone();
    runtimes
        .into_iter()
        .map(|(name, handle)| {
            let metrics = handle.metrics();
            let workers = metrics.num_workers();
            RuntimeFigures {
                name,
                workers,
                alive_tasks: metrics.num_alive_tasks(),
                global_queue_depth: metrics.global_queue_depth(),
                busy: (0..workers).map(|worker| metrics.worker_total_busy_duration(worker)).sum(),
                busy_ratio: None,
            }
        })
        .collect()
}

/// Reads every registered runtime twice, `window` apart, and fills in the busy ratio.
pub async fn read_over(window: Duration) -> Vec<RuntimeFigures> {
    let before = read();
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let elapsed = started.elapsed();
    let mut after = read();
    for figures in &mut after {
        if let Some(earlier) = before.iter().find(|earlier| earlier.name == figures.name) {
            #[allow(clippy::cast_precision_loss)] // a handful of workers
            let capacity = elapsed.as_secs_f64() * figures.workers.max(1) as f64;
            let busy = figures.busy.saturating_sub(earlier.busy).as_secs_f64();
            figures.busy_ratio = Some((busy / capacity).clamp(0.0, 1.0));
        }
    }
    after
}

/// Sets the runtime gauges: `rampart_tokio_workers`, `rampart_tokio_alive_tasks`,
/// `rampart_tokio_global_queue_depth` and `rampart_tokio_busy_seconds` (cumulative; take its
/// rate) by runtime.
pub fn record_metrics() {
    for figures in read() {
        #[allow(clippy::cast_precision_loss)] // small counts
        {
            metrics::gauge!("rampart_tokio_workers", "runtime" => figures.name).set(figures.workers as f64);
            metrics::gauge!("rampart_tokio_alive_tasks", "runtime" => figures.name).set(figures.alive_tasks as f64);
            metrics::gauge!("rampart_tokio_global_queue_depth", "runtime" => figures.name)
                .set(figures.global_queue_depth as f64);
        }
        metrics::gauge!("rampart_tokio_busy_seconds", "runtime" => figures.name).set(figures.busy.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_registered_runtime_reports_its_work() {
        register("test");
        // Busy time is published as workers go through their scheduling loop, so the spinner
        // yields now and then.
        let spinning = tokio::spawn(async {
            let started = Instant::now();
            while started.elapsed() < Duration::from_millis(300) {
                let slice = Instant::now();
                while slice.elapsed() < Duration::from_millis(1) {
                    std::hint::black_box(0);
                }
                tokio::task::yield_now().await;
            }
        });
        let figures = read_over(Duration::from_millis(200)).await;
        spinning.await.unwrap();
        let test = figures.iter().find(|figures| figures.name == "test").unwrap();
        assert_eq!(test.workers, 2);
        let ratio = test.busy_ratio.unwrap();
        assert!(ratio > 0.2, "one of two workers spun through the window: {ratio}");
    }
}
