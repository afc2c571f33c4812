//! Where durable jobs live: a trait with a SQLite implementation (embedded, one writer task
//! batching every write into group-committed transactions) and a PostgreSQL one (many gateways,
//! `FOR UPDATE SKIP LOCKED` claims).

mod postgres;
mod sqlite;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

use super::model::{Accepted, Claimed, Completion, ErrorChange, JobRecord, Micros, NewJob};
use std::sync::Arc;

/// A store operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed; its error is the source.
    #[error("job store: {0}")]
    Database(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// Migrations could not run.
    #[error("job store migration: {0}")]
    Migrate(String),
    /// The store could not start.
    #[error("job store: {0}")]
    Io(String),
    /// The store's writer has stopped (the gateway is shutting down).
    #[error("the job store is closed")]
    Closed,
    /// The store URL cannot be used.
    #[error("invalid store URL {url:?}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
}

impl StoreError {
    /// A database failure caused by `error` (or described by a message).
    pub fn database(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Database(Arc::from(error.into()))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        Self::database(error)
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        Self::Migrate(error.to_string())
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        Self::database(error)
    }
}

/// What a cancellation found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The job was queued and will never start.
    Cancelled,
    /// The job is running; its owner will stop it.
    Requested,
    /// The job had already ended.
    AlreadyFinished,
    /// No such job.
    NotFound,
}

/// A lease held on a running job, to renew.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The job.
    pub id: String,
    /// The attempt's token.
    pub token: i64,
}

/// What renewing leases found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Renewal {
    /// Jobs whose cancellation a client requested: stop them.
    pub cancel: Vec<String>,
    /// Leases no longer this owner's (the job was rescued, or its attempt ended meanwhile): the
    /// attempt's outcome, if still to come, will be refused, so stop it.
    pub lost: Vec<Lease>,
}

/// Counts of jobs by status, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Depth {
    /// Waiting.
    pub queued: i64,
    /// Under a lease.
    pub running: i64,
}

/// Durable storage of jobs. Every write is durable when the call returns.
#[async_trait::async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// Accepts jobs; a job whose idempotency key is taken yields the earlier job instead.
    async fn insert(&self, jobs: Vec<NewJob>) -> Result<Vec<Accepted>, StoreError>;

    /// Claims up to `limit` ready jobs, most urgent first, skipping `excluded_kinds`: each gets
    /// its next attempt, a fresh token and a lease held by `owner` until `lease_until`.
    async fn claim(
        &self,
        limit: usize,
        owner: &str,
        lease_until: Micros,
        excluded_kinds: &[String],
        now: Micros,
    ) -> Result<Vec<Claimed>, StoreError>;

    /// Records attempts' ends; for each, false when its token is stale (the job was rescued or
    /// cancelled meanwhile) and the completion was ignored.
    async fn complete(&self, completions: Vec<Completion>) -> Result<Vec<bool>, StoreError>;

    /// Extends `owner`'s leases to `until`, reporting those to stop.
    async fn renew(&self, owner: &str, leases: Vec<Lease>, until: Micros) -> Result<Renewal, StoreError>;

    /// Requeues running jobs whose lease expired before `now` (their gateway died), or ends them
    /// `dead` when they have no attempt left. Returns how many were rescued.
    async fn rescue(&self, now: Micros) -> Result<u64, StoreError>;

    /// Requeues running jobs leased to `owner`, at its start: it cannot be running them. (The
    /// SQLite store has one gateway at a time, so there every running job is requeued.)
    async fn recover(&self, owner: &str, now: Micros) -> Result<u64, StoreError>;

    /// One job, with its result.
    async fn get(&self, id: &str) -> Result<Option<JobRecord>, StoreError>;

    /// Cancels a job: at once if queued, by request to its owner if running.
    async fn cancel(&self, id: &str, now: Micros) -> Result<CancelOutcome, StoreError>;

    /// Deletes jobs that ended before `before`; returns how many.
    async fn prune(&self, before: Micros) -> Result<u64, StoreError>;

    /// Jobs waiting and running now.
    async fn depth(&self) -> Result<Depth, StoreError>;
}

/// Opens the store a URL names (`sqlite://PATH` or `postgres://...`) and runs its migrations.
pub async fn open(url: &str) -> Result<Arc<dyn JobStore>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(PostgresStore::open(url).await?))
    } else {
        Err(StoreError::Url { url: url.to_owned(), reason: "use sqlite://PATH or postgres://USER@HOST/DB".into() })
    }
}

/// An [`ErrorChange`] as two columns: whether the error changes, and to what.
fn error_columns(change: ErrorChange<'_>) -> (bool, Option<&str>) {
    match change {
        ErrorChange::Keep => (false, None),
        ErrorChange::Clear => (true, None),
        ErrorChange::Set(error) => (true, Some(error)),
    }
}

/// Why a rescued job's attempt ended: its gateway's lease expired.
const RESCUED: &str = "its gateway stopped renewing the lease (rescued)";

/// Why a recovered job's attempt ended: its own gateway came back.
const RECOVERED: &str = "its gateway restarted while it ran (recovered)";

/// The one statement that takes running jobs back from a gateway that no longer runs them (the
/// rescue and recovery transition, written once): a job whose cancel was asked for ends
/// `cancelled`, one out of attempts ends `dead`, any other is queued again at once. `now` is the
/// time parameter and `cancel_requested` the test for an asked-for cancel, in the store's
/// dialect; `which` selects the running jobs to take back.
fn requeue_running_sql(now: &str, cancel_requested: &str, error: &str, which: &str) -> String {
    format!(
        "UPDATE jobs SET
            status = CASE WHEN {cancel_requested} THEN 'cancelled'
                          WHEN attempt >= max_attempts THEN 'dead' ELSE 'queued' END,
            finished_at = CASE WHEN {cancel_requested} OR attempt >= max_attempts THEN {now} ELSE NULL END,
            error = '{error}',
            lease_owner = NULL, lease_expires_at = NULL, run_after = {now}
         WHERE status = 'running' AND {which}"
    )
}
