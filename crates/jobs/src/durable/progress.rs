//! Progress of running attempts: a worker's reports arrive on the job's dispatch stream (why
//! there: durable jobs already travel on it, so a report is one more field of a reply the
//! worker sends anyway, needs no connection back to the gateway and costs nothing for jobs that
//! never report). Each report reaches the job's event stream at once, in order, and the store a
//! few times a second at most (for `GET /api/jobs/{id}` on any gateway), the latest report
//! winning; the last one not yet stored is stored with the attempt's end.

use super::{
    Core,
    events::JobEvent,
    model::{JobProgress, Status, now_micros},
};
use crate::workers::ProgressReceiver;
use std::{
    sync::{Arc, Mutex, PoisonError, Weak},
    time::Duration,
};

/// How often one attempt's progress is written to the store at most.
const STORE_EVERY: Duration = Duration::from_millis(200);

/// What one attempt's reports are waiting for: the next number, and the latest report not yet
/// written (with whether a writer is at work on them).
#[derive(Default)]
struct Reports {
    seq: u32,
    unwritten: Option<JobProgress>,
    writing: bool,
}

/// One attempt's reports, followed: one allocation per attempt, whether it reports or not.
pub(super) struct Followed {
    /// Itself, for the writer a first report starts.
    me: Weak<Followed>,
    shared: Arc<Core>,
    id: Arc<str>,
    attempt: i32,
    token: i64,
    reports: Mutex<Reports>,
}

impl Followed {
    /// Follows the reports of the attempt `attempt` of job `id`, fenced by `token`.
    pub(super) fn new(shared: &Arc<Core>, id: &Arc<str>, attempt: i32, token: i64) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            me: Weak::clone(me),
            shared: Arc::clone(shared),
            id: Arc::clone(id),
            attempt,
            token,
            reports: Mutex::default(),
        })
    }

    /// The latest report not yet stored: the attempt's end stores it (a report just before the
    /// end would otherwise wait for a write its job's end refuses).
    pub(super) fn unwritten(&self) -> Option<JobProgress> {
        self.reports().unwritten.take()
    }

    fn reports(&self) -> std::sync::MutexGuard<'_, Reports> {
        self.reports.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ProgressReceiver for Followed {
    fn report(&self, fraction: f64, message: String) {
        let mut reports = self.reports();
        reports.seq = reports.seq.saturating_add(1);
        let progress = JobProgress { fraction, message, attempt: self.attempt, seq: reports.seq };
        self.shared.events.publish(JobEvent {
            id: Arc::clone(&self.id),
            status: Status::Running,
            attempt: self.attempt,
            error: None,
            result: None,
            at: now_micros(),
            progress: Some(progress.clone()),
        });
        reports.unwritten = Some(progress);
        if !reports.writing
            && let Some(me) = self.me.upgrade()
        {
            reports.writing = true;
            tokio::spawn(write(me));
        }
    }
}

/// Writes the latest report, then waits, until none is left unwritten.
async fn write(followed: Arc<Followed>) {
    loop {
        let next = {
            let mut reports = followed.reports();
            match reports.unwritten.take() {
                Some(progress) => progress,
                None => {
                    reports.writing = false;
                    return;
                }
            }
        };
        match followed.shared.store.progress(&followed.id, followed.token, &next).await {
            // The attempt ended or lost its lease: nothing more of it is kept.
            Ok(false) => followed.reports().unwritten = None,
            Ok(true) => followed.shared.signal_changed(&followed.id),
            Err(error) => {
                tracing::debug!(%error, job = %followed.id, "cannot store a job's progress; a later report may be");
            }
        }
        tokio::time::sleep(STORE_EVERY).await;
    }
}
