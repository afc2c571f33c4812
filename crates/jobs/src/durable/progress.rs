//! Progress of running attempts: a worker's reports arrive on the job's dispatch stream (why
//! there: durable jobs already travel on it, so a report is one more field of a reply the
//! worker sends anyway, needs no connection back to the gateway and costs nothing for jobs that
//! never report). Each report reaches the job's event stream at once, in order, and the store a
//! few times a second at most (for `GET /api/jobs/{id}` on any gateway), the latest report
//! winning.

use super::{
    Core,
    events::JobEvent,
    model::{Claimed, JobProgress, Status, now_micros},
};
use crate::workers::OnProgress;
use std::{
    sync::{Arc, Mutex, PoisonError},
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

/// One attempt's reports, followed.
pub(super) struct Followed {
    reports: Arc<Mutex<Reports>>,
    sink: OnProgress,
}

impl Followed {
    /// Where the worker's reports go.
    pub(super) fn sink(&self) -> OnProgress {
        Arc::clone(&self.sink)
    }

    /// The latest report not yet stored: the attempt's end stores it (a report just before the
    /// end would otherwise wait for a write its job's end refuses).
    pub(super) fn unwritten(&self) -> Option<JobProgress> {
        self.reports.lock().unwrap_or_else(PoisonError::into_inner).unwritten.take()
    }
}

/// Follows the reports of `job`'s attempt.
pub(super) fn follow(shared: &Arc<Core>, job: &Claimed) -> Followed {
    let shared = Arc::clone(shared);
    let (id, attempt, token): (Arc<str>, i32, i64) = (Arc::from(job.id.as_str()), job.attempt, job.token);
    let reports = Arc::new(Mutex::new(Reports::default()));
    let held = Arc::clone(&reports);
    let sink: OnProgress = Arc::new(move |fraction, message| {
        let mut state = reports.lock().unwrap_or_else(PoisonError::into_inner);
        state.seq = state.seq.saturating_add(1);
        let progress = JobProgress { fraction, message, attempt, seq: state.seq };
        shared.events.publish(JobEvent {
            id: Arc::clone(&id),
            status: Status::Running,
            attempt,
            error: None,
            result: None,
            at: now_micros(),
            progress: Some(progress.clone()),
        });
        state.unwritten = Some(progress);
        if !state.writing {
            state.writing = true;
            tokio::spawn(write(Arc::clone(&shared), Arc::clone(&id), token, Arc::clone(&reports)));
        }
    });
    Followed { reports: held, sink }
}

/// Writes the latest report, then waits, until none is left unwritten.
async fn write(shared: Arc<Core>, id: Arc<str>, token: i64, reports: Arc<Mutex<Reports>>) {
    loop {
        let next = {
            let mut state = reports.lock().unwrap_or_else(PoisonError::into_inner);
            match state.unwritten.take() {
                Some(progress) => progress,
                None => {
                    state.writing = false;
                    return;
                }
            }
        };
        match shared.store.progress(&id, token, &next).await {
            // The attempt ended or lost its lease: nothing more of it is kept.
            Ok(false) => {
                reports.lock().unwrap_or_else(PoisonError::into_inner).unwritten = None;
            }
            Ok(true) => {}
            Err(error) => tracing::debug!(%error, job = %id, "cannot store a job's progress; a later report may be"),
        }
        tokio::time::sleep(STORE_EVERY).await;
    }
}
