//! The completion writer: the attempts' outcomes written in batches, fenced by each attempt's
//! token; then their events, metrics and freed slots.

use super::{
    Core,
    attempt::Finished,
    events::JobEvent,
    model::{Completion, ErrorChange, Micros, Outcome, now_micros},
};
use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};
use tokio::sync::mpsc;

/// Most completions written in one batch.
const BATCH: usize = 1024;

/// Writes what arrives on `inbox` until every sender is gone. A retry due later tells the claim
/// loop to learn again when it must next wake.
pub(super) async fn run(shared: Arc<Core>, mut inbox: mpsc::UnboundedReceiver<Finished>) {
    let mut batch = Vec::with_capacity(BATCH);
    while inbox.recv_many(&mut batch, BATCH).await > 0 {
        let completions: Vec<Completion> = batch.iter().map(|finished| finished.completion.clone()).collect();
        let accepted = loop {
            match shared.store.complete(completions.clone()).await {
                Ok(accepted) => break accepted,
                Err(error) => {
                    // The leases are still renewed meanwhile, so the jobs stay this gateway's.
                    tracing::error!(%error, jobs = completions.len(), "cannot record job outcomes; retrying in 1s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        let now = now_micros();
        let mut retry_later = false;
        let mut retry_now = false;
        for (finished, accepted) in batch.drain(..).zip(accepted) {
            shared.in_flight.remove(&finished.completion.id);
            if !accepted {
                metrics::counter!("rampart_jobs_stale_completions_total").increment(1);
                tracing::debug!(job = %finished.completion.id, "an attempt's outcome came after its lease was lost; ignored");
                continue;
            }
            let retry_at = retry_time(&finished.completion.outcome);
            retry_later |= retry_at.is_some_and(|retry_at| retry_at > now);
            retry_now |= retry_at.is_some_and(|retry_at| retry_at <= now);
            record(&shared, &finished);
        }
        if retry_later {
            shared.schedule_changed.store(true, Ordering::Release);
        }
        if retry_now {
            // Requeued at once: a gateway with room may take them.
            shared.signal_queued();
        }
        shared.wake.notify_one();
    }
}

/// Metrics and an event for an attempt's recorded end.
fn record(shared: &Core, finished: &Finished) {
    let Completion { id, outcome, at, .. } = &finished.completion;
    // The event says what the store just wrote: the same transition.
    let transition = outcome.transition(*at);
    let status = transition.status;
    let attempt = finished.attempt + transition.attempt_change;
    let error = match transition.error {
        ErrorChange::Set(error) => Some(error.to_owned()),
        ErrorChange::Keep | ErrorChange::Clear => None,
    };
    let result = transition.result.cloned();
    let kind = rampart_common::metrics::intern(&finished.kind);
    let label = if matches!(outcome, Outcome::Failed { retry_at: Some(_), .. }) { "retrying" } else { status.as_str() };
    if !matches!(outcome, Outcome::NotStarted { .. }) {
        metrics::counter!("rampart_job_attempts_total", "kind" => kind, "outcome" => label).increment(1);
        if let Some(ran) = finished.ran {
            metrics::histogram!("rampart_job_attempt_seconds", "kind" => kind).record(ran.as_secs_f64());
        }
    }
    let id: Arc<str> = Arc::from(id.as_str());
    shared.signal_changed(&id);
    shared.events.publish(JobEvent { id, status, attempt, error, result, at: *at, progress: None });
}

/// When a recorded outcome makes the job due again, if it does.
fn retry_time(outcome: &Outcome) -> Option<Micros> {
    match outcome {
        Outcome::Failed { retry_at, .. } => *retry_at,
        Outcome::NotStarted { retry_at } => Some(*retry_at),
        Outcome::Succeeded(_) | Outcome::Refused(_) | Outcome::Cancelled => None,
    }
}
