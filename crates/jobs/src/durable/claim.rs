//! The claim loop: takes due jobs from the store while there is free capacity (healthy workers
//! × `worker_slots`) and something may be waiting (a job was accepted here, an attempt ended, a
//! scheduled job or a retry came due, or the slow sweep ticked, for jobs other gateways
//! accepted). No database poll per job: the store says when the next queued job comes due and
//! when the next one expires, and the loop sleeps until the earliest of them. It asks again only
//! when that may have changed (a job scheduled or retried here, the sweep, the time itself).
//! Another gateway's signal that it queued jobs wakes it as a job accepted here does; while the
//! store is unreachable it claims nothing.

use super::{
    Core,
    attempt::Attempts,
    direct::Direct,
    events::JobEvent,
    model::{Micros, NextDue, Status, now_micros},
};
use crate::config::JobsConfig;
use rampart_jobstore::rules::{ClaimRequest, RunningLimits};
use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};
use tokio_util::sync::CancellationToken;

/// How many jobs may run at once, in all and per kind.
#[derive(Clone)]
pub(super) struct KindLimits {
    pub(super) worker_slots: usize,
    jobs: Arc<JobsConfig>,
    /// What the store counts across gateways.
    store_wide: Arc<RunningLimits>,
}

impl KindLimits {
    pub(super) fn of(jobs: &JobsConfig) -> Self {
        Self {
            worker_slots: jobs.worker_slots,
            jobs: Arc::new(jobs.clone()),
            store_wide: Arc::new(jobs.running_limits()),
        }
    }

    /// The limit a job of `kind` is checked against here as it starts: none for a kind whose
    /// limit the store counted as it claimed (this gateway's count lags the store's while ended
    /// jobs are being written, and would send a job back that the store let start).
    pub(super) fn checked_here(&self, kind: &str, capacity: usize) -> Option<usize> {
        (!self.store_wide.kinds.contains_key(kind)).then(|| self.of_kind(kind, capacity))
    }

    /// The limits the store counts across every gateway.
    pub(super) fn store_wide(&self) -> &Arc<RunningLimits> {
        &self.store_wide
    }

    /// The most jobs of `kind` that may run at once when `capacity` slots exist.
    pub(super) fn of_kind(&self, kind: &str, capacity: usize) -> usize {
        self.jobs.kind_limit(kind, capacity)
    }

    /// The `[jobs]` settings attempts' outcomes are judged by (attempts, backoff).
    pub(super) fn jobs(&self) -> &JobsConfig {
        &self.jobs
    }
}

/// The claim loop and its settings.
pub(super) struct Claimer {
    attempts: Attempts,
    /// Told whether the queue has due jobs left, to start new ones at acceptance only if not.
    direct: Arc<Direct>,
    batch: usize,
    lease: Duration,
    sweep_interval: Duration,
}

impl Claimer {
    pub(super) fn new(attempts: Attempts, jobs: &JobsConfig, direct: Arc<Direct>) -> Self {
        Self { attempts, direct, batch: jobs.claim_batch, lease: jobs.lease, sweep_interval: jobs.sweep_interval }
    }

    /// Claims until `stop`.
    pub(super) async fn run(self, stop: CancellationToken) {
        let shared = Arc::clone(&self.attempts.shared);
        let mut sweep = tokio::time::interval(self.sweep_interval);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The last claim leaving kinds out found nothing: every due job is of a kind at its
        // limit. Such a claim reads the whole queue, so it is not repeated until jobs are queued,
        // a kind leaves its limit or the sweep ticks.
        let mut fruitless = false;
        let mut swept = true;
        let mut next = NextDue::default();
        let mut look_ahead = true;
        // The tenant served last: the next claim's round starts after it.
        let mut last_tenant: Option<String> = None;
        loop {
            if look_ahead || shared.schedule_changed.swap(false, Ordering::AcqRel) {
                look_ahead = false;
                next = look_ahead_and_expire(&shared).await;
            }
            let capacity = self.attempts.capacity();
            let free = capacity.saturating_sub(shared.in_flight.len() + self.direct.reserved());
            // Cut off from the store, nothing is claimed until a heartbeat gets through again.
            if free > 0 && shared.cluster.reachable() {
                let queued_since = self.direct.take_queued_since();
                let limits = &self.attempts.kind_limits;
                let of_kind = |kind: &str| limits.of_kind(kind, capacity);
                // A job over its kind's limit would go straight back to the queue: ask for no
                // more than the roomiest running kind can start, plus room for kinds not running.
                let room = shared.in_flight.largest_room(of_kind).map_or(usize::MAX, |room| room + UNSEEN_KINDS);
                let limit = free.min(self.batch).min(room);
                let excluded = shared.in_flight.kinds_at_limit(of_kind);
                let skip = fruitless && !excluded.is_empty() && !queued_since && !swept;
                swept = false;
                if skip {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = shared.wake.notified() => {}
                        () = shared.cluster.rejoined() => (swept, look_ahead) = (true, true),
                        _ = sweep.tick() => (swept, look_ahead) = (true, true),
                        () = sleep_until_due(next) => look_ahead = true,
                    }
                    continue;
                }
                let now = now_micros();
                let lease_until = now.saturating_add(super::micros(self.lease));
                let request = ClaimRequest::new(limit, &shared.owner, lease_until, now)
                    .excluding(&excluded)
                    .after_tenant(last_tenant.as_deref())
                    .with_limits(Arc::clone(limits.store_wide()));
                match shared.store.claim(&request).await {
                    Ok(claimed) => {
                        if let Some(last) = claimed.last() {
                            last_tenant = Some(last.tenant.clone());
                        }
                        let full_batch = claimed.len() == limit;
                        fruitless = claimed.is_empty() && !excluded.is_empty();
                        // Jobs of kinds at their limit were not asked for: they may still wait.
                        self.direct.set_queue_empty(!full_batch && excluded.is_empty());
                        for job in claimed {
                            self.attempts.start(job, now, capacity);
                        }
                        if full_batch {
                            // More may be waiting: claim again before sleeping.
                            continue;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot claim jobs; trying again at the next sweep");
                    }
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = shared.wake.notified() => {}
                () = shared.cluster.rejoined() => (swept, look_ahead) = (true, true),
                _ = sweep.tick() => (swept, look_ahead) = (true, true),
                () = sleep_until_due(next) => look_ahead = true,
            }
        }
    }
}

/// Ends the queued jobs past their `start_by` and learns when the next queued job comes due and
/// when the next one expires.
async fn look_ahead_and_expire(shared: &Core) -> NextDue {
    // Twice at most: once more after expiring jobs, for the next expiry after them.
    for round in 0..2 {
        let now = now_micros();
        let next = match shared.store.next_due(now).await {
            Ok(next) => next,
            Err(error) => {
                tracing::warn!(%error, "cannot read when queued jobs come due; looking again at the next sweep");
                return NextDue::default();
            }
        };
        if round == 1 || next.expiry.is_none_or(|expiry| expiry >= now) {
            return next;
        }
        match shared.store.expire(now).await {
            Ok(expired) => {
                metrics::counter!("rampart_jobs_expired_total").increment(expired.len() as u64);
                for id in expired {
                    shared.events.publish(JobEvent {
                        id: Arc::from(id),
                        status: Status::Expired,
                        attempt: 0,
                        error: Some(super::model::EXPIRED_ERROR.to_owned()),
                        result: None,
                        at: now,
                        progress: None,
                    });
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot expire queued jobs past their start_by; trying again at the next sweep");
                return NextDue::default();
            }
        }
    }
    NextDue::default()
}

/// Sleeps until the next queued job comes due or expires (forever if none will).
async fn sleep_until_due(next: NextDue) {
    // A job expires once its start_by has passed, so just after it.
    let at = match (next.run, next.expiry.map(|expiry| expiry.saturating_add(1))) {
        (Some(run), Some(expiry)) => run.min(expiry),
        (Some(at), None) | (None, Some(at)) => at,
        (None, None) => return std::future::pending().await,
    };
    tokio::time::sleep(until(at)).await;
}

/// How long until `at` on the store's clock.
fn until(at: Micros) -> Duration {
    Duration::from_micros(u64::try_from(at.saturating_sub(now_micros())).unwrap_or(0))
}

/// Jobs a claim may take beyond what running kinds have room for: kinds that are not running
/// have room too, and a claim that fills up is followed at once by another.
const UNSEEN_KINDS: usize = 32;
