//! Jobs started at acceptance. A gateway with free slots and nothing queued that it knows of
//! stores a new job as its first attempt, leased to itself, and starts it at once: one store
//! write where there were three (insert, claim, the payload read back) and no wake-up of the
//! claim loop. With a backlog, new jobs queue behind it as before, so none jumps the line; and a
//! job started this way is leased, renewed, fenced and rescued like any claimed one.

use super::{
    Core,
    attempt::Attempts,
    model::{Accepted, ClaimAtAccept, Claimed, Micros, NewJob},
};
use std::{
    collections::HashMap,
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

/// What deciding needs: the attempts (while the engine runs), the slots promised to jobs being
/// written, and whether the queue was empty when last looked at.
#[derive(Default)]
pub(super) struct Direct {
    /// Held from the engine's start to its stop signal: the completion writer ends only once
    /// every holder of the attempts is gone.
    attempts: RwLock<Option<Attempts>>,
    /// Slots taken by jobs being written, not yet running.
    reserved: AtomicUsize,
    /// The last claim found fewer due jobs than it asked for, and nothing was queued here since.
    queue_empty: AtomicBool,
    /// Jobs were queued here since the claim loop last looked.
    queued_since: AtomicBool,
}

impl Direct {
    /// Starts deciding once the engine's attempts exist.
    pub(super) fn enable(&self, attempts: Attempts) {
        *self.attempts.write().unwrap_or_else(PoisonError::into_inner) = Some(attempts);
    }

    /// Stops starting jobs at acceptance (shutdown): new jobs queue for whoever runs next.
    pub(super) fn disable(&self) {
        self.attempts.write().unwrap_or_else(PoisonError::into_inner).take();
    }

    fn attempts(&self) -> Option<Attempts> {
        self.attempts.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// What the claim loop learnt: whether due jobs are left in the queue.
    pub(super) fn set_queue_empty(&self, empty: bool) {
        self.queue_empty.store(empty, Ordering::Release);
    }

    /// Notes that jobs were queued: the queue is not empty, and the claim loop has new work.
    pub(super) fn note_queued(&self) {
        self.queue_empty.store(false, Ordering::Release);
        self.queued_since.store(true, Ordering::Release);
    }

    /// Whether jobs were queued here since the last call.
    pub(super) fn take_queued_since(&self) -> bool {
        self.queued_since.swap(false, Ordering::AcqRel)
    }

    /// Slots promised to jobs being written.
    pub(super) fn reserved(&self) -> usize {
        self.reserved.load(Ordering::Acquire)
    }

    /// Claims as many of `jobs` as may start now; the rest are queued.
    pub(super) fn take(self: &Arc<Self>, shared: &Core, jobs: &mut [NewJob], lease: Duration, now: Micros) -> Taken {
        let mut taken = Taken { direct: Arc::clone(self), claimed: Vec::new(), reserved: 0, capacity: 0 };
        let Some(attempts) = self.attempts() else { return taken.queued(jobs.len(), self) };
        let capacity = attempts.capacity();
        let in_use = shared.in_flight.len() + self.reserved();
        let mut free = capacity.saturating_sub(in_use);
        if !self.queue_empty.load(Ordering::Acquire) || free == 0 {
            return taken.queued(jobs.len(), self);
        }
        let claim = ClaimAtAccept {
            owner: Arc::clone(&shared.owner),
            lease_until: now.saturating_add(super::micros(lease)),
            token: fastrand::i64(1..),
        };
        let mut per_kind: HashMap<&str, usize> = HashMap::new();
        taken.claimed.reserve(jobs.len());
        for job in jobs.iter_mut() {
            let running = per_kind.entry(&job.kind).or_insert_with(|| shared.in_flight.of_kind(&job.kind));
            let scheduled = job.run_after > now;
            // Jobs under a store-wide limit start through a claim, which counts every gateway's.
            let counted = attempts.kind_limits.store_wide().limits(&job.kind);
            if scheduled || counted || free == 0 || *running >= attempts.kind_limits.of_kind(&job.kind, capacity) {
                taken.claimed.push(None);
                continue;
            }
            *running += 1;
            free -= 1;
            job.claim = Some(claim.clone());
            taken.claimed.push(Some(job.claimed(&claim)));
        }
        taken.reserved = taken.claimed.iter().flatten().count();
        taken.capacity = capacity;
        self.reserved.fetch_add(taken.reserved, Ordering::AcqRel);
        if taken.reserved < jobs.len() {
            self.note_queued();
        }
        taken
    }
}

/// The jobs claimed at acceptance, started once the store has them.
pub(super) struct Taken {
    direct: Arc<Direct>,
    /// Per job of the batch, its attempt if it was claimed.
    claimed: Vec<Option<Claimed>>,
    reserved: usize,
    capacity: usize,
}

impl Taken {
    fn queued(self, count: usize, direct: &Direct) -> Self {
        if count > 0 {
            direct.note_queued();
        }
        self
    }

    /// Whether any job of the batch waits in the queue.
    pub(super) fn any_queued(&self, count: usize) -> bool {
        self.reserved < count
    }

    /// Starts the claimed jobs the store created (a replay returns an earlier job, which runs or
    /// ran on its own).
    pub(super) fn start(mut self, accepted: &[Accepted], now: Micros) {
        // Stopped meanwhile: the jobs stay running under their lease until recovery or rescue
        // requeues them, like any job a stopping gateway did not finish.
        let Some(attempts) = self.direct.attempts() else { return };
        let mut started = 0;
        for (claimed, accepted) in std::mem::take(&mut self.claimed).into_iter().zip(accepted) {
            if let Some(job) = claimed
                && accepted.created
                && accepted.started
            {
                attempts.start(job, now, self.capacity);
                started += 1;
            }
        }
        metrics::counter!("rampart_jobs_started_at_acceptance_total").increment(started);
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        // Started jobs are in flight now; the others never will be: either way the promise ends.
        self.direct.reserved.fetch_sub(self.reserved, Ordering::AcqRel);
    }
}
