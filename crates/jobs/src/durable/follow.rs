//! Following jobs to their ends: the events this gateway publishes, backed by reading the store
//! now and then (a job may run on another gateway sharing the store), passed on once each and in
//! order.

use super::{
    Jobs,
    events::{JobEvent, Watch},
};
use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::Duration,
};
use tokio::time::Instant;

/// How long a follower first waits for an event before it reads the store itself (a job may
/// run on another gateway sharing the store, and its signals may not reach this one)...
const POLL_FIRST: Duration = Duration::from_secs(1);

/// ...doubling each time the store has no news, up to this: a client following a long job for
/// an hour costs a read every half minute, not every second.
const POLL_MAX: Duration = Duration::from_secs(30);

/// Jobs read from the store per poll at most, so following a large batch stays cheap.
const POLL_LIMIT: usize = 64;

/// Follows some jobs until they end.
pub struct Follower {
    jobs: Arc<Jobs>,
    watch: Watch,
    /// The rank of the last event passed on, for each job not yet ended.
    open: HashMap<Arc<str>, i64>,
    /// Jobs to read at the next poll, in turn.
    poll_order: VecDeque<Arc<str>>,
    ready: VecDeque<JobEvent>,
    /// How long until the next read of the store, if no event comes first.
    poll_every: Duration,
}

impl Follower {
    /// Starts following `ids`. Events from now on are caught; call [`Follower::seed`] with what
    /// the store says to start from the current state.
    pub fn new(jobs: &Arc<Jobs>, ids: &[Arc<str>]) -> Self {
        let watch = jobs.events().watch(ids.iter().cloned());
        Self {
            jobs: Arc::clone(jobs),
            watch,
            open: ids.iter().map(|id| (Arc::clone(id), -1)).collect(),
            poll_order: ids.iter().cloned().collect(),
            ready: VecDeque::new(),
            poll_every: POLL_FIRST,
        }
    }

    /// Offers an event; it is kept if it is news for a job still followed.
    pub fn offer(&mut self, event: JobEvent) {
        let Some(last) = self.open.get_mut(&event.id) else { return };
        let rank = event.rank();
        if rank <= *last {
            return;
        }
        *last = rank;
        if event.status.is_terminal() {
            self.open.remove(&event.id);
        }
        self.ready.push_back(event);
    }

    /// Offers the store's view of every followed job.
    pub async fn seed(&mut self) {
        let ids: Vec<Arc<str>> = self.poll_order.iter().cloned().collect();
        for id in ids {
            if let Ok(Some(record)) = self.jobs.get(&id).await {
                self.offer(JobEvent::of(&record));
            }
        }
    }

    /// Whether every followed job has ended.
    pub fn all_ended(&self) -> bool {
        self.open.is_empty() && self.ready.is_empty()
    }

    /// The jobs not yet ended.
    pub fn unfinished(&self) -> impl Iterator<Item = &Arc<str>> {
        self.open.keys()
    }

    /// The next news, or `None` once every job has ended or `deadline` passed.
    pub async fn next(&mut self, deadline: Instant) -> Option<JobEvent> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            if self.open.is_empty() {
                return None;
            }
            // While the other gateways' signals are heard, a job running on one of them brings
            // its news here; polling is only the safety net.
            let poll_every = if self.jobs.signals_live() { POLL_MAX } else { self.poll_every };
            let poll_at = (Instant::now() + poll_every).min(deadline);
            let events = Arc::clone(self.jobs.events());
            tokio::select! {
                () = events.resynced() => self.poll().await,
                event = self.watch.next() => match event {
                    Some(event) => {
                        self.offer(event);
                        self.poll_every = POLL_FIRST;
                    }
                    None => return None,
                },
                () = tokio::time::sleep_until(poll_at) => {
                    if Instant::now() >= deadline {
                        return None;
                    }
                    let news = self.ready.len();
                    self.poll().await;
                    self.poll_every =
                        if self.ready.len() > news { POLL_FIRST } else { (self.poll_every * 2).min(POLL_MAX) };
                }
            }
        }
    }

    /// Reads a few open jobs from the store, in turn.
    async fn poll(&mut self) {
        for _ in 0..self.poll_order.len().min(POLL_LIMIT) {
            let Some(id) = self.poll_order.pop_front() else { break };
            if !self.open.contains_key(&id) {
                continue;
            }
            if let Ok(Some(record)) = self.jobs.get(&id).await {
                self.offer(JobEvent::of(&record));
            }
            self.poll_order.push_back(id);
        }
    }
}
