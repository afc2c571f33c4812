//! The shared store for many gateways: PostgreSQL. Claims take ready rows with
//! `FOR UPDATE SKIP LOCKED`, so gateways never wait on each other's claims; the `jobs` rows are
//! narrow (payloads and results live apart) and filled to 80% so lease updates stay on their page.
//! Inserts that arrive while others are being written are gathered into one statement (group
//! commit, as the SQLite writer does): a job per request costs a share of a commit, not one.

mod claim;

use super::{
    CancelOutcome, Depth, JobStore, Lease, MEMBERS_SQL, RECORD_COLUMNS, RECOVERED, RESCUED, Renewal, Sql, SqlValue,
    StoreError, cron_ran_sql, detail_sql, error_columns, expire_sql, failed_attempts_sql, forget_members_sql,
    heartbeat_sql, list_sql, next_due_sql, oldest_due_sql, purge_selection_sql, requeue_running_sql, retry_sql,
    stats_sql,
};
use crate::cluster::{Heard, Member, Signal, SignalListener};
use crate::model::{
    Accepted, AttemptRecord, Claimed, Completion, JobDetail, JobFilter, JobProgress, JobRecord, JobStats, Micros,
    NewJob, NextDue, Page, Priority, Status,
};
use crate::rules::{ClaimRequest, Pause, PauseScope};
use bytes::Bytes;
use sqlx::{
    Connection as _, Row as _,
    postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions},
};
use std::{
    sync::{Arc, LazyLock},
    time::Duration,
};
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Most jobs gathered into one insert statement.
const MAX_INSERT_BATCH: usize = 4096;

/// Insert statements in flight at once: while some commit, the next batch gathers.
const INSERTS_IN_FLIGHT: usize = 4;

/// Jobs to insert and where their answer goes.
type InsertRequest = (Vec<NewJob>, oneshot::Sender<Result<Vec<Accepted>, StoreError>>);

/// The PostgreSQL job store.
pub struct PostgresStore {
    pool: PgPool,
    inserts: mpsc::UnboundedSender<InsertRequest>,
    /// How to connect, for the heartbeat's own connection.
    options: PgConnectOptions,
    /// The heartbeat's connection, apart from the pool: a heartbeat that times out drops it
    /// (half-sent, on a network that may be gone) without leaving the pool a broken connection.
    heartbeat: tokio::sync::Mutex<Option<PgConnection>>,
}

/// The channel gateways on one database signal each other on.
const SIGNALS: &str = "rampart_jobs";

impl PostgresStore {
    /// Connects to `url` (`postgres://USER:PASS@HOST/DB`) and runs migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|error: sqlx::Error| StoreError::Url { url: redact(url), reason: error.to_string() })?;
        // Every statement here is prepared once per connection and run many times: planned once,
        // generically. Left to choose, PostgreSQL planned the acceptance statement anew on every
        // run, which cost the one-job-per-request path a tenth of its throughput.
        let options = options.options([("plan_cache_mode", "force_generic_plan")]);
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await
            .map_err(|error| StoreError::Url { url: redact(url), reason: error.to_string() })?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let (inserts, requests) = mpsc::unbounded_channel();
        tokio::spawn(gather_inserts(pool.clone(), requests));
        Ok(Self { pool, inserts, options, heartbeat: tokio::sync::Mutex::new(None) })
    }
}

/// Writes the inserts waiting, many requests to a statement, until the store is dropped.
async fn gather_inserts(pool: PgPool, mut requests: mpsc::UnboundedReceiver<InsertRequest>) {
    let in_flight = Arc::new(Semaphore::new(INSERTS_IN_FLIGHT));
    let mut waiting: Vec<InsertRequest> = Vec::new();
    loop {
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else { return };
        if waiting.is_empty() && requests.recv_many(&mut waiting, 1).await == 0 {
            return;
        }
        // Everything that arrived meanwhile, up to a statement's worth of jobs.
        let mut jobs: usize = waiting.iter().map(|(batch, _)| batch.len()).sum();
        while jobs < MAX_INSERT_BATCH
            && let Ok(request) = requests.try_recv()
        {
            jobs += request.0.len();
            waiting.push(request);
        }
        let batch = std::mem::take(&mut waiting);
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut sizes = Vec::with_capacity(batch.len());
            let mut all = Vec::with_capacity(jobs);
            let mut replies = Vec::with_capacity(batch.len());
            for (jobs, reply) in batch {
                sizes.push(jobs.len());
                all.extend(jobs);
                replies.push(reply);
            }
            match insert_batch(&pool, all).await {
                Ok(accepted) => {
                    let mut accepted = accepted.into_iter();
                    for (size, reply) in sizes.into_iter().zip(replies) {
                        let _ = reply.send(Ok(accepted.by_ref().take(size).collect()));
                    }
                }
                Err(error) => {
                    let error = Arc::new(error);
                    for reply in replies {
                        let _ = reply.send(Err(StoreError::Database(Arc::clone(&error) as _)));
                    }
                }
            }
            drop(permit);
        });
    }
}

/// One heartbeat on `connection`: the member's row, the forgotten ones gone, every member left.
async fn beat(
    connection: &mut PgConnection,
    member: &Member,
    forget_before: Micros,
) -> Result<Vec<Member>, StoreError> {
    static HEARTBEAT: LazyLock<String> = LazyLock::new(|| heartbeat_sql(placeholder));
    static FORGET: LazyLock<String> = LazyLock::new(|| forget_members_sql(placeholder));
    sqlx::query(HEARTBEAT.as_str())
        .bind(&member.id)
        .bind(&member.address)
        .bind(member.started_at)
        .bind(member.last_seen)
        .execute(&mut *connection)
        .await?;
    sqlx::query(FORGET.as_str()).bind(forget_before).execute(&mut *connection).await?;
    let rows = sqlx::query(MEMBERS_SQL).fetch_all(&mut *connection).await?;
    rows.iter()
        .map(|row| {
            Ok(Member {
                id: row.try_get("id")?,
                address: row.try_get("address")?,
                started_at: row.try_get("started_at")?,
                last_seen: row.try_get("last_seen")?,
            })
        })
        .collect()
}

/// The other gateways' signals, heard on a connection of the pool's.
struct Signals {
    listener: PgListener,
}

#[async_trait::async_trait]
impl SignalListener for Signals {
    async fn next(&mut self) -> Result<Option<Heard>, StoreError> {
        loop {
            // `None`: the connection was lost; the next call connects and listens again.
            let Some(notification) = self.listener.try_recv().await? else { return Ok(None) };
            if let Some(heard) = Signal::decode(notification.payload()) {
                return Ok(Some(heard));
            }
        }
    }
}

/// The URL with any password hidden, for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Inserts `jobs`: the plain ones in one statement, each unique one in a transaction of its own.
async fn insert_batch(pool: &PgPool, jobs: Vec<NewJob>) -> Result<Vec<Accepted>, StoreError> {
    if jobs.iter().all(|job| job.unique.is_none()) {
        return insert_plain(&mut *pool.acquire().await?, jobs).await;
    }
    let mut answers: Vec<Option<Accepted>> = vec![None; jobs.len()];
    let (mut plain, mut plain_at) = (Vec::new(), Vec::new());
    for (at, job) in jobs.into_iter().enumerate() {
        if job.unique.is_some() {
            answers[at] = Some(insert_unique(pool, job).await?);
        } else {
            plain_at.push(at);
            plain.push(job);
        }
    }
    if !plain.is_empty() {
        let accepted = insert_plain(&mut *pool.acquire().await?, plain).await?;
        for (at, accepted) in plain_at.into_iter().zip(accepted) {
            answers[at] = Some(accepted);
        }
    }
    Ok(answers.into_iter().flatten().collect())
}

/// Inserts a unique job unless a job holding its key blocks it. Gateways accepting the same key
/// at once take turns on a lock named by the key, so each sees what the one before committed.
async fn insert_unique(pool: &PgPool, job: NewJob) -> Result<Accepted, StoreError> {
    let Some(unique) = job.unique.clone() else { return Err(StoreError::database("not a unique job")) };
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))").bind(&unique.key).execute(&mut *tx).await?;
    if let Some(key) = &job.idempotency_key {
        let earlier: Option<(String, Option<String>)> =
            sqlx::query_as("SELECT id, request_fingerprint FROM jobs WHERE idempotency_key = $1")
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some((id, fingerprint)) = earlier {
            return Ok(Accepted::replayed(id, fingerprint != job.fingerprint));
        }
    }
    let holder: Option<(String, String, i64)> = sqlx::query_as(
        "SELECT j.id, j.status, j.created_at FROM job_uniques u JOIN jobs j ON j.id = u.job_id WHERE u.key = $1",
    )
    .bind(&unique.key)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some((id, status, created_at)) = holder
        && unique.blocks(&status, created_at)
    {
        return Ok(Accepted::unique_conflict(id));
    }
    let id = job.id.clone();
    let accepted = insert_plain(&mut tx, vec![job]).await?.remove(0);
    if accepted.created {
        sqlx::query(
            "INSERT INTO job_uniques (key, job_id) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET job_id = $2",
        )
        .bind(&unique.key)
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(accepted)
}

/// Inserts `jobs` in one statement (their payloads with them), then looks up the earlier jobs
/// of replayed idempotency keys.
async fn insert_plain(conn: &mut sqlx::PgConnection, jobs: Vec<NewJob>) -> Result<Vec<Accepted>, StoreError> {
    let count = jobs.len();
    let mut columns = InsertColumns::with_capacity(count);
    for job in &jobs {
        columns.push(job);
    }
    // One statement for the whole batch: the jobs, then the payloads of those inserted (a
    // taken idempotency key inserts nothing).
    static INSERT: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH given AS (
            SELECT * FROM UNNEST($1::text[], $2::text[], $3::int2[], $4::int4[], $5::int8[], $6::int8[],
                                 $7::text[], $8::bytea[], $9::text[], $10::text[], $11::text[], $12::int8[],
                                 $13::int8[], $14::int8[], $15::int8[], $16::text[])
                AS t(id, kind, priority, max_attempts, created_at, timeout_ms, idempotency_key, payload,
                     request_fingerprint, tenant, lease_owner, lease_expires_at, attempt_token, run_after,
                     start_by, traceparent)),
         -- A job claimed at acceptance starts unless its kind or tenant is paused.
         input AS (
            SELECT given.*, given.lease_owner IS NOT NULL AND NOT {paused} AS starts FROM given),
         added AS (
            INSERT INTO jobs (id, kind, priority, status, max_attempts, run_after, timeout_ms, idempotency_key,
                              request_fingerprint, tenant, created_at, attempt, attempt_token, lease_owner,
                              lease_expires_at, started_at, start_by, traceparent)
            SELECT id, kind, priority, CASE WHEN starts THEN 'running' ELSE 'queued' END,
                   max_attempts, run_after, timeout_ms, idempotency_key, request_fingerprint, tenant,
                   created_at, CASE WHEN starts THEN 1 ELSE 0 END, attempt_token,
                   CASE WHEN starts THEN lease_owner END, CASE WHEN starts THEN lease_expires_at END,
                   CASE WHEN starts THEN created_at END, start_by, traceparent
            FROM input ON CONFLICT (idempotency_key) DO NOTHING RETURNING id, status = 'running' AS started),
         payloads AS (
            INSERT INTO job_payloads (id, payload)
            SELECT input.id, input.payload FROM input JOIN added ON added.id = input.id)
         SELECT id, started FROM added",
            paused = super::paused_sql("given")
        )
    });
    let inserted: Vec<(String, bool)> = sqlx::query_as(INSERT.as_str())
        .bind(&columns.ids)
        .bind(&columns.kinds)
        .bind(&columns.priorities)
        .bind(&columns.max_attempts)
        .bind(&columns.created_at)
        .bind(&columns.timeouts)
        .bind(&columns.keys)
        .bind(&columns.payloads)
        .bind(&columns.fingerprints)
        .bind(&columns.tenants)
        .bind(&columns.lease_owners)
        .bind(&columns.lease_expiries)
        .bind(&columns.tokens)
        .bind(&columns.run_after)
        .bind(&columns.start_by)
        .bind(&columns.traceparents)
        .fetch_all(&mut *conn)
        .await?;
    let inserted: std::collections::HashMap<String, bool> = inserted.into_iter().collect();
    let replayed_keys: Vec<&str> = jobs
        .iter()
        .filter(|job| !inserted.contains_key(&job.id))
        .filter_map(|job| job.idempotency_key.as_deref())
        .collect();
    let mut earlier = std::collections::HashMap::new();
    if !replayed_keys.is_empty() {
        let rows =
            sqlx::query("SELECT id, idempotency_key, request_fingerprint FROM jobs WHERE idempotency_key = ANY($1)")
                .bind(&replayed_keys)
                .fetch_all(&mut *conn)
                .await?;
        for row in rows {
            let first = (row.try_get::<String, _>("id")?, row.try_get::<Option<String>, _>("request_fingerprint")?);
            earlier.insert(row.try_get::<String, _>("idempotency_key")?, first);
        }
    }
    let mut accepted = Vec::with_capacity(count);
    for job in jobs {
        if let Some(started) = inserted.get(&job.id) {
            accepted.push(Accepted::created(job.id, *started));
        } else {
            let key = job.idempotency_key.unwrap_or_default();
            let (id, fingerprint) = earlier.get(&key).cloned().ok_or_else(|| {
                StoreError::database(format!("job {} was not inserted and no job holds its key", job.id))
            })?;
            accepted.push(Accepted::replayed(id, fingerprint != job.fingerprint));
        }
    }
    Ok(accepted)
}

#[async_trait::async_trait]
impl JobStore for PostgresStore {
    async fn insert(&self, jobs: Vec<NewJob>) -> Result<Vec<Accepted>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.inserts.send((jobs, reply)).map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<Claimed>, StoreError> {
        claim::claim(&self.pool, request).await
    }

    async fn pause(&self, scope: PauseScope, name: &str, now: Micros) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Waits out claims and acceptances in flight on any gateway, and holds back new ones
        // until the pause commits: once it is answered, no job of the kind or tenant starts.
        sqlx::query("LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE").execute(&mut *tx).await?;
        let added =
            sqlx::query("INSERT INTO job_pauses (scope, name, paused_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(scope.as_str())
                .bind(name)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        tx.commit().await?;
        Ok(added > 0)
    }

    async fn resume(&self, scope: PauseScope, name: &str) -> Result<bool, StoreError> {
        let removed = sqlx::query("DELETE FROM job_pauses WHERE scope = $1 AND name = $2")
            .bind(scope.as_str())
            .bind(name)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(removed > 0)
    }

    async fn progress(&self, id: &str, token: i64, progress: &JobProgress) -> Result<bool, StoreError> {
        static PROGRESS: LazyLock<String> = LazyLock::new(|| super::progress_sql("$1", "$2", "$3"));
        let changed = sqlx::query(PROGRESS.as_str())
            .bind(id)
            .bind(token)
            .bind(progress.stored())
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(changed > 0)
    }

    async fn pauses(&self) -> Result<Vec<Pause>, StoreError> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT scope, name, paused_at FROM job_pauses ORDER BY paused_at, scope, name")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(scope, name, since)| PauseScope::parse(&scope).map(|scope| Pause { scope, name, since }))
            .collect())
    }

    async fn complete(&self, completions: Vec<Completion>) -> Result<Vec<bool>, StoreError> {
        let mut columns = CompletionColumns::with_capacity(completions.len());
        for completion in &completions {
            columns.push(completion);
        }
        // One statement for the whole batch, each row fenced by its attempt's token.
        let done: Vec<String> = sqlx::query_scalar(
            "WITH input AS (
                SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::int8[], $5::int8[], $6::bool[],
                                     $7::text[], $8::bytea[], $9::int4[], $10::text[], $11::text[], $12::int8[],
                                     $13::int4[], $14::int8[])
                    AS t(id, token, status, finished_at, run_after, error_changes, error, result, attempt_change,
                         progress, worker, started, attempt_no, ended)),
             done AS (
                UPDATE jobs j SET status = input.status, finished_at = input.finished_at,
                       run_after = COALESCE(input.run_after, j.run_after),
                       error = CASE WHEN input.error_changes THEN input.error ELSE j.error END,
                       attempt = j.attempt + input.attempt_change, lease_owner = NULL, lease_expires_at = NULL,
                       progress = COALESCE(input.progress, j.progress),
                       worker = COALESCE(input.worker, j.worker),
                       attempt_started_at = COALESCE(input.started, j.attempt_started_at)
                FROM input WHERE j.id = input.id AND j.attempt_token = input.token AND j.status = 'running'
                RETURNING j.id),
             results AS (
                INSERT INTO job_results (id, result)
                SELECT input.id, input.result FROM input JOIN done ON done.id = input.id
                WHERE input.result IS NOT NULL
                ON CONFLICT (id) DO UPDATE SET result = EXCLUDED.result),
             attempts AS (
                INSERT INTO job_attempts (job_id, attempt, worker, started_at, finished_at, status, error)
                SELECT input.id, input.attempt_no, input.worker, input.started, input.ended, input.status, input.error
                FROM input JOIN done ON done.id = input.id
                WHERE input.result IS NULL AND input.started IS NOT NULL)
             SELECT id FROM done",
        )
        .bind(&columns.ids)
        .bind(&columns.tokens)
        .bind(&columns.statuses)
        .bind(&columns.finished_at)
        .bind(&columns.run_after)
        .bind(&columns.error_changes)
        .bind(&columns.errors)
        .bind(&columns.results)
        .bind(&columns.attempt_changes)
        .bind(&columns.progress)
        .bind(&columns.workers)
        .bind(&columns.started)
        .bind(&columns.attempts)
        .bind(&columns.ended)
        .fetch_all(&self.pool)
        .await?;
        let done: std::collections::HashSet<String> = done.into_iter().collect();
        Ok(completions.iter().map(|completion| done.contains(&completion.id)).collect())
    }

    async fn renew(&self, owner: &str, leases: Vec<Lease>, until: Micros) -> Result<Renewal, StoreError> {
        let (ids, tokens): (Vec<String>, Vec<i64>) = leases.into_iter().map(|lease| (lease.id, lease.token)).unzip();
        let rows = sqlx::query(
            "UPDATE jobs j SET lease_expires_at = $1
             FROM UNNEST($2::text[], $3::bigint[]) AS lease(id, token)
             WHERE j.id = lease.id AND j.attempt_token = lease.token AND j.lease_owner = $4 AND j.status = 'running'
             RETURNING j.id, j.cancel_requested",
        )
        .bind(until)
        .bind(&ids)
        .bind(&tokens)
        .bind(owner)
        .fetch_all(&self.pool)
        .await?;
        let mut renewal = Renewal::default();
        let mut renewed = std::collections::HashSet::with_capacity(rows.len());
        for row in rows {
            let id: String = row.try_get("id")?;
            if row.try_get::<bool, _>("cancel_requested")? {
                renewal.cancel.push(id.clone());
            }
            renewed.insert(id);
        }
        renewal.lost = ids
            .into_iter()
            .zip(tokens)
            .filter(|(id, _)| !renewed.contains(id))
            .map(|(id, token)| Lease { id, token })
            .collect();
        Ok(renewal)
    }

    async fn rescue(&self, now: Micros) -> Result<u64, StoreError> {
        static EXPIRED: LazyLock<String> =
            LazyLock::new(|| requeue_running_sql("$1", "cancel_requested", RESCUED, "lease_expires_at < $1"));
        let rescued = sqlx::query(EXPIRED.as_str()).bind(now).execute(&self.pool).await?;
        Ok(rescued.rows_affected())
    }

    async fn recover(&self, owner: &str, now: Micros) -> Result<u64, StoreError> {
        static OWNED: LazyLock<String> =
            LazyLock::new(|| requeue_running_sql("$1", "cancel_requested", RECOVERED, "lease_owner = $2"));
        let recovered = sqlx::query(OWNED.as_str()).bind(now).bind(owner).execute(&self.pool).await?;
        Ok(recovered.rows_affected())
    }

    async fn get(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        static GET: LazyLock<String> = LazyLock::new(|| {
            format!("SELECT {RECORD_COLUMNS} FROM jobs j LEFT JOIN job_results r ON r.id = j.id WHERE j.id = $1")
        });
        let row = sqlx::query(GET.as_str()).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(record).transpose()
    }

    async fn get_many(&self, ids: &[String]) -> Result<Vec<JobRecord>, StoreError> {
        static GET_MANY: LazyLock<String> = LazyLock::new(|| {
            format!("SELECT {RECORD_COLUMNS} FROM jobs j LEFT JOIN job_results r ON r.id = j.id WHERE j.id = ANY($1)")
        });
        let rows = sqlx::query(GET_MANY.as_str()).bind(ids).fetch_all(&self.pool).await?;
        rows.iter().map(record).collect()
    }

    async fn detail(&self, id: &str) -> Result<Option<JobDetail>, StoreError> {
        static DETAIL: LazyLock<String> = LazyLock::new(|| detail_sql("$1"));
        static ATTEMPTS: LazyLock<String> = LazyLock::new(|| failed_attempts_sql("$1"));
        let Some(row) = sqlx::query(DETAIL.as_str()).bind(id).fetch_optional(&self.pool).await? else {
            return Ok(None);
        };
        let payload: Option<Vec<u8>> = row.try_get("payload")?;
        let attempts = sqlx::query(ATTEMPTS.as_str()).bind(id).fetch_all(&self.pool).await?;
        let failed_attempts = attempts
            .iter()
            .map(|attempt| {
                let status: String = attempt.try_get("status")?;
                Ok(AttemptRecord {
                    attempt: attempt.try_get("attempt")?,
                    worker: attempt.try_get("worker")?,
                    started_at: attempt.try_get("started_at")?,
                    finished_at: attempt.try_get("finished_at")?,
                    status: Status::parse(&status).unwrap_or(Status::Failed),
                    error: attempt.try_get("error")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some(JobDetail {
            record: record(&row)?,
            payload: payload.map(Bytes::from).unwrap_or_default(),
            idempotency_key: row.try_get("idempotency_key")?,
            traceparent: row.try_get("traceparent")?,
            worker: row.try_get("worker")?,
            attempt_started_at: row.try_get("attempt_started_at")?,
            failed_attempts,
        }))
    }

    async fn cancel(&self, id: &str, now: Micros) -> Result<CancelOutcome, StoreError> {
        let queued =
            sqlx::query("UPDATE jobs SET status = 'cancelled', finished_at = $2 WHERE id = $1 AND status = 'queued'")
                .bind(id)
                .bind(now)
                .execute(&self.pool)
                .await?;
        if queued.rows_affected() == 1 {
            return Ok(CancelOutcome::Cancelled);
        }
        let running = sqlx::query("UPDATE jobs SET cancel_requested = TRUE WHERE id = $1 AND status = 'running'")
            .bind(id)
            .execute(&self.pool)
            .await?;
        if running.rows_affected() == 1 {
            return Ok(CancelOutcome::Requested);
        }
        let exists: Option<String> =
            sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        Ok(if exists.is_some() { CancelOutcome::AlreadyFinished } else { CancelOutcome::NotFound })
    }

    async fn purge(&self, filter: &JobFilter) -> Result<u64, StoreError> {
        // One statement: the payloads and results go with exactly the jobs deleted.
        let selection = purge_selection_sql(filter, placeholder);
        let text = format!(
            "WITH gone AS (DELETE FROM jobs WHERE id IN ({}) RETURNING id),
                  payloads AS (DELETE FROM job_payloads WHERE id IN (SELECT id FROM gone)),
                  results AS (DELETE FROM job_results WHERE id IN (SELECT id FROM gone)),
                  attempts AS (DELETE FROM job_attempts WHERE job_id IN (SELECT id FROM gone))
             SELECT COUNT(*) FROM gone",
            selection.text
        );
        let sql = Sql { text, ..selection };
        let deleted: i64 = bind_all(sqlx::query_scalar(sqlx::AssertSqlSafe(sql.text.as_str())), &sql.values)
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(deleted).unwrap_or(0))
    }

    async fn next_due(&self, now: Micros) -> Result<NextDue, StoreError> {
        static NEXT_DUE: LazyLock<String> = LazyLock::new(|| next_due_sql("$1"));
        let row = sqlx::query(NEXT_DUE.as_str()).bind(now).fetch_one(&self.pool).await?;
        Ok(NextDue { run: row.try_get("run")?, expiry: row.try_get("expiry")? })
    }

    async fn expire(&self, now: Micros) -> Result<Vec<String>, StoreError> {
        static EXPIRE: LazyLock<String> = LazyLock::new(|| expire_sql("$1"));
        Ok(sqlx::query_scalar(EXPIRE.as_str()).bind(now).fetch_all(&self.pool).await?)
    }

    async fn list(&self, filter: &JobFilter, page: &Page) -> Result<Vec<JobRecord>, StoreError> {
        let sql = list_sql(filter, page, placeholder);
        let query = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql.text.as_str())), &sql.values);
        let rows = if filter.text.is_some() {
            // Planned for its prefix: how many jobs a prefix matches decides between reading
            // the newest jobs until enough match and reading every match (a generic plan, which
            // cannot tell `order-` from `order-17`, took 107 ms for a prefix 100,000 keys share).
            let mut transaction = self.pool.begin().await?;
            sqlx::query("SET LOCAL plan_cache_mode = force_custom_plan").execute(&mut *transaction).await?;
            let rows = query.fetch_all(&mut *transaction).await?;
            transaction.commit().await?;
            rows
        } else {
            query.fetch_all(&self.pool).await?
        };
        rows.iter().map(record).collect()
    }

    async fn stats(&self, filter: &JobFilter, now: Micros) -> Result<JobStats, StoreError> {
        let sql = stats_sql(filter, placeholder);
        let rows =
            bind_all(sqlx::query(sqlx::AssertSqlSafe(sql.text.as_str())), &sql.values).fetch_all(&self.pool).await?;
        let mut counts = Vec::with_capacity(rows.len());
        for row in rows {
            let status: String = row.try_get("status")?;
            if let Some(status) = Status::parse(&status) {
                counts.push((status, row.try_get("kind")?, row.try_get("n")?));
            }
        }
        Ok(JobStats { counts, oldest_due: self.oldest_due(filter, now).await? })
    }

    async fn oldest_due(&self, filter: &JobFilter, now: Micros) -> Result<Option<Micros>, StoreError> {
        let sql = oldest_due_sql(filter, now, placeholder);
        Ok(bind_all(sqlx::query_scalar(sqlx::AssertSqlSafe(sql.text.as_str())), &sql.values)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn cron_runs(&self) -> Result<Vec<(String, Micros)>, StoreError> {
        let rows = sqlx::query("SELECT name, last_tick FROM cron_runs ORDER BY name").fetch_all(&self.pool).await?;
        rows.iter().map(|row| Ok((row.try_get("name")?, row.try_get("last_tick")?))).collect()
    }

    async fn heartbeat(
        &self,
        member: &Member,
        forget_before: Micros,
        within: Duration,
    ) -> Result<Vec<Member>, StoreError> {
        let mut slot = self.heartbeat.lock().await;
        let connection = slot.take();
        let beat = async {
            let mut connection = match connection {
                Some(connection) => connection,
                None => PgConnection::connect_with(&self.options).await?,
            };
            let members = beat(&mut connection, member, forget_before).await?;
            Ok::<_, StoreError>((connection, members))
        };
        // On a timeout the half-used connection goes with the future.
        let outcome = tokio::time::timeout(within, beat).await;
        match outcome {
            Ok(Ok((connection, members))) => {
                *slot = Some(connection);
                Ok(members)
            }
            Ok(Err(error)) => Err(error),
            Err(_) => Err(StoreError::Unavailable(format!("no answer to a heartbeat within {within:?}"))),
        }
    }

    async fn leave(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM gateways WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(())
    }

    async fn signal(&self, from: &str, signal: &Signal) -> Result<(), StoreError> {
        let payloads = signal.encode(from);
        if payloads.is_empty() {
            return Ok(());
        }
        sqlx::query("SELECT pg_notify($1, payload) FROM UNNEST($2::text[]) AS payload")
            .bind(SIGNALS)
            .bind(payloads)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn listen(&self) -> Result<Option<Box<dyn SignalListener>>, StoreError> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(SIGNALS).await?;
        Ok(Some(Box::new(Signals { listener })))
    }

    async fn cron_ran(&self, name: &str, tick: Micros) -> Result<(), StoreError> {
        static CRON_RAN: LazyLock<String> = LazyLock::new(|| cron_ran_sql("$1", "$2", "GREATEST"));
        sqlx::query(CRON_RAN.as_str()).bind(name).bind(tick).execute(&self.pool).await?;
        Ok(())
    }

    async fn retry(&self, filter: &JobFilter, limit: usize, now: Micros) -> Result<Vec<String>, StoreError> {
        let sql = retry_sql(filter, limit, now, "FALSE", placeholder);
        Ok(bind_all(sqlx::query_scalar(sqlx::AssertSqlSafe(sql.text.as_str())), &sql.values)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn depth(&self) -> Result<Depth, StoreError> {
        let rows =
            sqlx::query("SELECT status, COUNT(*) AS n FROM jobs WHERE status IN ('queued', 'running') GROUP BY status")
                .fetch_all(&self.pool)
                .await?;
        let mut depth = Depth::default();
        for row in rows {
            let status: String = row.try_get("status")?;
            let count: i64 = row.try_get("n")?;
            match status.as_str() {
                "queued" => depth.queued = count,
                "running" => depth.running = count,
                _ => {}
            }
        }
        Ok(depth)
    }
}

/// PostgreSQL's placeholders: `$1`, `$2`, ...
fn placeholder(n: usize) -> String {
    format!("${n}")
}

/// Binds `values` to a query, in order.
fn bind_all<'q, Q: Bind<'q>>(mut query: Q, values: &'q [SqlValue]) -> Q {
    for value in values {
        query = match value {
            SqlValue::Text(text) => query.bind_text(text),
            SqlValue::Int(number) => query.bind_int(*number),
        };
    }
    query
}

/// The query types [`bind_all`] binds to.
trait Bind<'q>: Sized {
    fn bind_text(self, text: &'q str) -> Self;
    fn bind_int(self, number: i64) -> Self;
}

impl<'q> Bind<'q> for sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    fn bind_text(self, text: &'q str) -> Self {
        self.bind(text)
    }
    fn bind_int(self, number: i64) -> Self {
        self.bind(number)
    }
}

impl<'q, O> Bind<'q> for sqlx::query::QueryScalar<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
    fn bind_text(self, text: &'q str) -> Self {
        self.bind(text)
    }
    fn bind_int(self, number: i64) -> Self {
        self.bind(number)
    }
}

/// A batch of new jobs as one array per column, for `UNNEST`.
struct InsertColumns<'a> {
    ids: Vec<&'a str>,
    kinds: Vec<&'a str>,
    priorities: Vec<i16>,
    max_attempts: Vec<i32>,
    created_at: Vec<i64>,
    timeouts: Vec<i64>,
    keys: Vec<Option<&'a str>>,
    payloads: Vec<&'a [u8]>,
    fingerprints: Vec<Option<&'a str>>,
    tenants: Vec<&'a str>,
    lease_owners: Vec<Option<&'a str>>,
    lease_expiries: Vec<Option<i64>>,
    tokens: Vec<i64>,
    run_after: Vec<i64>,
    start_by: Vec<Option<i64>>,
    traceparents: Vec<Option<&'a str>>,
}

impl<'a> InsertColumns<'a> {
    fn with_capacity(count: usize) -> Self {
        Self {
            ids: Vec::with_capacity(count),
            kinds: Vec::with_capacity(count),
            priorities: Vec::with_capacity(count),
            max_attempts: Vec::with_capacity(count),
            created_at: Vec::with_capacity(count),
            timeouts: Vec::with_capacity(count),
            keys: Vec::with_capacity(count),
            payloads: Vec::with_capacity(count),
            fingerprints: Vec::with_capacity(count),
            tenants: Vec::with_capacity(count),
            lease_owners: Vec::with_capacity(count),
            lease_expiries: Vec::with_capacity(count),
            tokens: Vec::with_capacity(count),
            run_after: Vec::with_capacity(count),
            start_by: Vec::with_capacity(count),
            traceparents: Vec::with_capacity(count),
        }
    }

    fn push(&mut self, job: &'a NewJob) {
        self.run_after.push(job.run_after);
        self.start_by.push(job.start_by);
        self.traceparents.push(job.traceparent.as_deref());
        self.ids.push(&job.id);
        self.kinds.push(&job.kind);
        self.priorities.push(job.priority.stored());
        self.max_attempts.push(job.max_attempts);
        self.created_at.push(job.created_at);
        self.timeouts.push(job.timeout_ms);
        self.keys.push(job.idempotency_key.as_deref());
        self.payloads.push(&job.payload);
        self.fingerprints.push(job.fingerprint.as_deref());
        self.tenants.push(&job.tenant);
        let claim = job.claim.as_ref();
        self.lease_owners.push(claim.map(|claim| claim.owner.as_ref()));
        self.lease_expiries.push(claim.map(|claim| claim.lease_until));
        self.tokens.push(claim.map_or(0, |claim| claim.token));
    }
}

/// A batch of completions as one array per column, for `UNNEST`.
struct CompletionColumns<'a> {
    ids: Vec<&'a str>,
    tokens: Vec<i64>,
    statuses: Vec<&'static str>,
    finished_at: Vec<Option<i64>>,
    run_after: Vec<Option<i64>>,
    error_changes: Vec<bool>,
    errors: Vec<Option<&'a str>>,
    results: Vec<Option<&'a [u8]>>,
    attempt_changes: Vec<i32>,
    progress: Vec<Option<String>>,
    workers: Vec<Option<&'a str>>,
    started: Vec<Option<i64>>,
    attempts: Vec<Option<i32>>,
    ended: Vec<i64>,
}

impl<'a> CompletionColumns<'a> {
    fn with_capacity(count: usize) -> Self {
        Self {
            ids: Vec::with_capacity(count),
            tokens: Vec::with_capacity(count),
            statuses: Vec::with_capacity(count),
            finished_at: Vec::with_capacity(count),
            run_after: Vec::with_capacity(count),
            error_changes: Vec::with_capacity(count),
            errors: Vec::with_capacity(count),
            results: Vec::with_capacity(count),
            attempt_changes: Vec::with_capacity(count),
            progress: Vec::with_capacity(count),
            workers: Vec::with_capacity(count),
            started: Vec::with_capacity(count),
            attempts: Vec::with_capacity(count),
            ended: Vec::with_capacity(count),
        }
    }

    fn push(&mut self, completion: &'a Completion) {
        let transition = completion.outcome.transition(completion.at);
        let (error_changes, error) = error_columns(transition.error);
        self.ids.push(&completion.id);
        self.tokens.push(completion.token);
        self.statuses.push(transition.status.as_str());
        self.finished_at.push(transition.finished_at);
        self.run_after.push(transition.run_after);
        self.error_changes.push(error_changes);
        self.errors.push(error);
        self.results.push(transition.result.map(AsRef::as_ref));
        self.attempt_changes.push(transition.attempt_change);
        self.progress.push(completion.progress.as_ref().map(JobProgress::stored));
        let run = completion.run.as_ref();
        self.workers.push(run.and_then(|run| run.worker.as_deref()));
        self.started.push(run.map(|run| run.started));
        self.attempts.push(run.map(|run| run.attempt));
        self.ended.push(completion.at);
    }
}

fn record(row: &sqlx::postgres::PgRow) -> Result<JobRecord, StoreError> {
    let status: String = row.try_get("status")?;
    let result: Option<Vec<u8>> = row.try_get("result")?;
    Ok(JobRecord {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        status: Status::parse(&status).unwrap_or(Status::Queued),
        priority: Priority::from_stored(row.try_get("priority")?),
        attempt: row.try_get("attempt")?,
        max_attempts: row.try_get("max_attempts")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        error: row.try_get("error")?,
        result: result.map(Bytes::from),
        tenant: row.try_get("tenant")?,
        run_after: row.try_get("run_after")?,
        start_by: row.try_get("start_by")?,
        progress: JobProgress::from_stored(row.try_get::<Option<String>, _>("progress")?.as_deref()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_from_errors() {
        assert_eq!(redact("postgres://app:s3cret@db:5432/jobs"), "postgres://app:***@db:5432/jobs");
        assert_eq!(redact("postgres://app@db/jobs"), "postgres://app@db/jobs");
    }
}
