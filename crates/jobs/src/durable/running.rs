//! The jobs this gateway is running: their leases to renew, their kinds to cap, and the handle
//! that stops each one.

use super::{model::Micros, store::Lease};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};
use tokio_util::sync::CancellationToken;

/// Why a running job is being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A client cancelled it.
    Cancelled,
    /// Its lease passed to another gateway: its outcome would be refused.
    LeaseLost,
    /// This gateway is shutting down.
    Shutdown,
}

/// How to stop one running job, and why it was stopped.
#[derive(Debug, Clone, Default)]
pub struct Stopper {
    token: CancellationToken,
    reason: Arc<Mutex<Option<StopReason>>>,
}

impl Stopper {
    /// Stops the job for `reason` (the first reason given stays).
    pub fn stop(&self, reason: StopReason) {
        self.reason.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(reason);
        self.token.cancel();
    }

    /// Resolves when the job is told to stop, with why.
    pub async fn stopped(&self) -> StopReason {
        self.token.cancelled().await;
        self.reason.lock().unwrap_or_else(PoisonError::into_inner).unwrap_or(StopReason::Shutdown)
    }
}

struct Running {
    token: i64,
    /// Until when this gateway last knew its lease to hold.
    leased_until: Micros,
    kind: Arc<str>,
    stopper: Stopper,
    /// Its outcome is on its way to the store: its lease needs no renewal, and a renewal that
    /// finds it gone (the outcome got there first) has lost nothing.
    finishing: bool,
}

#[derive(Default)]
struct State {
    jobs: HashMap<Arc<str>, Running>,
    per_kind: HashMap<Arc<str>, usize>,
}

/// The registry of running jobs.
#[derive(Default)]
pub struct RunningJobs {
    state: Mutex<State>,
}

impl RunningJobs {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a job leased until `leased_until`; returns its stopper and whether its kind was
    /// already at `limit`.
    pub fn add(
        &self,
        id: Arc<str>,
        token: i64,
        leased_until: Micros,
        kind: Arc<str>,
        limit: Option<usize>,
    ) -> (Stopper, bool) {
        let stopper = Stopper::default();
        let mut state = self.state();
        let running = state.per_kind.entry(Arc::clone(&kind)).or_insert(0);
        let over = limit.is_some_and(|limit| *running >= limit);
        *running += 1;
        state.jobs.insert(id, Running { token, leased_until, kind, stopper: stopper.clone(), finishing: false });
        (stopper, over)
    }

    /// Forgets a job that ended.
    pub fn remove(&self, id: &str) {
        let mut state = self.state();
        if let Some(running) = state.jobs.remove(id)
            && let Some(count) = state.per_kind.get_mut(&running.kind)
        {
            *count -= 1;
            if *count == 0 {
                state.per_kind.remove(&running.kind);
            }
        }
    }

    /// Jobs running.
    pub fn len(&self) -> usize {
        self.state().jobs.len()
    }

    /// Whether none is running.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Jobs of `kind` running.
    pub fn of_kind(&self, kind: &str) -> usize {
        self.state().per_kind.get(kind).copied().unwrap_or(0)
    }

    /// The most jobs of any one running kind that may start before it reaches its limit, or
    /// none when nothing runs.
    pub fn largest_room(&self, limit: impl Fn(&str) -> usize) -> Option<usize> {
        let state = self.state();
        state.per_kind.iter().map(|(kind, running)| limit(kind).saturating_sub(*running)).max()
    }

    /// The kinds running at or over their limit, as `limit` gives it for each kind.
    pub fn kinds_at_limit(&self, limit: impl Fn(&str) -> usize) -> Vec<String> {
        let state = self.state();
        state
            .per_kind
            .iter()
            .filter(|(kind, running)| **running >= limit(kind))
            .map(|(kind, _)| kind.to_string())
            .collect()
    }

    /// Marks a job's attempt as ended, its outcome on the way to the store.
    pub fn finishing(&self, id: &str) {
        if let Some(running) = self.state().jobs.get_mut(id) {
            running.finishing = true;
        }
    }

    /// Whether the attempt holding `lease` still runs here (not ended, not replaced).
    pub fn holds(&self, lease: &Lease) -> bool {
        self.state()
            .jobs
            .get(lease.id.as_str())
            .is_some_and(|running| running.token == lease.token && !running.finishing)
    }

    /// The leases of every job still running (not those whose outcome is being written).
    pub fn leases(&self) -> Vec<Lease> {
        self.state()
            .jobs
            .iter()
            .filter(|(_, running)| !running.finishing)
            .map(|(id, running)| Lease { id: id.to_string(), token: running.token })
            .collect()
    }

    /// Notes that `renewed` leases now hold until `until`.
    pub fn renewed(&self, renewed: &[Lease], until: Micros) {
        let mut state = self.state();
        for lease in renewed {
            if let Some(running) = state.jobs.get_mut(lease.id.as_str())
                && running.token == lease.token
            {
                running.leased_until = running.leased_until.max(until);
            }
        }
    }

    /// Whether job `id`'s lease, as last renewed, ended before `at`.
    pub fn lease_ended_before(&self, id: &str, at: Micros) -> bool {
        self.state().jobs.get(id).is_some_and(|running| running.leased_until < at)
    }

    /// The jobs still running whose lease, as last renewed, ends before `before`.
    pub fn expiring(&self, before: Micros) -> Vec<Arc<str>> {
        self.state()
            .jobs
            .iter()
            .filter(|(_, running)| !running.finishing && running.leased_until < before)
            .map(|(id, _)| Arc::clone(id))
            .collect()
    }

    /// Stops one job, if it runs here; returns whether it did.
    pub fn stop(&self, id: &str, reason: StopReason) -> bool {
        let stopper = self.state().jobs.get(id).map(|running| running.stopper.clone());
        stopper.map(|stopper| stopper.stop(reason)).is_some()
    }

    /// Stops every job.
    pub fn stop_all(&self, reason: StopReason) {
        let stoppers: Vec<Stopper> = self.state().jobs.values().map(|running| running.stopper.clone()).collect();
        for stopper in stoppers {
            stopper.stop(reason);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[tokio::test]
    async fn tracks_kinds_against_their_limits_and_stops_jobs() {
        let in_flight = RunningJobs::default();
        let limits = BTreeMap::from([("sleep".to_owned(), 2)]);
        let limits = |kind: &str| limits.get(kind).copied().unwrap_or(usize::MAX);
        let (_, over) = in_flight.add("a".into(), 1, 0, "sleep".into(), Some(2));
        assert!(!over);
        let (stopper, over) = in_flight.add("b".into(), 2, 0, "sleep".into(), Some(2));
        assert!(!over);
        assert_eq!(in_flight.kinds_at_limit(limits), ["sleep"]);
        let (_, over) = in_flight.add("c".into(), 3, 0, "sleep".into(), Some(2));
        assert!(over, "a third sleep is over the limit");
        in_flight.remove("c");
        in_flight.remove("a");
        assert!(in_flight.kinds_at_limit(limits).is_empty());
        assert!(in_flight.stop("b", StopReason::Cancelled));
        assert!(!in_flight.stop("zzz", StopReason::Cancelled));
        assert_eq!(stopper.stopped().await, StopReason::Cancelled);
        assert_eq!(in_flight.leases().len(), 1);
        let lease = Lease { id: "b".into(), token: 2 };
        assert!(in_flight.holds(&lease) && !in_flight.holds(&Lease { token: 9, ..lease.clone() }));
        in_flight.finishing("b");
        assert!(in_flight.leases().is_empty(), "an ended attempt's lease is not renewed");
        assert!(!in_flight.holds(&lease), "and a renewal that misses it has lost nothing");
        in_flight.remove("b");
        assert!(in_flight.is_empty());
    }
}
