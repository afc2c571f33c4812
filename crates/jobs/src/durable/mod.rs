//! Durable jobs: accepted once and for all into a store, dispatched to workers under leases,
//! retried with backoff, rescued when their gateway dies.
//!
//! [`Jobs`] is what the API uses; [`dispatcher`] runs the loops that move jobs from the store to
//! the workers and back.

pub mod dispatcher;
pub mod events;
pub mod follow;
pub mod in_flight;
pub mod outcome;

pub use rampart_jobstore::{model, store};

use crate::{config::JobsConfig, workers::Pools};
use events::{EventHub, JobEvent};
use in_flight::{InFlight, StopReason};
use model::{Accepted, JobRecord, NewJob, Status, now_micros};
use rampart_balance::config::RetryConfig;
use rampart_balance::retry::RetryBudget;
use std::sync::{Arc, Mutex};
use store::{CancelOutcome, JobStore, StoreError};
use tokio::sync::{Notify, mpsc};

/// What the durable-jobs engine is configured with.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Where jobs are kept: `sqlite://PATH` or `postgres://...`.
    pub store: String,
    /// Retries, leases, dispatch, retention.
    pub jobs: JobsConfig,
    /// How calls to workers are retried.
    pub retry: RetryConfig,
}

/// The durable-jobs subsystem of one gateway.
pub struct Jobs {
    store: Arc<dyn JobStore>,
    events: Arc<EventHub>,
    in_flight: InFlight,
    /// Wakes the dispatcher: jobs were accepted, or capacity freed.
    wake: Notify,
    /// Attempts' ends, to the completion writer.
    completions: mpsc::UnboundedSender<dispatcher::Finished>,
    /// The writer's end, taken when the dispatcher starts.
    completion_inbox: Mutex<Option<mpsc::UnboundedReceiver<dispatcher::Finished>>>,
    owner: String,
    config: Settings,
    pools: Arc<Pools>,
    retry_budget: Arc<RetryBudget>,
    /// The gateway's main runtime: store calls from request handlers (which run on the serving
    /// threads' own runtimes) are made there, so database connections live on one runtime.
    runtime: tokio::runtime::Handle,
}

impl Jobs {
    /// Opens the configured store (running its migrations).
    pub async fn open(
        config: Settings,
        pools: Arc<Pools>,
        retry_budget: Arc<RetryBudget>,
    ) -> Result<Arc<Self>, StoreError> {
        let store = store::open(&config.store).await?;
        let owner = config.jobs.node_id.clone().unwrap_or_else(default_node_id);
        let (completions, completion_inbox) = mpsc::unbounded_channel();
        Ok(Arc::new(Self {
            store,
            events: Arc::new(EventHub::default()),
            in_flight: InFlight::default(),
            wake: Notify::new(),
            completions,
            completion_inbox: Mutex::new(Some(completion_inbox)),
            owner,
            config,
            pools,
            retry_budget,
            runtime: tokio::runtime::Handle::current(),
        }))
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn JobStore> {
        &self.store
    }

    /// Status changes of jobs as they happen here.
    pub fn events(&self) -> &Arc<EventHub> {
        &self.events
    }

    /// The settings.
    pub fn config(&self) -> &JobsConfig {
        &self.config.jobs
    }

    /// This gateway's name as a lease owner.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Accepts jobs durably and wakes the dispatcher. An idempotent replay yields the earlier job.
    pub async fn submit(&self, jobs: Vec<NewJob>) -> Result<Vec<Accepted>, StoreError> {
        let count = jobs.len() as u64;
        let store = Arc::clone(&self.store);
        let accepted = self.on_main(async move { store.insert(jobs).await }).await?;
        self.wake.notify_one();
        metrics::counter!("rampart_jobs_accepted_total").increment(count);
        Ok(accepted)
    }

    /// One job.
    pub async fn get(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        let (store, id) = (Arc::clone(&self.store), id.to_owned());
        self.on_main(async move { store.get(&id).await }).await
    }

    /// Runs a store call on the main runtime.
    async fn on_main<T: Send + 'static>(
        &self,
        call: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.runtime.spawn(call).await.map_err(|_| StoreError::Closed)?
    }

    /// Cancels a job: a queued one never starts; a running one is stopped here at once if this
    /// gateway runs it, else by its own gateway when it next renews the lease.
    pub async fn cancel(&self, id: &str) -> Result<CancelOutcome, StoreError> {
        let now = now_micros();
        let (store, owned) = (Arc::clone(&self.store), id.to_owned());
        let outcome = self.on_main(async move { store.cancel(&owned, now).await }).await?;
        match outcome {
            CancelOutcome::Cancelled => self.events.publish(JobEvent {
                id: Arc::from(id),
                status: Status::Cancelled,
                attempt: 0,
                error: None,
                result: None,
                at: now,
            }),
            CancelOutcome::Requested => {
                self.in_flight.stop(id, StopReason::Cancelled);
            }
            CancelOutcome::AlreadyFinished | CancelOutcome::NotFound => {}
        }
        Ok(outcome)
    }
}

/// A lease owner name unique to this process: the host name and a random suffix.
fn default_node_id() -> String {
    let host =
        nix::unistd::gethostname().ok().and_then(|name| name.into_string().ok()).unwrap_or_else(|| "gateway".into());
    format!("{host}-{:08x}", fastrand::u32(..))
}
