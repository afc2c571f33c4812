//! Durable jobs: accepted once and for all into a store, dispatched to workers under leases,
//! retried with backoff, rescued when their gateway dies.
//!
//! [`Jobs`] is what the API uses (submit, look up, cancel, watch); [`Jobs::start`] starts the
//! engine's parts, each a loop of its own with its own channel and slice of the settings:
//!
//! - [`claim`]: takes due jobs from the store while there is free capacity and starts an
//!   [`attempt`] for each, calling a worker through the same balancing, breakers and deadlines
//!   as `/api/process`;
//! - [`complete`]: writes the attempts' outcomes in batches, fenced by each attempt's token;
//! - [`renew`]: renews the leases of running jobs and learns which were cancelled or lost;
//! - [`sweep`]: rescues jobs whose gateway died, prunes old ones and publishes the queue depth;
//! - [`cluster`]: the heartbeat, which keeps this gateway among the store's members and tells
//!   whether the store answers at all;
//! - [`signals`]: tells the other gateways on the store of jobs queued and changed here, and
//!   listens to theirs.
//!
//! [`Engine::drain`] stops them in order at shutdown and awaits every one.

mod attempt;
mod claim;
pub mod cluster;
mod complete;
pub mod cron;
mod direct;
pub mod events;
pub mod follow;
pub mod outcome;
mod progress;
mod renew;
pub mod running;
mod signals;
mod sweep;

pub use rampart_jobstore::{model, rules, store};

use crate::{
    config::{CronConfig, JobsConfig},
    workers::Pools,
};
use events::{EventHub, JobEvent};
use model::{Accepted, JobDetail, JobFilter, JobRecord, JobStats, Micros, NewJob, Page, Status, now_micros};
use rampart_balance::{config::RetryConfig, retry::RetryBudget};
use rules::{Pause, PauseScope};
use running::{RunningJobs, StopReason};
use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};
use store::{CancelOutcome, JobStore, StoreError};
use tokio::{
    sync::{Notify, mpsc},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

/// What the durable-jobs engine is configured with.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Where jobs are kept: `sqlite://PATH` or `postgres://...`.
    pub store: String,
    /// Retries, leases, dispatch, retention.
    pub jobs: JobsConfig,
    /// How calls to workers are retried.
    pub retry: RetryConfig,
    /// Jobs enqueued on a schedule (`[[cron]]`).
    pub cron: Vec<CronConfig>,
}

/// What the API and every part of the engine share.
struct Core {
    store: Arc<dyn JobStore>,
    events: Arc<EventHub>,
    in_flight: RunningJobs,
    /// Wakes the claim loop: jobs were accepted, capacity freed or a retry came due.
    wake: Notify,
    /// Jobs were scheduled for later or given a start_by here (accepted, or retried with a
    /// backoff): the claim loop asks the store again when it must next wake.
    schedule_changed: AtomicBool,
    /// This gateway's name as a lease owner.
    owner: Arc<str>,
    /// The store's members and whether the store answers.
    cluster: Arc<cluster::Cluster>,
    /// Changes to tell the other gateways of.
    outbox: mpsc::UnboundedSender<signals::Outgoing>,
    /// Whether the other gateways' signals are being heard now.
    signals_live: AtomicBool,
}

/// The durable-jobs subsystem of one gateway.
pub struct Jobs {
    shared: Arc<Core>,
    settings: Settings,
    pools: Arc<Pools>,
    retry_budget: Arc<RetryBudget>,
    /// Starts new jobs at acceptance when there is room and no backlog.
    direct: Arc<direct::Direct>,
    /// The gateway's main runtime: store calls from request handlers (which run on the serving
    /// threads' own runtimes) are made there, so database connections live on one runtime.
    runtime: tokio::runtime::Handle,
    /// The `[[cron]]` entries, parsed; a reload replaces them ([`Jobs::set_cron`]).
    schedules: arc_swap::ArcSwap<Vec<Arc<cron::Schedule>>>,
    /// Wakes the scheduler when the entries change.
    cron_changed: Notify,
    /// Where the outbox's changes arrive, until the engine starts sending them.
    outbox: Mutex<Option<mpsc::UnboundedReceiver<signals::Outgoing>>>,
}

/// The engine's running parts.
pub struct Engine {
    shared: Arc<Core>,
    claim: JoinHandle<()>,
    sweep: JoinHandle<()>,
    complete: JoinHandle<()>,
    cron: JoinHandle<()>,
    renew: JoinHandle<()>,
    heartbeat: JoinHandle<()>,
    signal: JoinHandle<()>,
    listen: JoinHandle<()>,
    /// Stops the renewals, the heartbeat and the signals, once the last outcome is written.
    stop_renewing: CancellationToken,
}

impl Jobs {
    /// Opens the configured store (running its migrations).
    pub async fn open(
        settings: Settings,
        pools: Arc<Pools>,
        retry_budget: Arc<RetryBudget>,
    ) -> Result<Arc<Self>, StoreError> {
        let store = store::open(&settings.store).await?;
        let owner = settings.jobs.node_id.clone().unwrap_or_else(default_node_id);
        let schedules = cron::parse_all(&settings.cron).map_err(StoreError::Io)?;
        let owner: Arc<str> = Arc::from(owner);
        let (outbox, outgoing) = mpsc::unbounded_channel();
        let shared = Arc::new(Core {
            store,
            events: Arc::new(EventHub::default()),
            in_flight: RunningJobs::default(),
            wake: Notify::new(),
            schedule_changed: AtomicBool::new(false),
            cluster: Arc::new(cluster::Cluster::new(Arc::clone(&owner), &settings.jobs)),
            owner,
            outbox,
            signals_live: AtomicBool::new(false),
        });
        Ok(Arc::new(Self {
            shared,
            settings,
            pools,
            retry_budget,
            direct: Arc::default(),
            runtime: tokio::runtime::Handle::current(),
            schedules: arc_swap::ArcSwap::from_pointee(schedules),
            cron_changed: Notify::new(),
            outbox: Mutex::new(Some(outgoing)),
        }))
    }

    /// Joins the store's members as serving at `address` (unless `[jobs] advertise` names
    /// another), takes back the jobs this gateway held before a restart, then starts the engine
    /// until `stop` is cancelled. Call [`Engine::drain`] after `stop` to finish running jobs.
    pub async fn start(self: &Arc<Self>, stop: CancellationToken, address: &str) -> Engine {
        let shared = &self.shared;
        shared.cluster.advertise(address);
        shared.cluster.beat(&*shared.store).await;
        match shared.store.recover(&shared.owner, now_micros()).await {
            Ok(0) => {}
            Ok(recovered) => tracing::info!(recovered, "requeued the jobs this gateway ran before it restarted"),
            Err(error) => {
                tracing::error!(%error, "cannot requeue this gateway's earlier jobs; their leases will expire")
            }
        }
        let jobs = &self.settings.jobs;
        let (completions, inbox) = tokio::sync::mpsc::unbounded_channel();
        let attempts = attempt::Attempts {
            shared: Arc::clone(shared),
            pools: Arc::clone(&self.pools),
            retry: self.settings.retry.clone(),
            retry_budget: Arc::clone(&self.retry_budget),
            kind_limits: claim::KindLimits::of(jobs),
            completions,
        };
        self.direct.enable(attempts.clone());
        let direct = Arc::clone(&self.direct);
        let stopping = stop.clone();
        tokio::spawn(async move {
            stopping.cancelled().await;
            direct.disable();
        });
        let claimer = claim::Claimer::new(attempts, jobs, Arc::clone(&self.direct));
        let stop_renewing = CancellationToken::new();
        let outgoing = self.outbox.lock().unwrap_or_else(PoisonError::into_inner).take();
        let signal = match outgoing {
            Some(outgoing) => tokio::spawn(signals::send(Arc::clone(shared), outgoing, stop_renewing.clone())),
            None => tokio::spawn(async {}),
        };
        Engine {
            heartbeat: tokio::spawn(Arc::clone(&shared.cluster).run(Arc::clone(&shared.store), stop_renewing.clone())),
            signal,
            listen: tokio::spawn(signals::listen(Arc::clone(shared), Arc::clone(&self.direct), stop.clone())),
            shared: Arc::clone(shared),
            claim: tokio::spawn(claimer.run(stop.clone())),
            cron: tokio::spawn(cron::run(Arc::clone(self), stop.clone())),
            sweep: tokio::spawn(sweep::run(Arc::clone(shared), sweep::Sweep::of(jobs), stop)),
            complete: tokio::spawn(complete::run(Arc::clone(shared), inbox)),
            renew: tokio::spawn(renew::run(Arc::clone(shared), jobs.lease, stop_renewing.clone())),
            stop_renewing,
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn JobStore> {
        &self.shared.store
    }

    /// Status changes of jobs as they happen here.
    pub fn events(&self) -> &Arc<EventHub> {
        &self.shared.events
    }

    /// The settings.
    pub fn config(&self) -> &JobsConfig {
        &self.settings.jobs
    }

    /// This gateway's name as a lease owner.
    pub fn owner(&self) -> &str {
        &self.shared.owner
    }

    /// The gateways on the store, as this one knows them.
    pub fn cluster(&self) -> &Arc<cluster::Cluster> {
        &self.shared.cluster
    }

    /// Whether the other gateways' signals are heard now (a job running on another gateway
    /// brings its news here without polling).
    pub fn signals_live(&self) -> bool {
        self.shared.signals_live.load(Ordering::Acquire)
    }

    /// Accepts jobs durably: those there is room for start at once ([`direct`]), the others
    /// queue and wake the claim loop. An idempotent replay yields the earlier job.
    pub async fn submit(&self, mut jobs: Vec<NewJob>) -> Result<Vec<Accepted>, StoreError> {
        if !self.shared.cluster.reachable() {
            return Err(StoreError::Unavailable("the last heartbeat got no answer".into()));
        }
        let count = jobs.len();
        let now = now_micros();
        if jobs.iter().any(|job| job.run_after > now || job.start_by.is_some()) {
            self.shared.schedule_changed.store(true, Ordering::Release);
        }
        let taken = self.direct.take(&self.shared, &mut jobs, self.settings.jobs.lease, now);
        let queued = taken.any_queued(count);
        let store = Arc::clone(&self.shared.store);
        // Written and started on the main runtime, where the attempts and their streams live.
        let accepted = self
            .on_main(async move {
                let accepted = store.insert(jobs).await?;
                taken.start(&accepted, now);
                Ok(accepted)
            })
            .await?;
        if queued {
            self.shared.wake.notify_one();
            self.shared.signal_queued();
        }
        metrics::counter!("rampart_jobs_accepted_total").increment(count as u64);
        Ok(accepted)
    }

    /// One job.
    pub async fn get(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        let (store, id) = (Arc::clone(&self.shared.store), id.to_owned());
        self.on_main(async move { store.get(&id).await }).await
    }

    /// One page of the jobs `filter` matches, newest first.
    pub async fn list(&self, filter: JobFilter, page: Page) -> Result<Vec<JobRecord>, StoreError> {
        let store = Arc::clone(&self.shared.store);
        self.on_main(async move { store.list(&filter, &page).await }).await
    }

    /// Counts by status and kind of the jobs `filter` matches, and when the oldest due one
    /// became due.
    pub async fn stats(&self, filter: JobFilter) -> Result<JobStats, StoreError> {
        let store = Arc::clone(&self.shared.store);
        self.on_main(async move { store.stats(&filter, now_micros()).await }).await
    }

    /// When the oldest due queued job `filter` matches became due, if there is one.
    pub async fn oldest_due(&self, filter: JobFilter) -> Result<Option<Micros>, StoreError> {
        let store = Arc::clone(&self.shared.store);
        self.on_main(async move { store.oldest_due(&filter, now_micros()).await }).await
    }

    /// One job with its payload, key, trace and attempts.
    pub async fn detail(&self, id: &str) -> Result<Option<JobDetail>, StoreError> {
        let store = Arc::clone(&self.shared.store);
        let id = id.to_owned();
        self.on_main(async move { store.detail(&id).await }).await
    }

    /// Runs again up to `limit` jobs `filter` matches that ended without succeeding, with all
    /// their attempts; returns their ids.
    pub async fn retry(&self, filter: JobFilter, limit: usize) -> Result<Vec<String>, StoreError> {
        let store = Arc::clone(&self.shared.store);
        let retried = self.on_main(async move { store.retry(&filter, limit, now_micros()).await }).await?;
        if !retried.is_empty() {
            // They queue behind nothing: new jobs must not start ahead of them at acceptance.
            self.direct.note_queued();
            self.shared.wake.notify_one();
            self.shared.signal_queued();
            metrics::counter!("rampart_jobs_retried_by_request_total").increment(retried.len() as u64);
        }
        Ok(retried)
    }

    /// Pauses a kind or a tenant in the store: no gateway on it starts its queued jobs until
    /// resumed. False if it was paused already.
    pub async fn pause(&self, scope: PauseScope, name: &str) -> Result<bool, StoreError> {
        let (store, name) = (Arc::clone(&self.shared.store), name.to_owned());
        let paused = self.on_main(async move { store.pause(scope, &name, now_micros()).await }).await?;
        if paused {
            // Jobs that come now must queue, not start at acceptance ahead of those held back.
            self.direct.note_queued();
        }
        Ok(paused)
    }

    /// Resumes a paused kind or tenant; its queued jobs are claimed at once here, and by the
    /// other gateways on the store at their next sweep. False if it was not paused.
    pub async fn resume(&self, scope: PauseScope, name: &str) -> Result<bool, StoreError> {
        let (store, name) = (Arc::clone(&self.shared.store), name.to_owned());
        let resumed = self.on_main(async move { store.resume(scope, &name).await }).await?;
        if resumed {
            self.direct.note_queued();
            self.shared.schedule_changed.store(true, Ordering::Release);
            self.shared.wake.notify_one();
            self.shared.signal_queued();
        }
        Ok(resumed)
    }

    /// The kinds and tenants paused now.
    pub async fn pauses(&self) -> Result<Vec<Pause>, StoreError> {
        let store = Arc::clone(&self.shared.store);
        self.on_main(async move { store.pauses().await }).await
    }

    /// Deletes the ended jobs `filter` matches; returns how many.
    pub async fn purge(&self, filter: JobFilter) -> Result<u64, StoreError> {
        let store = Arc::clone(&self.shared.store);
        self.on_main(async move { store.purge(&filter).await }).await
    }

    /// Runs a store call on the main runtime.
    pub(crate) async fn on_main<T: Send + 'static>(
        &self,
        call: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.runtime.spawn(call).await.map_err(|_| StoreError::Closed)?
    }

    /// Cancels a job: a queued one never starts; a running one is stopped here at once if this
    /// gateway runs it, else by its own gateway when it next renews the lease.
    pub async fn cancel(&self, id: &str) -> Result<CancelOutcome, StoreError> {
        let now = now_micros();
        let (store, owned) = (Arc::clone(&self.shared.store), id.to_owned());
        let outcome = self.on_main(async move { store.cancel(&owned, now).await }).await?;
        match outcome {
            CancelOutcome::Cancelled => {
                let id: Arc<str> = Arc::from(id);
                self.shared.signal_changed(&id);
                self.shared.events.publish(JobEvent {
                    id,
                    status: Status::Cancelled,
                    attempt: 0,
                    error: None,
                    result: None,
                    at: now,
                    progress: None,
                });
            }
            CancelOutcome::Requested => {
                self.shared.in_flight.stop(id, StopReason::Cancelled);
            }
            CancelOutcome::AlreadyFinished | CancelOutcome::NotFound => {}
        }
        Ok(outcome)
    }
}

/// A lease owner name unique to this process: the host name and a random suffix.
fn default_node_id() -> String {
    let host = rampart_common::net::host_name().unwrap_or_else(|| "gateway".into());
    format!("{host}-{:08x}", fastrand::u32(..))
}

impl Engine {
    /// After the stop signal: lets running jobs finish for up to `grace`, then stops the rest
    /// (they are requeued), waits for their outcomes to be written and awaits every part.
    pub async fn drain(self, grace: Duration) {
        let in_flight = &self.shared.in_flight;
        let deadline = Instant::now() + grace;
        while !in_flight.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if !in_flight.is_empty() {
            tracing::info!(jobs = in_flight.len(), "stopping the jobs still running; they will run again");
            in_flight.stop_all(StopReason::Shutdown);
        }
        // The claim loop ends at the stop signal; with it and the last attempt gone, the
        // completion writer has every outcome and ends when it has written them.
        for (part, task) in [
            ("cron", self.cron),
            ("claim", self.claim),
            ("sweep", self.sweep),
            ("complete", self.complete),
            ("listen", self.listen),
        ] {
            await_part(part, task).await;
        }
        // Leases are renewed until then, so no job still finishing is rescued elsewhere; the
        // last outcomes are signalled, and the heartbeat leaves the store's members.
        self.stop_renewing.cancel();
        for (part, task) in [("renew", self.renew), ("signal", self.signal), ("heartbeat", self.heartbeat)] {
            await_part(part, task).await;
        }
    }
}

/// How long a part may take to end once told to: the completion writer may be retrying a store
/// that is down, and a job it cannot record is rescued later anyway.
const PART_STOP: Duration = Duration::from_secs(5);

async fn await_part(part: &str, mut task: JoinHandle<()>) {
    match tokio::time::timeout(PART_STOP, &mut task).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::error!(part, %error, "a durable-jobs loop panicked"),
        Err(_) => {
            tracing::warn!(part, "a durable-jobs loop did not stop in time; aborted");
            task.abort();
        }
    }
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}
