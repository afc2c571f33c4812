//! Job status changes as they happen in this gateway, for clients waiting on jobs (`?wait=`,
//! Server-Sent Events, batches). Nothing is kept for jobs nobody watches.

use super::model::{JobProgress, JobRecord, Micros, Status};
use bytes::Bytes;
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};
use tokio::sync::mpsc;

/// A job's status changed.
#[derive(Debug, Clone)]
pub struct JobEvent {
    /// The job.
    pub id: Arc<str>,
    /// Its new status.
    pub status: Status,
    /// Attempts started so far.
    pub attempt: i32,
    /// The error that ended an attempt, for retries and failures.
    pub error: Option<String>,
    /// The result, when it succeeded.
    pub result: Option<Bytes>,
    /// When.
    pub at: Micros,
    /// For a running job: the progress its attempt last reported, if it did.
    pub progress: Option<JobProgress>,
}

impl JobEvent {
    /// The event a stored record stands for.
    pub fn of(record: &JobRecord) -> Self {
        Self {
            id: Arc::from(record.id.as_str()),
            status: record.status,
            attempt: record.attempt,
            error: record.error.clone(),
            result: record.result.clone(),
            at: record.finished_at.or(record.started_at).unwrap_or(record.created_at),
            // An earlier attempt's report says nothing of this one.
            progress: record
                .progress
                .clone()
                .filter(|progress| record.status == Status::Running && progress.attempt == record.attempt),
        }
    }

    /// Where the event falls in a job's life: later events rank higher, so a watcher that sees
    /// the same change twice (from this gateway and from the store) passes it on once, in order.
    /// A job goes queued (attempt 0) → running (1) → its progress reports, in order → queued
    /// (1, to retry) → running (2) → … → an end.
    pub fn rank(&self) -> i64 {
        let attempt = i64::from(self.attempt.max(0));
        let report = self.progress.as_ref().map_or(0, |progress| i64::from(progress.seq));
        match self.status {
            Status::Running => ((2 * attempt) << 32) + report,
            Status::Queued => (2 * attempt + 1) << 32,
            Status::Succeeded | Status::Failed | Status::Cancelled | Status::Dead | Status::Expired => i64::MAX,
        }
    }
}

/// Events travel to watchers shared (one allocation per event, however many watch it), so that a
/// watcher's channel holds pointers, not whole events: an idle watcher's queue stays small.
type Watchers = HashMap<Arc<str>, Vec<(u64, mpsc::UnboundedSender<Arc<JobEvent>>)>>;

/// Routes each job's events to whoever watches that job.
#[derive(Default)]
pub struct EventHub {
    watchers: Mutex<Watchers>,
    /// Jobs watched; publishing skips the lock when it is zero (the common case under load).
    watched: AtomicUsize,
    next_watch: AtomicU64,
    /// Told when news may have been missed (signals from other gateways were lost): watchers
    /// read the store.
    resync: tokio::sync::Notify,
}

impl EventHub {
    /// Sends `event` to the job's watchers, if any.
    pub fn publish(&self, event: JobEvent) {
        if self.watched.load(Ordering::Acquire) == 0 {
            return;
        }
        let watchers = self.watchers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(senders) = watchers.get(&event.id) {
            let event = Arc::new(event);
            for (_, sender) in senders {
                let _ = sender.send(Arc::clone(&event));
            }
        }
    }

    /// Whether anyone here watches job `id`.
    pub fn is_watched(&self, id: &str) -> bool {
        self.watched.load(Ordering::Acquire) > 0
            && self.watchers.lock().unwrap_or_else(PoisonError::into_inner).contains_key(id)
    }

    /// Tells every watcher that news may have been missed, so it reads the store.
    pub fn resync(&self) {
        self.resync.notify_waiters();
    }

    /// Resolves at the next [`EventHub::resync`].
    pub async fn resynced(&self) {
        self.resync.notified().await;
    }

    /// Starts watching `ids`; events arrive on the returned watch until it is dropped.
    pub fn watch(self: &Arc<Self>, ids: impl IntoIterator<Item = Arc<str>>) -> Watch {
        let (sender, events) = mpsc::unbounded_channel();
        let key = self.next_watch.fetch_add(1, Ordering::Relaxed);
        let ids: Vec<Arc<str>> = ids.into_iter().collect();
        {
            let mut watchers = self.watchers.lock().unwrap_or_else(PoisonError::into_inner);
            for id in &ids {
                let entry = watchers.entry(Arc::clone(id)).or_default();
                if entry.is_empty() {
                    self.watched.fetch_add(1, Ordering::AcqRel);
                }
                entry.push((key, sender.clone()));
            }
        }
        Watch { hub: Arc::clone(self), key, ids, events }
    }
}

/// A subscription to some jobs' events.
pub struct Watch {
    hub: Arc<EventHub>,
    key: u64,
    ids: Vec<Arc<str>>,
    events: mpsc::UnboundedReceiver<Arc<JobEvent>>,
}

impl Watch {
    /// The next event of a watched job.
    pub async fn next(&mut self) -> Option<JobEvent> {
        self.events.recv().await.map(Arc::unwrap_or_clone)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut watchers = self.hub.watchers.lock().unwrap_or_else(PoisonError::into_inner);
        for id in &self.ids {
            if let Some(entry) = watchers.get_mut(id) {
                entry.retain(|(key, _)| *key != self.key);
                if entry.is_empty() {
                    watchers.remove(id);
                    self.hub.watched.fetch_sub(1, Ordering::AcqRel);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, status: Status, attempt: i32) -> JobEvent {
        JobEvent { id: Arc::from(id), status, attempt, error: None, result: None, at: 0, progress: None }
    }

    fn progress(attempt: i32, seq: u32) -> JobProgress {
        JobProgress { fraction: 0.5, message: String::new(), attempt, seq }
    }

    #[test]
    fn ranks_follow_a_jobs_life() {
        let life = [
            event("a", Status::Queued, 0),
            event("a", Status::Running, 1),
            JobEvent { progress: Some(progress(1, 1)), ..event("a", Status::Running, 1) },
            JobEvent { progress: Some(progress(1, 2)), ..event("a", Status::Running, 1) },
            event("a", Status::Queued, 1),
            event("a", Status::Running, 2),
            event("a", Status::Dead, 2),
        ];
        assert!(life.windows(2).all(|pair| pair[0].rank() < pair[1].rank()));
    }

    #[tokio::test]
    async fn watchers_get_their_jobs_events_and_leave_nothing_behind() {
        let hub = Arc::new(EventHub::default());
        hub.publish(event("a", Status::Running, 1));
        let mut both = hub.watch([Arc::from("a"), Arc::from("b")]);
        let mut only_b = hub.watch([Arc::from("b")]);
        hub.publish(event("a", Status::Succeeded, 1));
        hub.publish(event("b", Status::Running, 1));
        hub.publish(event("c", Status::Running, 1));
        assert_eq!(&*both.next().await.unwrap().id, "a");
        assert_eq!(&*both.next().await.unwrap().id, "b");
        assert_eq!(&*only_b.next().await.unwrap().id, "b");
        drop(both);
        drop(only_b);
        assert_eq!(hub.watched.load(Ordering::Acquire), 0);
        assert!(hub.watchers.lock().unwrap().is_empty());
    }
}
