//! Where durable jobs live: a trait with a SQLite implementation (embedded, one writer task
//! batching every write into group-committed transactions) and a PostgreSQL one (many gateways,
//! `FOR UPDATE SKIP LOCKED` claims).

mod fair;
mod postgres;
mod sqlite;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

use super::model::{
    Accepted, Claimed, Completion, EXPIRED_ERROR, ErrorChange, JobDetail, JobFilter, JobProgress, JobRecord, JobStats,
    Micros, NewJob, NextDue, Page, Status,
};
use crate::cluster::{Member, Signal, SignalListener};
use crate::rules::{ClaimRequest, Pause, PauseScope, Running};
use std::{sync::Arc, time::Duration};

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
    /// The store did not answer in time: the network to it, or the store itself, is down.
    #[error("the job store is unreachable: {0}")]
    Unavailable(String),
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

    /// Claims up to `request.limit` due jobs: tenants take turns (the round starting after
    /// `after_tenant`), each tenant's most urgent first; jobs of excluded or paused kinds, of
    /// paused tenants, and over the store-wide limits stay queued. Each job gets its next
    /// attempt, a fresh token and a lease held by `owner` until `lease_until`. The jobs come in
    /// the round's order.
    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<Claimed>, StoreError>;

    /// Pauses a kind or a tenant: none of its queued jobs starts on any gateway until it is
    /// resumed (running ones finish). Returns false if it was paused already.
    async fn pause(&self, scope: PauseScope, name: &str, now: Micros) -> Result<bool, StoreError>;

    /// Resumes a paused kind or tenant. Returns false if it was not paused.
    async fn resume(&self, scope: PauseScope, name: &str) -> Result<bool, StoreError>;

    /// Every kind and tenant paused now.
    async fn pauses(&self) -> Result<Vec<Pause>, StoreError>;

    /// Records what a running attempt (fenced by its token) reported of its progress; false when
    /// the attempt no longer holds the job.
    async fn progress(&self, id: &str, token: i64, progress: &JobProgress) -> Result<bool, StoreError>;

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

    /// The jobs of `ids` that exist, with their results, in no particular order: one round trip
    /// where the store allows it (a gateway hearing that many jobs changed reads them at once).
    async fn get_many(&self, ids: &[String]) -> Result<Vec<JobRecord>, StoreError> {
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            found.extend(self.get(id).await?);
        }
        Ok(found)
    }

    /// One job with everything kept of it: payload, key, trace and attempts.
    async fn detail(&self, id: &str) -> Result<Option<JobDetail>, StoreError>;

    /// Cancels a job: at once if queued, by request to its owner if running.
    async fn cancel(&self, id: &str, now: Micros) -> Result<CancelOutcome, StoreError>;

    /// Deletes ended jobs that `filter` matches (never a queued or running one, whatever the
    /// filter says); returns how many.
    async fn purge(&self, filter: &JobFilter) -> Result<u64, StoreError>;

    /// Jobs waiting and running now.
    async fn depth(&self) -> Result<Depth, StoreError>;

    /// When queued jobs that are not due at `now` become due, and when the first queued job with
    /// a `start_by` expires: the claim loop sleeps until then instead of polling.
    async fn next_due(&self, now: Micros) -> Result<NextDue, StoreError>;

    /// Ends `expired` every queued job whose `start_by` is before `now`; returns their ids.
    async fn expire(&self, now: Micros) -> Result<Vec<String>, StoreError>;

    /// The jobs `filter` matches, newest first, one page of them.
    async fn list(&self, filter: &JobFilter, page: &Page) -> Result<Vec<JobRecord>, StoreError>;

    /// Counts by status and kind of the jobs `filter` matches (its statuses aside), and when the
    /// oldest due one of them became due.
    async fn stats(&self, filter: &JobFilter, now: Micros) -> Result<JobStats, StoreError>;

    /// When the oldest queued job `filter` matches that is due at `now` became due (an index
    /// seek per tenant and priority, unlike the counts of [`JobStore::stats`]).
    async fn oldest_due(&self, filter: &JobFilter, now: Micros) -> Result<Option<Micros>, StoreError>;

    /// Queues again, due at `now` with all their attempts, up to `limit` ended jobs that
    /// `filter` matches and that may be retried (failed, cancelled, dead or expired; never a
    /// succeeded, queued or running one); returns their ids.
    async fn retry(&self, filter: &JobFilter, limit: usize, now: Micros) -> Result<Vec<String>, StoreError>;

    /// The last tick enqueued of each cron entry that ever ran, by name.
    async fn cron_runs(&self) -> Result<Vec<(String, Micros)>, StoreError>;

    /// Records that the cron entry `name`'s job for `tick` is enqueued (a later tick already
    /// recorded stays).
    async fn cron_ran(&self, name: &str, tick: Micros) -> Result<(), StoreError>;

    /// Records `member`'s heartbeat (its row, with `last_seen`), forgets the members last seen
    /// before `forget_before`, and returns every member left, oldest first. Gives up with
    /// [`StoreError::Unavailable`] after `within`: a heartbeat that cannot reach the store says
    /// so quickly, whatever the network does to the connection.
    async fn heartbeat(
        &self,
        member: &Member,
        forget_before: Micros,
        within: Duration,
    ) -> Result<Vec<Member>, StoreError>;

    /// Removes a member that is leaving (at its shutdown), so the others stop counting it.
    async fn leave(&self, id: &str) -> Result<(), StoreError>;

    /// Tells the other gateways on the store `signal`, sent by the member `from`. A store that
    /// serves one gateway has nobody to tell.
    async fn signal(&self, _from: &str, _signal: &Signal) -> Result<(), StoreError> {
        Ok(())
    }

    /// Starts listening for the other gateways' signals; `None` when the store serves one
    /// gateway only.
    async fn listen(&self) -> Result<Option<Box<dyn SignalListener>>, StoreError> {
        Ok(None)
    }
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

/// The columns of a [`JobRecord`], from `jobs j LEFT JOIN job_results r`, in the order both
/// stores read them.
const RECORD_COLUMNS: &str =
    "j.id, j.kind, j.status, j.priority, j.attempt, j.max_attempts, j.created_at, j.started_at,
     j.finished_at, j.error, r.result, j.tenant, j.run_after, j.start_by, j.progress";

/// How many columns [`RECORD_COLUMNS`] names.
const RECORD_COLUMN_COUNT: usize = 15;

/// What [`JobDetail`] adds to a record, after [`RECORD_COLUMNS`], in the order both stores read
/// them.
const DETAIL_COLUMNS: &str = "p.payload, j.idempotency_key, j.traceparent, j.worker, j.attempt_started_at";

/// One job's [`JobDetail`] columns; its one parameter is the id, spelt `param`.
fn detail_sql(param: &str) -> String {
    format!(
        "SELECT {RECORD_COLUMNS}, {DETAIL_COLUMNS} FROM jobs j LEFT JOIN job_results r ON r.id = j.id
         LEFT JOIN job_payloads p ON p.id = j.id WHERE j.id = {param}"
    )
}

/// One job's attempts that did not succeed, oldest first; its one parameter is the id.
fn failed_attempts_sql(param: &str) -> String {
    format!(
        "SELECT attempt, worker, started_at, finished_at, status, error FROM job_attempts
         WHERE job_id = {param} ORDER BY finished_at, attempt"
    )
}

/// A value a filter compares with.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SqlValue {
    Text(String),
    Int(i64),
}

/// SQL text with numbered placeholders and the values they stand for, written once for both
/// stores: `placeholder(n)` spells the n-th (`?n` or `$n`).
struct Sql {
    text: String,
    values: Vec<SqlValue>,
    placeholder: fn(usize) -> String,
}

impl Sql {
    fn new(placeholder: fn(usize) -> String) -> Self {
        Self { text: String::new(), values: Vec::new(), placeholder }
    }

    /// Appends SQL text.
    fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder for `value`.
    fn bind(&mut self, value: SqlValue) -> &mut Self {
        self.values.push(value);
        let placeholder = (self.placeholder)(self.values.len());
        self.text.push_str(&placeholder);
        self
    }

    /// Appends `column IN (...)` over `statuses`.
    fn statuses_in(&mut self, column: &str, statuses: &[Status]) -> &mut Self {
        self.push(column).push(" IN (");
        for (n, status) in statuses.iter().enumerate() {
            if n > 0 {
                self.push(", ");
            }
            self.bind(SqlValue::Text(status.as_str().to_owned()));
        }
        self.push(")")
    }

    /// Appends the conditions of `filter` on `jobs j`, each after an ` AND `, with the statuses
    /// restricted to `allowed` (a filter naming none means all of `allowed`).
    fn filter(&mut self, filter: &JobFilter, allowed: &[Status]) -> &mut Self {
        let statuses: Vec<Status> = if filter.statuses.is_empty() {
            allowed.to_vec()
        } else {
            filter.statuses.iter().copied().filter(|status| allowed.contains(status)).collect()
        };
        if statuses.is_empty() {
            return self.push(" AND 1 = 0");
        }
        if statuses.len() < Status::ALL.len() {
            self.push(" AND ").statuses_in("j.status", &statuses);
            if statuses.iter().all(|status| status.is_terminal()) {
                // True of every ended job; said so that the index of ended jobs is used.
                self.push(" AND j.finished_at IS NOT NULL");
            }
        }
        if let Some(id) = &filter.id {
            self.push(" AND j.id = ").bind(SqlValue::Text(id.clone()));
        }
        if let Some(kind) = &filter.kind {
            self.push(" AND j.kind = ").bind(SqlValue::Text(kind.clone()));
        }
        if let Some(tenant) = &filter.tenant {
            self.push(" AND j.tenant = ").bind(SqlValue::Text(tenant.clone()));
        }
        if let Some(after) = filter.created_after {
            self.push(" AND j.created_at > ").bind(SqlValue::Int(after));
        }
        if let Some(before) = filter.finished_before {
            self.push(" AND j.finished_at < ").bind(SqlValue::Int(before));
        }
        if let Some(before) = filter.created_before {
            self.push(" AND j.created_at < ").bind(SqlValue::Int(before));
        }
        if let Some(text) = filter.text.as_deref().filter(|text| !text.is_empty()) {
            self.push(" AND (").starts_with("j.id", text).push(" OR ").starts_with("j.idempotency_key", text).push(")");
        }
        self
    }

    /// Appends the page's cursor: only jobs older than its last.
    fn after(&mut self, page: &Page) -> &mut Self {
        if let Some(before) = &page.before_id {
            self.push(" AND j.id < ").bind(SqlValue::Text(before.clone()));
        }
        self
    }

    /// Appends a test that `column` starts with `prefix`: a range an index can seek to (text
    /// from `prefix` up to `prefix` followed by the last code point), and the exact test on what
    /// the range finds.
    fn starts_with(&mut self, column: &str, prefix: &str) -> &mut Self {
        // The length is written in the text: PostgreSQL's substr takes an int4, not a bound int8.
        let length = prefix.chars().count().to_string();
        self.push("(").push(column).push(" >= ").bind(SqlValue::Text(prefix.to_owned()));
        self.push(" AND ").push(column).push(" < ").bind(SqlValue::Text(format!("{prefix}\u{10FFFF}")));
        self.push(" AND substr(").push(column).push(", 1, ").push(&length);
        self.push(") = ").bind(SqlValue::Text(prefix.to_owned())).push(")")
    }
}

/// The page of jobs `filter` matches: newest first, after the cursor.
fn list_sql(filter: &JobFilter, page: &Page, placeholder: fn(usize) -> String) -> Sql {
    // The limit is written in the text, not bound: PostgreSQL's generic plans (the pool plans
    // every statement generically) guess a bound limit at a tenth of the table, and join the
    // results by sorting all of them (120 ms with a million jobs, against 1 ms).
    let newest = format!(" ORDER BY j.id DESC LIMIT {}", page.limit);
    let mut sql = Sql::new(placeholder);
    sql.push("SELECT ").push(RECORD_COLUMNS).push(" FROM jobs j LEFT JOIN job_results r ON r.id = j.id WHERE 1 = 1");
    match filter.text.as_deref().filter(|text| !text.is_empty()) {
        None => {
            sql.filter(filter, &Status::ALL).after(page);
        }
        Some(text) => {
            // A page of each column's matches, each read newest first from its own index, then
            // the newest of both: one `OR` of the two would read every match before the first.
            let rest = JobFilter { text: None, ..filter.clone() };
            sql.push(" AND j.id IN (");
            for (n, column) in ["j.id", "j.idempotency_key"].into_iter().enumerate() {
                if n > 0 {
                    sql.push(" UNION ALL ");
                }
                sql.push("SELECT id FROM (SELECT j.id FROM jobs j WHERE 1 = 1").filter(&rest, &Status::ALL);
                sql.push(" AND ").starts_with(column, text).after(page).push(&newest).push(&format!(") AS hits_{n}"));
            }
            sql.push(")");
        }
    }
    sql.push(&newest);
    sql
}

/// Requeues up to `limit` retryable jobs `filter` matches with fresh attempts, returning their ids.
fn retry_sql(filter: &JobFilter, limit: usize, now: Micros, no: &str, placeholder: fn(usize) -> String) -> Sql {
    let mut sql = Sql::new(placeholder);
    sql.push("UPDATE jobs SET status = 'queued', attempt = 0, run_after = ")
        .bind(SqlValue::Int(now))
        .push(", started_at = NULL, finished_at = NULL, error = NULL, start_by = NULL, lease_owner = NULL,")
        .push(" lease_expires_at = NULL, cancel_requested = ")
        .push(no)
        .push(" WHERE id IN (SELECT j.id FROM jobs j WHERE 1 = 1");
    sql.filter(filter, &Status::RETRYABLE);
    sql.push(" ORDER BY j.id LIMIT ")
        .bind(SqlValue::Int(i64::try_from(limit).unwrap_or(i64::MAX)))
        .push(") RETURNING id");
    sql
}

/// The ended jobs `filter` matches, as `SELECT j.id FROM jobs j WHERE ...`.
fn purge_selection_sql(filter: &JobFilter, placeholder: fn(usize) -> String) -> Sql {
    let ended: Vec<Status> = Status::ALL.into_iter().filter(|status| status.is_terminal()).collect();
    let mut sql = Sql::new(placeholder);
    sql.push("SELECT j.id FROM jobs j WHERE 1 = 1").filter(filter, &ended);
    sql
}

/// The tenants with queued jobs, one index seek each on `jobs_ready` (a loose index scan), as
/// `tenants(name)` with a last row of NULL: the first part of a `WITH RECURSIVE`.
const QUEUED_TENANTS: &str = "tenants(name) AS (
        SELECT (SELECT tenant FROM jobs WHERE status = 'queued' ORDER BY tenant LIMIT 1)
        UNION ALL
        SELECT (SELECT tenant FROM jobs WHERE status = 'queued' AND tenant > tenants.name ORDER BY tenant LIMIT 1)
        FROM tenants WHERE tenants.name IS NOT NULL)";

/// What a claim starts from, as rows of (scope, name): the tenants with queued jobs that are
/// not paused (`tenant`, in name order), then the paused kinds (`kind`). It reads `tenants`
/// ([`QUEUED_TENANTS`]).
const TURNS_OF_TENANTS: &str = "SELECT 'tenant' AS scope, name FROM tenants
         WHERE name IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM job_pauses p WHERE p.scope = 'tenant' AND p.name = tenants.name)
         UNION ALL
         SELECT scope, name FROM job_pauses WHERE scope = 'kind'";

/// [`TURNS_OF_TENANTS`] as a statement of its own.
static CLAIM_TURNS_SQL: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("WITH RECURSIVE {QUEUED_TENANTS} {TURNS_OF_TENANTS}"));

/// Stores a running attempt's progress: `(id, token, progress)` in a store's placeholders.
fn progress_sql(id: &str, token: &str, progress: &str) -> String {
    format!("UPDATE jobs SET progress = {progress} WHERE id = {id} AND attempt_token = {token} AND status = 'running'")
}

/// Running jobs by kind and tenant, for store-wide limits (a seek on `jobs_leases`).
const RUNNING_SQL: &str = "SELECT kind, tenant, COUNT(*) FROM jobs WHERE status = 'running' GROUP BY kind, tenant";

/// True for a job row `alias` of a paused kind or tenant. Whether anything is paused at all is
/// asked first, once per statement, so that rows are looked up only while something is.
fn paused_sql(alias: &str) -> String {
    format!(
        "CASE WHEN NOT EXISTS (SELECT 1 FROM job_pauses) THEN FALSE
              ELSE EXISTS (SELECT 1 FROM job_pauses p WHERE (p.scope = 'kind' AND p.name = {alias}.kind)
                                                       OR (p.scope = 'tenant' AND p.name = {alias}.tenant)) END"
    )
}

/// A claim's starting point read from [`CLAIM_TURNS_SQL`]'s rows.
#[derive(Debug, Default)]
struct Turns {
    /// Tenants with queued jobs, not paused, in name order.
    tenants: Vec<String>,
    /// Kinds to leave out: the claimer's own and the paused ones.
    excluded_kinds: Vec<String>,
}

impl Turns {
    fn new(request: &ClaimRequest, rows: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut turns = Self { tenants: Vec::new(), excluded_kinds: request.excluded_kinds.clone() };
        for (scope, name) in rows {
            match PauseScope::parse(&scope) {
                Some(PauseScope::Tenant) => turns.tenants.push(name),
                Some(PauseScope::Kind) => turns.excluded_kinds.push(name),
                None => {}
            }
        }
        turns
    }

    /// Whether the claim can take jobs in the one tenant's order without planning a round.
    fn single(&self, request: &ClaimRequest) -> bool {
        self.tenants.len() == 1 && !request.limits.any()
    }

    /// The plan of a round over these tenants, with the kinds it leaves out.
    fn plan(mut self, request: &ClaimRequest, running: &Running) -> (fair::FairClaim, Vec<String>) {
        let plan = fair::FairClaim::new(
            std::mem::take(&mut self.tenants),
            request.after_tenant.as_deref(),
            request.limit,
            &request.limits,
            running,
        );
        self.excluded_kinds.extend(plan.kinds_without_room().cloned());
        (plan, self.excluded_kinds)
    }
}

/// Orders claimed jobs as their ids are in `order` (the round's order).
fn in_order(mut claimed: Vec<Claimed>, order: &[&str]) -> Vec<Claimed> {
    let position: std::collections::HashMap<&str, usize> = order.iter().enumerate().map(|(at, id)| (*id, at)).collect();
    claimed.sort_by_key(|job| position.get(job.id.as_str()).copied().unwrap_or(usize::MAX));
    claimed
}

/// The earliest time a queued job is due after `now`, per tenant and priority (each an index
/// seek on `jobs_ready`), and the earliest `start_by` (a seek on `jobs_expiring`).
fn next_due_sql(now: &str) -> String {
    let per_priority = |priority: i16| {
        format!(
            "SELECT (SELECT MIN(run_after) FROM jobs WHERE status = 'queued' AND tenant = tenants.name
                     AND priority = {priority} AND run_after > {now}) AS due FROM tenants WHERE name IS NOT NULL"
        )
    };
    format!(
        "WITH RECURSIVE {QUEUED_TENANTS}
         SELECT (SELECT MIN(due) FROM ({} UNION ALL {} UNION ALL {}) AS soonest) AS run,
                (SELECT MIN(start_by) FROM jobs WHERE status = 'queued' AND start_by IS NOT NULL) AS expiry",
        per_priority(0),
        per_priority(1),
        per_priority(2)
    )
}

/// Counts by status and kind of the jobs `filter` matches (its statuses aside).
fn stats_sql(filter: &JobFilter, placeholder: fn(usize) -> String) -> Sql {
    let filter = JobFilter { statuses: Vec::new(), ..filter.clone() };
    let mut sql = Sql::new(placeholder);
    sql.push("SELECT j.status, j.kind, COUNT(*) AS n FROM jobs j WHERE 1 = 1")
        .filter(&filter, &Status::ALL)
        .push(" GROUP BY j.status, j.kind ORDER BY j.status, j.kind");
    sql
}

/// The earliest due time of a queued job `filter` matches that is due at `now`, per priority
/// as in [`next_due_sql`] (without a filter, each an index seek).
fn oldest_due_sql(filter: &JobFilter, now: Micros, placeholder: fn(usize) -> String) -> Sql {
    let filter = JobFilter { statuses: Vec::new(), ..filter.clone() };
    let mut sql = Sql::new(placeholder);
    sql.push("WITH RECURSIVE ").push(QUEUED_TENANTS).push(" SELECT MIN(due) AS due FROM (");
    for priority in 0..3 {
        if priority > 0 {
            sql.push(" UNION ALL ");
        }
        sql.push(&format!(
            "SELECT (SELECT MIN(j.run_after) FROM jobs j WHERE j.status = 'queued' AND j.tenant = tenants.name
                     AND j.priority = {priority} AND j.run_after <= "
        ))
        .bind(SqlValue::Int(now))
        .filter(&filter, &Status::ALL)
        .push(") AS due FROM tenants WHERE name IS NOT NULL");
    }
    sql.push(") AS oldest");
    sql
}

/// Ends `expired` the queued jobs whose `start_by` passed before `now`.
fn expire_sql(now: &str) -> String {
    format!(
        "UPDATE jobs SET status = 'expired', finished_at = {now}, error = '{EXPIRED_ERROR}'
         WHERE status = 'queued' AND start_by IS NOT NULL AND start_by < {now} RETURNING id"
    )
}

/// Records a cron entry's last tick, keeping the later of two, in a store's dialect
/// (`greatest` is `MAX` in SQLite and `GREATEST` in PostgreSQL).
fn cron_ran_sql(name: &str, tick: &str, greatest: &str) -> String {
    format!(
        "INSERT INTO cron_runs (name, last_tick) VALUES ({name}, {tick})
         ON CONFLICT (name) DO UPDATE SET last_tick = {greatest}(cron_runs.last_tick, EXCLUDED.last_tick)"
    )
}

/// Records a member's heartbeat: its row, created or refreshed. Parameters: id, address,
/// started_at, last_seen.
fn heartbeat_sql(placeholder: fn(usize) -> String) -> String {
    let [id, address, started, seen] = [1, 2, 3, 4].map(placeholder);
    format!(
        "INSERT INTO gateways (id, address, started_at, last_seen) VALUES ({id}, {address}, {started}, {seen})
         ON CONFLICT (id) DO UPDATE SET address = EXCLUDED.address, started_at = EXCLUDED.started_at,
                                        last_seen = EXCLUDED.last_seen"
    )
}

/// Forgets the members last seen before the parameter.
fn forget_members_sql(placeholder: fn(usize) -> String) -> String {
    format!("DELETE FROM gateways WHERE last_seen < {}", placeholder(1))
}

/// Every member, oldest first.
const MEMBERS_SQL: &str = "SELECT id, address, started_at, last_seen FROM gateways ORDER BY started_at, id";

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
