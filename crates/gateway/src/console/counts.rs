//! Job counts for the console, counted in the background: a count over every job in a large
//! store takes longer than a page may (about 1 s for SQLite and 0.3 s for PostgreSQL with a
//! million jobs), so pages show the latest count and its age, and asking for a count that is
//! older than [`FRESH`] starts the next one. Nothing is counted while no one looks.

use rampart_jobs::durable::{
    Jobs,
    model::{JobFilter, Status, now_micros, waited_seconds},
};
use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

/// How old a count may be before a page asks for the next.
pub(super) const FRESH: Duration = Duration::from_secs(2);

/// How long a page waits for the first count before showing none.
const FIRST_WAIT: Duration = Duration::from_millis(50);

/// The most kinds whose oldest queued job is looked up (each is a few index seeks).
const MAX_KINDS_AGED: usize = 50;

/// One kind's queue.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct KindQueue {
    /// The kind.
    pub(super) kind: String,
    /// Its jobs in each status that has any.
    pub(super) by_status: BTreeMap<&'static str, i64>,
    /// How long its oldest due queued job has waited, in seconds.
    pub(super) oldest_queued_seconds: Option<f64>,
}

/// The store's jobs counted once.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Snapshot {
    /// When the count was made.
    pub(super) taken: Instant,
    /// How long it took.
    pub(super) took: Duration,
    /// Jobs in each status, in [`Status::ALL`] order.
    pub(super) by_status: Vec<(&'static str, i64)>,
    /// Per kind, by name.
    pub(super) kinds: Vec<KindQueue>,
    /// How long the oldest due queued job of all has waited, in seconds.
    pub(super) oldest_queued_seconds: Option<f64>,
}

/// The latest count and the task that makes the next.
pub(super) struct Counts {
    jobs: Arc<Jobs>,
    latest: watch::Sender<Option<Arc<Snapshot>>>,
    wanted: Notify,
}

impl Counts {
    /// Counts of `jobs`' store, none made yet.
    pub(super) fn new(jobs: Arc<Jobs>) -> Arc<Self> {
        Arc::new(Self { jobs, latest: watch::Sender::new(None), wanted: Notify::new() })
    }

    /// The latest count, asking for a new one if it is stale; waits briefly for the very first.
    pub(super) async fn latest(&self) -> Option<Arc<Snapshot>> {
        let current = self.latest.borrow().clone();
        if current.as_ref().is_none_or(|snapshot| snapshot.taken.elapsed() >= FRESH) {
            self.wanted.notify_one();
        }
        if current.is_some() {
            return current;
        }
        let mut receiver = self.latest.subscribe();
        let first = tokio::time::timeout(FIRST_WAIT, receiver.wait_for(Option::is_some)).await;
        first.ok().and_then(Result::ok).and_then(|snapshot| snapshot.clone())
    }

    /// Counts whenever asked until `stop`, never more often than every [`FRESH`] nor than
    /// twice as long as a count takes, so a slow store is never kept busy by the console.
    pub(super) async fn keep_counting(self: Arc<Self>, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = self.wanted.notified() => {}
                () = stop.cancelled() => return,
            }
            let started = Instant::now();
            match self.count().await {
                Ok(snapshot) => {
                    self.latest.send_replace(Some(Arc::new(snapshot)));
                }
                Err(error) => tracing::warn!(%error, "the console could not count the jobs"),
            }
            let pause = FRESH.max(started.elapsed() * 2);
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    async fn count(&self) -> Result<Snapshot, rampart_jobs::durable::store::StoreError> {
        let started = Instant::now();
        let stats = self.jobs.stats(JobFilter::default()).await?;
        let (by_status, kinds) = stats.totals();
        let now = now_micros();
        let age = |due| waited_seconds(due, now);
        let mut queues = Vec::with_capacity(kinds.len());
        for (n, (kind, by_status)) in kinds.into_iter().enumerate() {
            let queued = by_status.get(Status::Queued.as_str()).copied().unwrap_or(0);
            let oldest_queued_seconds = if queued > 0 && n < MAX_KINDS_AGED {
                let filter = JobFilter { kind: Some(kind.clone()), ..JobFilter::default() };
                self.jobs.oldest_due(filter).await?.map(age)
            } else {
                None
            };
            queues.push(KindQueue { kind, by_status, oldest_queued_seconds });
        }
        Ok(Snapshot {
            taken: Instant::now(),
            took: started.elapsed(),
            by_status: Status::ALL
                .iter()
                .map(|status| (status.as_str(), by_status.get(status.as_str()).copied().unwrap_or(0)))
                .collect(),
            kinds: queues,
            oldest_queued_seconds: stats.oldest_due.map(age),
        })
    }
}
