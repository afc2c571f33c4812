//! The sweep: rescues jobs whose gateway died (expired leases), prunes finished jobs past their
//! retention and publishes the queue depth.

use super::{Core, model::now_micros};
use crate::config::JobsConfig;
use rampart_common::shutdown::{Every, FirstTick};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};
use tokio_util::sync::CancellationToken;

/// How often old finished jobs are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// The sweep's settings.
pub(super) struct Sweep {
    interval: Duration,
    retention: Duration,
}

impl Sweep {
    pub(super) fn of(jobs: &JobsConfig) -> Self {
        Self { interval: jobs.sweep_interval, retention: jobs.retention }
    }
}

/// Sweeps every interval until `stop`.
pub(super) async fn run(shared: Arc<Core>, sweep: Sweep, stop: CancellationToken) {
    let mut every = Every::new(sweep.interval, FirstTick::Now, stop);
    let mut last_prune: Option<Instant> = None;
    while every.tick().await {
        let now = now_micros();
        match shared.store.rescue(now).await {
            Ok(0) => {}
            Ok(rescued) => {
                tracing::warn!(rescued, "rescued jobs whose gateway stopped renewing their leases");
                metrics::counter!("rampart_jobs_rescued_total").increment(rescued);
                shared.wake.notify_one();
                shared.signal_queued();
            }
            Err(error) => tracing::error!(%error, "cannot rescue jobs with expired leases"),
        }
        if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            last_prune = Some(Instant::now());
            let before = now.saturating_sub(super::micros(sweep.retention));
            let ended_before = super::model::JobFilter { finished_before: Some(before), ..Default::default() };
            match shared.store.purge(&ended_before).await {
                Ok(0) => {}
                Ok(pruned) => tracing::info!(pruned, "pruned finished jobs past their retention"),
                Err(error) => tracing::error!(%error, "cannot prune finished jobs"),
            }
        }
        if let Ok(depth) = shared.store.depth().await {
            #[allow(clippy::cast_precision_loss)] // gauges are f64
            {
                metrics::gauge!("rampart_jobs_queued").set(depth.queued as f64);
                metrics::gauge!("rampart_jobs_running").set(depth.running as f64);
            }
        }
    }
}
