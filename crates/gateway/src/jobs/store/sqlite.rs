//! The embedded store: one SQLite file in WAL mode. A single writer task owns the only writing
//! connection and commits every write that arrives while the previous batch was being written in
//! one `BEGIN IMMEDIATE` transaction (group commit), so there is never a `SQLITE_BUSY` between
//! writers and a burst of jobs costs a handful of fsyncs. Reads use a small pool of their own.

use super::{CancelOutcome, Depth, JobStore, Lease, Renewal, StoreError};
use crate::jobs::model::{Accepted, Claimed, Completion, JobRecord, Micros, NewJob, Outcome, Status};
use bytes::Bytes;
use nix::fcntl::{Flock, FlockArg};
use sqlx::{
    Connection as _, Row as _, SqliteConnection,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous},
};
use std::{str::FromStr as _, time::Duration};
use tokio::sync::{mpsc, oneshot};

/// Writes committed together at most.
const MAX_BATCH: usize = 512;

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A write for the writer task.
enum Command {
    Insert(Vec<NewJob>, Reply<Vec<Accepted>>),
    Claim {
        limit: usize,
        owner: String,
        lease_until: Micros,
        excluded: String,
        now: Micros,
        reply: Reply<Vec<Claimed>>,
    },
    Complete(Vec<Completion>, Reply<Vec<bool>>),
    Renew {
        owner: String,
        leases: Vec<Lease>,
        until: Micros,
        reply: Reply<Renewal>,
    },
    Rescue {
        now: Micros,
        reply: Reply<u64>,
    },
    Recover {
        now: Micros,
        reply: Reply<u64>,
    },
    Cancel {
        id: String,
        now: Micros,
        reply: Reply<CancelOutcome>,
    },
    Prune {
        before: Micros,
        reply: Reply<u64>,
    },
}

/// The SQLite job store.
pub struct SqliteStore {
    writer: mpsc::Sender<Command>,
    reader: SqlitePool,
    /// Held while the store is open: a second gateway on the same file would take over the
    /// first one's running jobs at its start.
    _lock: Flock<std::fs::File>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://PATH`), runs migrations and
    /// starts the writer.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|error| StoreError::Url { url: url.to_owned(), reason: error.to_string() })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // In WAL mode NORMAL is durable against the process crashing (kill -9) at any point;
            // only an operating-system crash can lose the last transactions.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-65536");
        if let Some(parent) = options.get_filename().parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|error| StoreError::Url {
                url: url.to_owned(),
                reason: format!("cannot create {}: {error}", parent.display()),
            })?;
        }
        let lock = lock(url, options.get_filename())?;
        let mut writer = SqliteConnection::connect_with(&options).await?;
        sqlx::migrate!("./migrations/sqlite").run(&mut writer).await?;
        let reader = SqlitePoolOptions::new().max_connections(4).connect_with(options.read_only(true)).await?;
        let (commands, inbox) = mpsc::channel(16 * MAX_BATCH);
        tokio::spawn(write_loop(writer, inbox));
        Ok(Self { writer: commands, reader, _lock: lock })
    }

    async fn send<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writer.send(make(reply)).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

/// Takes the file's lock (`PATH.lock`), or says which file another gateway holds.
fn lock(url: &str, database: &std::path::Path) -> Result<Flock<std::fs::File>, StoreError> {
    let mut path = database.as_os_str().to_owned();
    path.push(".lock");
    let refuse = |reason: String| StoreError::Url { url: url.to_owned(), reason };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|error| refuse(format!("cannot open {}: {error}", std::path::Path::new(&path).display())))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|_| {
        refuse(format!(
            "another gateway is using {} (one gateway per SQLite file; use PostgreSQL for several)",
            database.display()
        ))
    })
}

/// Commits every command waiting into one transaction, each in a savepoint so that one failure
/// does not undo the others, and answers them once the commit is durable.
async fn write_loop(mut conn: SqliteConnection, mut inbox: mpsc::Receiver<Command>) {
    while let Some(first) = inbox.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match inbox.try_recv() {
                Ok(command) => batch.push(command),
                Err(_) => break,
            }
        }
        if let Err(error) = sqlx::query("BEGIN IMMEDIATE").execute(&mut conn).await {
            tracing::error!(%error, "cannot begin a job store transaction");
            for command in batch {
                command.fail(|| StoreError::Database(sqlx::Error::Protocol(error.to_string())));
            }
            continue;
        }
        let mut answers = Vec::with_capacity(batch.len());
        for command in batch {
            answers.push(run_in_savepoint(&mut conn, command).await);
        }
        let committed = sqlx::query("COMMIT").execute(&mut conn).await;
        if let Err(error) = &committed {
            tracing::error!(%error, "job store commit failed");
            let _ = sqlx::query("ROLLBACK").execute(&mut conn).await;
        }
        for answer in answers {
            match &committed {
                Ok(_) => answer.send(),
                Err(error) => answer.fail(StoreError::Database(sqlx::Error::Protocol(error.to_string()))),
            }
        }
    }
}

/// A command's result, held until its transaction commits.
enum Answer {
    Accepted(Reply<Vec<Accepted>>, Result<Vec<Accepted>, StoreError>),
    Claimed(Reply<Vec<Claimed>>, Result<Vec<Claimed>, StoreError>),
    Completed(Reply<Vec<bool>>, Result<Vec<bool>, StoreError>),
    Renewed(Reply<Renewal>, Result<Renewal, StoreError>),
    Count(Reply<u64>, Result<u64, StoreError>),
    Cancel(Reply<CancelOutcome>, Result<CancelOutcome, StoreError>),
}

impl Answer {
    fn send(self) {
        match self {
            Self::Accepted(reply, result) => drop(reply.send(result)),
            Self::Claimed(reply, result) => drop(reply.send(result)),
            Self::Completed(reply, result) => drop(reply.send(result)),
            Self::Renewed(reply, result) => drop(reply.send(result)),
            Self::Count(reply, result) => drop(reply.send(result)),
            Self::Cancel(reply, result) => drop(reply.send(result)),
        }
    }

    fn fail(self, error: StoreError) {
        let error = || StoreError::Database(sqlx::Error::Protocol(error.to_string()));
        match self {
            Self::Accepted(reply, _) => drop(reply.send(Err(error()))),
            Self::Claimed(reply, _) => drop(reply.send(Err(error()))),
            Self::Completed(reply, _) => drop(reply.send(Err(error()))),
            Self::Renewed(reply, _) => drop(reply.send(Err(error()))),
            Self::Count(reply, _) => drop(reply.send(Err(error()))),
            Self::Cancel(reply, _) => drop(reply.send(Err(error()))),
        }
    }
}

impl Command {
    fn fail(self, error: impl Fn() -> StoreError) {
        match self {
            Self::Insert(_, reply) => drop(reply.send(Err(error()))),
            Self::Claim { reply, .. } => drop(reply.send(Err(error()))),
            Self::Complete(_, reply) => drop(reply.send(Err(error()))),
            Self::Renew { reply, .. } => drop(reply.send(Err(error()))),
            Self::Rescue { reply, .. } | Self::Recover { reply, .. } | Self::Prune { reply, .. } => {
                drop(reply.send(Err(error())));
            }
            Self::Cancel { reply, .. } => drop(reply.send(Err(error()))),
        }
    }
}

async fn run_in_savepoint(conn: &mut SqliteConnection, command: Command) -> Answer {
    if let Err(error) = sqlx::query("SAVEPOINT command").execute(&mut *conn).await {
        let error = StoreError::from(error);
        return match command {
            Command::Insert(_, reply) => Answer::Accepted(reply, Err(error)),
            Command::Claim { reply, .. } => Answer::Claimed(reply, Err(error)),
            Command::Complete(_, reply) => Answer::Completed(reply, Err(error)),
            Command::Renew { reply, .. } => Answer::Renewed(reply, Err(error)),
            Command::Rescue { reply, .. } | Command::Recover { reply, .. } | Command::Prune { reply, .. } => {
                Answer::Count(reply, Err(error))
            }
            Command::Cancel { reply, .. } => Answer::Cancel(reply, Err(error)),
        };
    }
    let answer = execute(conn, command).await;
    let failed = match &answer {
        Answer::Accepted(_, result) => result.is_err(),
        Answer::Claimed(_, result) => result.is_err(),
        Answer::Completed(_, result) => result.is_err(),
        Answer::Renewed(_, result) => result.is_err(),
        Answer::Count(_, result) => result.is_err(),
        Answer::Cancel(_, result) => result.is_err(),
    };
    let end = if failed { "ROLLBACK TO command" } else { "RELEASE command" };
    if let Err(error) = sqlx::query(end).execute(&mut *conn).await {
        tracing::error!(%error, "job store savepoint failed");
    }
    if failed {
        let _ = sqlx::query("RELEASE command").execute(&mut *conn).await;
    }
    answer
}

async fn execute(conn: &mut SqliteConnection, command: Command) -> Answer {
    match command {
        Command::Insert(jobs, reply) => Answer::Accepted(reply, insert(conn, jobs).await),
        Command::Claim { limit, owner, lease_until, excluded, now, reply } => {
            Answer::Claimed(reply, claim(conn, limit, &owner, lease_until, &excluded, now).await)
        }
        Command::Complete(completions, reply) => Answer::Completed(reply, complete(conn, completions).await),
        Command::Renew { owner, leases, until, reply } => {
            Answer::Renewed(reply, renew(conn, &owner, leases, until).await)
        }
        Command::Rescue { now, reply } => Answer::Count(reply, requeue_running(conn, false, now).await),
        Command::Recover { now, reply } => Answer::Count(reply, requeue_running(conn, true, now).await),
        Command::Cancel { id, now, reply } => Answer::Cancel(reply, cancel(conn, &id, now).await),
        Command::Prune { before, reply } => Answer::Count(reply, prune(conn, before).await),
    }
}

async fn insert(conn: &mut SqliteConnection, jobs: Vec<NewJob>) -> Result<Vec<Accepted>, StoreError> {
    let mut accepted = Vec::with_capacity(jobs.len());
    for job in jobs {
        let inserted = sqlx::query(
            "INSERT INTO jobs (id, kind, priority, status, max_attempts, run_after, timeout_ms, idempotency_key, created_at)
             VALUES (?1, ?2, ?3, 'queued', ?4, ?5, ?6, ?7, ?5) ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(&job.id)
        .bind(&job.kind)
        .bind(job.priority)
        .bind(job.max_attempts)
        .bind(job.created_at)
        .bind(job.timeout_ms)
        .bind(&job.idempotency_key)
        .execute(&mut *conn)
        .await?;
        if inserted.rows_affected() == 1 {
            sqlx::query("INSERT INTO job_payloads (id, payload) VALUES (?1, ?2)")
                .bind(&job.id)
                .bind(job.payload.as_ref())
                .execute(&mut *conn)
                .await?;
            accepted.push(Accepted { id: job.id, created: true });
        } else {
            let earlier: String = sqlx::query_scalar("SELECT id FROM jobs WHERE idempotency_key = ?1")
                .bind(&job.idempotency_key)
                .fetch_one(&mut *conn)
                .await?;
            accepted.push(Accepted { id: earlier, created: false });
        }
    }
    Ok(accepted)
}

async fn claim(
    conn: &mut SqliteConnection,
    limit: usize,
    owner: &str,
    lease_until: Micros,
    excluded: &str,
    now: Micros,
) -> Result<Vec<Claimed>, StoreError> {
    let token: i64 = fastrand::i64(1..);
    let rows = sqlx::query(
        "UPDATE jobs SET status = 'running', attempt = attempt + 1, attempt_token = ?1, lease_owner = ?2,
                lease_expires_at = ?3, started_at = COALESCE(started_at, ?4)
         WHERE id IN (SELECT id FROM jobs WHERE status = 'queued' AND run_after <= ?4
                      AND kind NOT IN (SELECT value FROM json_each(?5))
                      ORDER BY priority, run_after, id LIMIT ?6)
         RETURNING id, kind, priority, attempt, max_attempts, timeout_ms, created_at",
    )
    .bind(token)
    .bind(owner)
    .bind(lease_until)
    .bind(now)
    .bind(excluded)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(&mut *conn)
    .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut claimed = Vec::with_capacity(rows.len());
    for row in &rows {
        claimed.push(Claimed {
            id: row.try_get("id")?,
            kind: row.try_get("kind")?,
            payload: Bytes::new(),
            priority: row.try_get("priority")?,
            attempt: row.try_get("attempt")?,
            max_attempts: row.try_get("max_attempts")?,
            token,
            timeout_ms: row.try_get("timeout_ms")?,
            created_at: row.try_get("created_at")?,
        });
    }
    let ids = serde_json::to_string(&claimed.iter().map(|job| job.id.as_str()).collect::<Vec<_>>())
        .map_err(|error| StoreError::Database(sqlx::Error::Protocol(error.to_string())))?;
    let payloads = sqlx::query("SELECT id, payload FROM job_payloads WHERE id IN (SELECT value FROM json_each(?1))")
        .bind(ids)
        .fetch_all(&mut *conn)
        .await?;
    let mut by_id: std::collections::HashMap<String, Vec<u8>> =
        std::collections::HashMap::with_capacity(payloads.len());
    for row in payloads {
        by_id.insert(row.try_get("id")?, row.try_get("payload")?);
    }
    for job in &mut claimed {
        job.payload = by_id.remove(&job.id).map(Bytes::from).unwrap_or_default();
    }
    Ok(claimed)
}

async fn complete(conn: &mut SqliteConnection, completions: Vec<Completion>) -> Result<Vec<bool>, StoreError> {
    let mut accepted = Vec::with_capacity(completions.len());
    for Completion { id, token, outcome, at } in completions {
        let done = match &outcome {
            Outcome::Succeeded(result) => {
                let updated = sqlx::query(
                    "UPDATE jobs SET status = 'succeeded', finished_at = ?3, error = NULL, lease_owner = NULL,
                            lease_expires_at = NULL WHERE id = ?1 AND attempt_token = ?2 AND status = 'running'",
                )
                .bind(&id)
                .bind(token)
                .bind(at)
                .execute(&mut *conn)
                .await?;
                if updated.rows_affected() == 1 {
                    sqlx::query("INSERT OR REPLACE INTO job_results (id, result) VALUES (?1, ?2)")
                        .bind(&id)
                        .bind(result.as_ref())
                        .execute(&mut *conn)
                        .await?;
                }
                updated.rows_affected()
            }
            Outcome::Failed { error, retry_at: Some(retry_at) } => sqlx::query(
                "UPDATE jobs SET status = 'queued', run_after = ?3, error = ?4, lease_owner = NULL,
                        lease_expires_at = NULL WHERE id = ?1 AND attempt_token = ?2 AND status = 'running'",
            )
            .bind(&id)
            .bind(token)
            .bind(retry_at)
            .bind(error)
            .execute(&mut *conn)
            .await?
            .rows_affected(),
            Outcome::Failed { error, retry_at: None } => sqlx::query(
                "UPDATE jobs SET status = 'dead', finished_at = ?3, error = ?4, lease_owner = NULL,
                        lease_expires_at = NULL WHERE id = ?1 AND attempt_token = ?2 AND status = 'running'",
            )
            .bind(&id)
            .bind(token)
            .bind(at)
            .bind(error)
            .execute(&mut *conn)
            .await?
            .rows_affected(),
            Outcome::Refused(error) => sqlx::query(
                "UPDATE jobs SET status = 'failed', finished_at = ?3, error = ?4, lease_owner = NULL,
                        lease_expires_at = NULL WHERE id = ?1 AND attempt_token = ?2 AND status = 'running'",
            )
            .bind(&id)
            .bind(token)
            .bind(at)
            .bind(error)
            .execute(&mut *conn)
            .await?
            .rows_affected(),
            Outcome::NotStarted { retry_at } => sqlx::query(
                "UPDATE jobs SET status = 'queued', run_after = ?3, attempt = attempt - 1, lease_owner = NULL,
                        lease_expires_at = NULL WHERE id = ?1 AND attempt_token = ?2 AND status = 'running'",
            )
            .bind(&id)
            .bind(token)
            .bind(retry_at)
            .execute(&mut *conn)
            .await?
            .rows_affected(),
            Outcome::Cancelled => sqlx::query(
                "UPDATE jobs SET status = 'cancelled', finished_at = ?3, lease_owner = NULL, lease_expires_at = NULL
                 WHERE id = ?1 AND attempt_token = ?2 AND status = 'running'",
            )
            .bind(&id)
            .bind(token)
            .bind(at)
            .execute(&mut *conn)
            .await?
            .rows_affected(),
        };
        accepted.push(done == 1);
    }
    Ok(accepted)
}

async fn renew(
    conn: &mut SqliteConnection,
    owner: &str,
    leases: Vec<Lease>,
    until: Micros,
) -> Result<Renewal, StoreError> {
    let mut renewal = Renewal::default();
    for lease in leases {
        let requested: Option<i64> = sqlx::query_scalar(
            "UPDATE jobs SET lease_expires_at = ?1
             WHERE id = ?2 AND attempt_token = ?3 AND lease_owner = ?4 AND status = 'running'
             RETURNING cancel_requested",
        )
        .bind(until)
        .bind(&lease.id)
        .bind(lease.token)
        .bind(owner)
        .fetch_optional(&mut *conn)
        .await?;
        match requested {
            Some(1) => renewal.cancel.push(lease.id),
            Some(_) => {}
            None => renewal.lost.push(lease.id),
        }
    }
    Ok(renewal)
}

/// Requeues (or ends) running jobs whose lease expired, or, with `all`, every running job: one
/// gateway uses the file at a time, so at its start none can be running.
async fn requeue_running(conn: &mut SqliteConnection, all: bool, now: Micros) -> Result<u64, StoreError> {
    let query = if all {
        sqlx::query(
            "UPDATE jobs SET
                status = CASE WHEN cancel_requested = 1 THEN 'cancelled'
                              WHEN attempt >= max_attempts THEN 'dead' ELSE 'queued' END,
                finished_at = CASE WHEN cancel_requested = 1 OR attempt >= max_attempts THEN ?1 ELSE NULL END,
                error = 'its gateway restarted while it ran (recovered)',
                lease_owner = NULL, lease_expires_at = NULL, run_after = ?1
             WHERE status = 'running'",
        )
    } else {
        sqlx::query(
            "UPDATE jobs SET
                status = CASE WHEN cancel_requested = 1 THEN 'cancelled'
                              WHEN attempt >= max_attempts THEN 'dead' ELSE 'queued' END,
                finished_at = CASE WHEN cancel_requested = 1 OR attempt >= max_attempts THEN ?1 ELSE NULL END,
                error = 'its gateway stopped renewing the lease (rescued)',
                lease_owner = NULL, lease_expires_at = NULL, run_after = ?1
             WHERE status = 'running' AND lease_expires_at < ?1",
        )
    };
    Ok(query.bind(now).execute(&mut *conn).await?.rows_affected())
}

async fn cancel(conn: &mut SqliteConnection, id: &str, now: Micros) -> Result<CancelOutcome, StoreError> {
    let queued =
        sqlx::query("UPDATE jobs SET status = 'cancelled', finished_at = ?2 WHERE id = ?1 AND status = 'queued'")
            .bind(id)
            .bind(now)
            .execute(&mut *conn)
            .await?;
    if queued.rows_affected() == 1 {
        return Ok(CancelOutcome::Cancelled);
    }
    let running = sqlx::query("UPDATE jobs SET cancel_requested = 1 WHERE id = ?1 AND status = 'running'")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    if running.rows_affected() == 1 {
        return Ok(CancelOutcome::Requested);
    }
    let exists: Option<String> =
        sqlx::query_scalar("SELECT status FROM jobs WHERE id = ?1").bind(id).fetch_optional(&mut *conn).await?;
    Ok(if exists.is_some() { CancelOutcome::AlreadyFinished } else { CancelOutcome::NotFound })
}

async fn prune(conn: &mut SqliteConnection, before: Micros) -> Result<u64, StoreError> {
    for table in [
        "DELETE FROM job_payloads WHERE id IN (SELECT id FROM jobs WHERE finished_at < ?1)",
        "DELETE FROM job_results WHERE id IN (SELECT id FROM jobs WHERE finished_at < ?1)",
    ] {
        sqlx::query(table).bind(before).execute(&mut *conn).await?;
    }
    let deleted = sqlx::query("DELETE FROM jobs WHERE finished_at < ?1").bind(before).execute(&mut *conn).await?;
    Ok(deleted.rows_affected())
}

pub(super) fn record(row: &sqlx::sqlite::SqliteRow) -> Result<JobRecord, StoreError> {
    let status: String = row.try_get("status")?;
    let result: Option<Vec<u8>> = row.try_get("result")?;
    Ok(JobRecord {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        status: Status::parse(&status).unwrap_or(Status::Queued),
        priority: row.try_get("priority")?,
        attempt: row.try_get("attempt")?,
        max_attempts: row.try_get("max_attempts")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        error: row.try_get("error")?,
        result: result.map(Bytes::from),
    })
}

#[async_trait::async_trait]
impl JobStore for SqliteStore {
    async fn insert(&self, jobs: Vec<NewJob>) -> Result<Vec<Accepted>, StoreError> {
        self.send(|reply| Command::Insert(jobs, reply)).await
    }

    async fn claim(
        &self,
        limit: usize,
        owner: &str,
        lease_until: Micros,
        excluded_kinds: &[String],
        now: Micros,
    ) -> Result<Vec<Claimed>, StoreError> {
        let excluded = serde_json::to_string(excluded_kinds).unwrap_or_else(|_| "[]".into());
        self.send(|reply| Command::Claim { limit, owner: owner.to_owned(), lease_until, excluded, now, reply }).await
    }

    async fn complete(&self, completions: Vec<Completion>) -> Result<Vec<bool>, StoreError> {
        self.send(|reply| Command::Complete(completions, reply)).await
    }

    async fn renew(&self, owner: &str, leases: Vec<Lease>, until: Micros) -> Result<Renewal, StoreError> {
        self.send(|reply| Command::Renew { owner: owner.to_owned(), leases, until, reply }).await
    }

    async fn rescue(&self, now: Micros) -> Result<u64, StoreError> {
        self.send(|reply| Command::Rescue { now, reply }).await
    }

    async fn recover(&self, owner: &str, now: Micros) -> Result<u64, StoreError> {
        let _ = owner; // one gateway per file: every running job was this gateway's
        self.send(|reply| Command::Recover { now, reply }).await
    }

    async fn get(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT j.id, j.kind, j.status, j.priority, j.attempt, j.max_attempts, j.created_at, j.started_at,
                    j.finished_at, j.error, r.result
             FROM jobs j LEFT JOIN job_results r ON r.id = j.id WHERE j.id = ?1",
        )
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(record).transpose()
    }

    async fn cancel(&self, id: &str, now: Micros) -> Result<CancelOutcome, StoreError> {
        self.send(|reply| Command::Cancel { id: id.to_owned(), now, reply }).await
    }

    async fn prune(&self, before: Micros) -> Result<u64, StoreError> {
        self.send(|reply| Command::Prune { before, reply }).await
    }

    async fn depth(&self) -> Result<Depth, StoreError> {
        let rows =
            sqlx::query("SELECT status, COUNT(*) AS n FROM jobs WHERE status IN ('queued', 'running') GROUP BY status")
                .fetch_all(&self.reader)
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
