//! Moves jobs from the store to the workers and their outcomes back.
//!
//! - **Claims** run when there is free capacity (healthy workers × `worker_slots`) and something
//!   may be waiting: a job was accepted here, an attempt ended, a retry came due, or the slow
//!   sweep ticked (for jobs other gateways accepted). No database poll per job.
//! - **Attempts** each run as a task calling a worker through the same balancing, breakers and
//!   deadlines as `/api/process`; the task can be stopped (cancel, lost lease, shutdown).
//! - **Completions** are written in batches, fenced by each attempt's token.
//! - **Leases** are renewed every third of their length; the answer says which jobs were
//!   cancelled or lost meanwhile.
//! - **Sweeps** rescue jobs whose gateway died (expired leases), prune old jobs and publish the
//!   queue depth.

use super::{
    Jobs,
    events::JobEvent,
    in_flight::StopReason,
    model::{Claimed, Completion, Micros, Outcome, Status, now_micros},
    outcome,
};
use crate::workers::{ExecutePolicy, execute};
use rampart_proto::v1::{JobRequest, Priority};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

/// An attempt's end on its way to the store.
pub struct Finished {
    completion: Completion,
    kind: Arc<str>,
    attempt: i32,
    /// How long the attempt ran, for the duration histogram (none when it never started).
    ran: Option<Duration>,
}

/// How much longer than a job's own time limit its call may take: the worker enforces the
/// limit and answers; this covers the answer's way back.
const CALL_MARGIN: Duration = Duration::from_secs(2);

/// Most completions written in one batch.
const COMPLETION_BATCH: usize = 1024;

/// How often old finished jobs are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// The dispatcher's running loops.
pub struct Dispatcher {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Jobs {
    /// Takes back the jobs this gateway held before a restart, then starts dispatching until
    /// `stop` is cancelled. Call [`Dispatcher::drain`] after `stop` to finish running jobs.
    pub async fn start(self: &Arc<Self>, stop: CancellationToken) -> Dispatcher {
        match self.store.recover(&self.owner, now_micros()).await {
            Ok(0) => {}
            Ok(recovered) => tracing::info!(recovered, "requeued the jobs this gateway ran before it restarted"),
            Err(error) => {
                tracing::error!(%error, "cannot requeue this gateway's earlier jobs; their leases will expire")
            }
        }
        let inbox = self.completion_inbox.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        let mut tasks = vec![
            tokio::spawn(Arc::clone(self).claim_loop(stop.clone())),
            tokio::spawn(Arc::clone(self).renew_loop()),
            tokio::spawn(Arc::clone(self).sweep_loop(stop)),
        ];
        if let Some(inbox) = inbox {
            tasks.push(tokio::spawn(Arc::clone(self).completion_loop(inbox)));
        }
        Dispatcher { tasks }
    }

    /// Jobs that may run at once now.
    fn capacity(&self) -> usize {
        self.pools.healthy_count().saturating_mul(self.config.jobs.worker_slots)
    }

    async fn claim_loop(self: Arc<Self>, stop: CancellationToken) {
        let jobs = &self.config.jobs;
        let mut sweep = tokio::time::interval(jobs.sweep_interval);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let capacity = self.capacity();
            let free = capacity.saturating_sub(self.in_flight.len());
            if free > 0 {
                let limit = free.min(jobs.claim_batch);
                let excluded = self.in_flight.kinds_at_limit(|kind| jobs.kind_limit(kind, capacity));
                let now = now_micros();
                let lease_until = now.saturating_add(micros(jobs.lease));
                match self.store.claim(limit, &self.owner, lease_until, &excluded, now).await {
                    Ok(claimed) => {
                        let full_batch = claimed.len() == limit;
                        for job in claimed {
                            self.start_attempt(job, now, capacity);
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
                () = self.wake.notified() => {}
                _ = sweep.tick() => {}
            }
        }
    }

    /// Runs one claimed attempt as its own task.
    /// `capacity` is the dispatch slots there are now, for the job's kind limit.
    fn start_attempt(self: &Arc<Self>, job: Claimed, now: Micros, capacity: usize) {
        let id: Arc<str> = Arc::from(job.id.as_str());
        let kind: Arc<str> = Arc::from(job.kind.as_str());
        let limit = Some(self.config.jobs.kind_limit(&job.kind, capacity));
        let (stopper, over_limit) = self.in_flight.add(Arc::clone(&id), job.token, Arc::clone(&kind), limit);
        if over_limit {
            // Claimed in the same batch as others of its kind that filled the limit.
            self.finish(job, kind, Outcome::NotStarted { retry_at: now }, None);
            return;
        }
        if job.attempt == 1 {
            let waited = Duration::from_micros(u64::try_from(now.saturating_sub(job.created_at)).unwrap_or(0));
            metrics::histogram!("rampart_job_pickup_seconds").record(waited.as_secs_f64());
        }
        self.events.publish(JobEvent {
            id,
            status: Status::Running,
            attempt: job.attempt,
            error: None,
            result: None,
            at: now,
        });
        let jobs = Arc::clone(self);
        // Each attempt is a trace of its own when traces are exported (the request that
        // accepted the job has long been answered).
        let span = if rampart_common::logging::tracing_enabled() {
            tracing::info_span!("job.attempt", job.id = %job.id, job.kind = %job.kind, job.attempt = job.attempt)
        } else {
            tracing::Span::none()
        };
        let attempt = async move {
            let started = Instant::now();
            let request = JobRequest {
                id: job.id.clone(),
                kind: job.kind.clone(),
                payload: job.payload.clone(),
                priority: priority(job.priority).into(),
                timeout_ms: u64::try_from(job.timeout_ms).unwrap_or(0),
                attempt: u32::try_from(job.attempt).unwrap_or(1),
            };
            let time_limit = Duration::from_millis(request.timeout_ms);
            let policy = ExecutePolicy { idempotent: false, retry: &jobs.config.retry, budget: &jobs.retry_budget };
            let pool = jobs.pools.for_kind(&job.kind);
            let outcome = tokio::select! {
                answer = execute(pool, &request, Instant::now() + time_limit + CALL_MARGIN, &policy) => {
                    Some(outcome::of_execution(&job, answer.map(|done| done.result), &jobs.config.jobs, now_micros()))
                }
                reason = stopper.stopped() => match reason {
                    StopReason::Cancelled => Some(Outcome::Cancelled),
                    StopReason::Shutdown => Some(outcome::interrupted(&job, now_micros())),
                    // Another gateway holds the job now; this attempt's outcome would be refused.
                    StopReason::LeaseLost => None,
                },
            };
            match outcome {
                Some(outcome) => jobs.finish(job, kind, outcome, Some(started.elapsed())),
                None => {
                    metrics::counter!("rampart_jobs_leases_lost_total").increment(1);
                    jobs.in_flight.remove(&job.id);
                    jobs.wake.notify_one();
                }
            }
        };
        tokio::spawn(attempt.instrument(span));
    }

    /// Hands an attempt's outcome to the completion writer.
    fn finish(&self, job: Claimed, kind: Arc<str>, outcome: Outcome, ran: Option<Duration>) {
        self.in_flight.finishing(&job.id);
        let finished = Finished {
            completion: Completion { id: job.id, token: job.token, outcome, at: now_micros() },
            kind,
            attempt: job.attempt,
            ran,
        };
        if let Err(mpsc::error::SendError(finished)) = self.completions.send(finished) {
            // The writer stopped (shutdown): the lease will expire and the job be rescued.
            self.in_flight.remove(&finished.completion.id);
        }
    }

    /// Writes completions in batches, then tells watchers and frees the jobs' slots.
    async fn completion_loop(self: Arc<Self>, mut inbox: mpsc::UnboundedReceiver<Finished>) {
        let mut batch = Vec::with_capacity(COMPLETION_BATCH);
        while inbox.recv_many(&mut batch, COMPLETION_BATCH).await > 0 {
            let completions: Vec<Completion> = batch.iter().map(|finished| finished.completion.clone()).collect();
            let accepted = loop {
                match self.store.complete(completions.clone()).await {
                    Ok(accepted) => break accepted,
                    Err(error) => {
                        // The leases are still renewed meanwhile, so the jobs stay this gateway's.
                        tracing::error!(%error, jobs = completions.len(), "cannot record job outcomes; retrying in 1s");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            };
            let mut next_retry: Option<Micros> = None;
            for (finished, accepted) in batch.drain(..).zip(accepted) {
                self.in_flight.remove(&finished.completion.id);
                if !accepted {
                    metrics::counter!("rampart_jobs_stale_completions_total").increment(1);
                    tracing::debug!(job = %finished.completion.id, "an attempt's outcome came after its lease was lost; ignored");
                    continue;
                }
                if let Some(retry_at) = retry_time(&finished.completion.outcome) {
                    next_retry = Some(next_retry.map_or(retry_at, |soonest| soonest.min(retry_at)));
                }
                self.record(&finished);
            }
            if let Some(retry_at) = next_retry {
                self.wake_at(retry_at);
            }
            self.wake.notify_one();
        }
    }

    /// Metrics and an event for an attempt's recorded end.
    fn record(&self, finished: &Finished) {
        let Completion { id, outcome, at, .. } = &finished.completion;
        let (status, attempt, error, result) = match outcome {
            Outcome::Succeeded(result) => (Status::Succeeded, finished.attempt, None, Some(result.clone())),
            Outcome::Failed { error, retry_at: Some(_) } => {
                (Status::Queued, finished.attempt, Some(error.clone()), None)
            }
            Outcome::Failed { error, retry_at: None } => (Status::Dead, finished.attempt, Some(error.clone()), None),
            Outcome::Refused(error) => (Status::Failed, finished.attempt, Some(error.clone()), None),
            Outcome::NotStarted { .. } => (Status::Queued, finished.attempt - 1, None, None),
            Outcome::Cancelled => (Status::Cancelled, finished.attempt, None, None),
        };
        let kind = rampart_common::metrics::intern(&finished.kind);
        let label =
            if matches!(outcome, Outcome::Failed { retry_at: Some(_), .. }) { "retrying" } else { status.as_str() };
        if !matches!(outcome, Outcome::NotStarted { .. }) {
            metrics::counter!("rampart_job_attempts_total", "kind" => kind, "outcome" => label).increment(1);
            if let Some(ran) = finished.ran {
                metrics::histogram!("rampart_job_attempt_seconds", "kind" => kind).record(ran.as_secs_f64());
            }
        }
        self.events.publish(JobEvent { id: Arc::from(id.as_str()), status, attempt, error, result, at: *at });
    }

    /// Wakes the dispatcher when a retry comes due.
    fn wake_at(self: &Arc<Self>, at: Micros) {
        let wait = Duration::from_micros(u64::try_from(at.saturating_sub(now_micros())).unwrap_or(0));
        if wait.is_zero() || wait >= self.config.jobs.sweep_interval {
            // Due now (woken anyway), or the sweep comes first.
            return;
        }
        let jobs = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            jobs.wake.notify_one();
        });
    }

    /// Renews leases until the dispatcher is drained (not at the stop signal: jobs still
    /// finishing keep their leases).
    async fn renew_loop(self: Arc<Self>) {
        let lease = self.config.jobs.lease;
        let mut ticker = tokio::time::interval(lease / 3);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            self.renew_once(lease).await;
        }
    }

    async fn renew_once(&self, lease: Duration) {
        let leases = self.in_flight.leases();
        if leases.is_empty() {
            return;
        }
        let until = now_micros().saturating_add(micros(lease));
        match self.store.renew(&self.owner, leases, until).await {
            Ok(renewal) => {
                for id in renewal.cancel {
                    self.in_flight.stop(&id, StopReason::Cancelled);
                }
                for lease in renewal.lost {
                    // A renewal races the attempt's own end: a lease the store no longer has is
                    // lost only if its attempt still runs here.
                    if !self.in_flight.holds(&lease) {
                        continue;
                    }
                    tracing::warn!(job = %lease.id, "lost the lease of a running job (rescued elsewhere); stopping it here");
                    self.in_flight.stop(&lease.id, StopReason::LeaseLost);
                }
            }
            Err(error) => tracing::error!(%error, "cannot renew job leases"),
        }
    }

    async fn sweep_loop(self: Arc<Self>, stop: CancellationToken) {
        let mut ticker = tokio::time::interval(self.config.jobs.sweep_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_prune: Option<Instant> = None;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let now = now_micros();
            match self.store.rescue(now).await {
                Ok(0) => {}
                Ok(rescued) => {
                    tracing::warn!(rescued, "rescued jobs whose gateway stopped renewing their leases");
                    metrics::counter!("rampart_jobs_rescued_total").increment(rescued);
                    self.wake.notify_one();
                }
                Err(error) => tracing::error!(%error, "cannot rescue jobs with expired leases"),
            }
            if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
                last_prune = Some(Instant::now());
                let before = now.saturating_sub(micros(self.config.jobs.retention));
                match self.store.prune(before).await {
                    Ok(0) => {}
                    Ok(pruned) => tracing::info!(pruned, "pruned finished jobs past their retention"),
                    Err(error) => tracing::error!(%error, "cannot prune finished jobs"),
                }
            }
            if let Ok(depth) = self.store.depth().await {
                #[allow(clippy::cast_precision_loss)] // gauges are f64
                {
                    metrics::gauge!("rampart_jobs_queued").set(depth.queued as f64);
                    metrics::gauge!("rampart_jobs_running").set(depth.running as f64);
                }
            }
        }
    }
}

impl Dispatcher {
    /// After the stop signal: lets running jobs finish for up to `grace`, then stops the rest
    /// (they are requeued) and waits for their outcomes to be written.
    pub async fn drain(self, jobs: &Jobs, grace: Duration) {
        let deadline = Instant::now() + grace;
        while !jobs.in_flight.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if !jobs.in_flight.is_empty() {
            tracing::info!(jobs = jobs.in_flight.len(), "stopping the jobs still running; they will run again");
            jobs.in_flight.stop_all(StopReason::Shutdown);
            let deadline = Instant::now() + Duration::from_secs(5);
            while !jobs.in_flight.is_empty() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        for task in self.tasks {
            task.abort();
        }
    }
}

/// When a recorded outcome makes the job due again, if it does.
fn retry_time(outcome: &Outcome) -> Option<Micros> {
    match outcome {
        Outcome::Failed { retry_at, .. } => *retry_at,
        Outcome::NotStarted { retry_at } => Some(*retry_at),
        Outcome::Succeeded(_) | Outcome::Refused(_) | Outcome::Cancelled => None,
    }
}

fn priority(stored: i16) -> Priority {
    match stored {
        0 => Priority::High,
        2 => Priority::Low,
        _ => Priority::Normal,
    }
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}
