//! The embedded store: one SQLite file in WAL mode. A single writer thread owns the only writing
//! connection and commits every write that arrived while the previous batch was being written in
//! one `BEGIN IMMEDIATE` transaction (group commit), so there is never a `SQLITE_BUSY` between
//! writers and a burst of jobs costs a handful of fsyncs. Reads use a few connections of their
//! own on the blocking pool.
//!
//! The writer is a plain thread calling SQLite directly (rusqlite) rather than an async driver:
//! an async SQLite driver hands every statement to a thread of its own and back, and those
//! handoffs, not SQLite, were most of the cost of a job.

mod claim;

use super::{
    CancelOutcome, Depth, JobStore, Lease, MEMBERS_SQL, RECORD_COLUMN_COUNT, RECORD_COLUMNS, RECOVERED, RESCUED,
    Renewal, Sql, SqlValue, StoreError, cron_ran_sql, detail_sql, error_columns, expire_sql, failed_attempts_sql,
    forget_members_sql, heartbeat_sql, list_sql, next_due_sql, oldest_due_sql, purge_selection_sql,
    requeue_running_sql, retry_sql, stats_sql,
};
use crate::cluster::Member;
use crate::model::{
    Accepted, AttemptRecord, Claimed, Completion, JobDetail, JobFilter, JobProgress, JobRecord, JobStats, Micros,
    NewJob, NextDue, Page, Priority, Status, Unique,
};
use crate::rules::{ClaimRequest, Pause, PauseScope};
use bytes::Bytes;
use nix::fcntl::{Flock, FlockArg};
use rusqlite::{Connection, OpenFlags, OptionalExtension as _, Transaction, TransactionBehavior, params};
use std::{
    path::{Path, PathBuf},
    sync::{Arc, LazyLock, Mutex, PoisonError},
    time::Duration,
};
use tokio::sync::{mpsc, oneshot};

/// Writes committed together at most.
const MAX_BATCH: usize = 512;

/// Reader connections open at most. Reads are point lookups of microseconds; a burst of them
/// (thousands of event streams polling at once) queues for these instead of opening a
/// connection, with its page cache, per blocking thread and keeping them all.
const MAX_READERS: usize = 4;

/// The schema, in order; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_jobs.sql"),
    include_str!("../../migrations/sqlite/0002_request_fingerprint.sql"),
    include_str!("../../migrations/sqlite/0003_tenant.sql"),
    include_str!("../../migrations/sqlite/0004_schedules_and_listings.sql"),
    include_str!("../../migrations/sqlite/0005_cron.sql"),
    include_str!("../../migrations/sqlite/0006_unique_jobs.sql"),
    include_str!("../../migrations/sqlite/0007_traceparent.sql"),
    include_str!("../../migrations/sqlite/0008_tenant_turns_and_pauses.sql"),
    include_str!("../../migrations/sqlite/0009_progress.sql"),
    include_str!("../../migrations/sqlite/0010_attempts.sql"),
    include_str!("../../migrations/sqlite/0011_gateways.sql"),
];

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A write for the writer thread.
enum Command {
    Insert(Vec<NewJob>, Reply<Vec<Accepted>>),
    Claim(Box<ClaimRequest>, Reply<Vec<Claimed>>),
    Pause { scope: PauseScope, name: String, now: Micros, reply: Reply<u64> },
    Resume { scope: PauseScope, name: String, reply: Reply<u64> },
    Progress { id: String, token: i64, progress: String, reply: Reply<u64> },
    Complete(Vec<Completion>, Reply<Vec<bool>>),
    Renew { owner: String, leases: Vec<Lease>, until: Micros, reply: Reply<Renewal> },
    Rescue { now: Micros, reply: Reply<u64> },
    Recover { now: Micros, reply: Reply<u64> },
    Cancel { id: String, now: Micros, reply: Reply<CancelOutcome> },
    Purge { filter: JobFilter, reply: Reply<u64> },
    Expire { now: Micros, reply: Reply<Vec<String>> },
    Retry { filter: JobFilter, limit: usize, now: Micros, reply: Reply<Vec<String>> },
    CronRan { name: String, tick: Micros, reply: Reply<u64> },
    Heartbeat { member: Member, forget_before: Micros, reply: Reply<u64> },
    Leave { id: String, reply: Reply<u64> },
}

/// The SQLite job store.
pub struct SqliteStore {
    writer: mpsc::Sender<Command>,
    readers: Arc<Readers>,
    reader_slots: tokio::sync::Semaphore,
    /// Held while the store is open: a second gateway on the same file would take over the
    /// first one's running jobs at its start.
    _lock: Flock<std::fs::File>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://PATH`), runs migrations and
    /// starts the writer.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let (path, durability) = parse_url(url)?;
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|error| StoreError::Url {
                url: url.to_owned(),
                reason: format!("cannot create {}: {error}", parent.display()),
            })?;
        }
        let lock = lock(url, &path)?;
        let writer = open_connection(&path, false, durability)?;
        migrate(&writer)?;
        let (commands, inbox) = mpsc::channel(16 * MAX_BATCH);
        std::thread::Builder::new()
            .name("rampart-sqlite-writer".into())
            .spawn(move || write_loop(writer, inbox))
            .map_err(|error| StoreError::Io(format!("cannot start the SQLite writer thread: {error}")))?;
        Ok(Self {
            writer: commands,
            readers: Arc::new(Readers { path, durability, idle: Mutex::new(Vec::new()) }),
            reader_slots: tokio::sync::Semaphore::new(MAX_READERS),
            _lock: lock,
        })
    }

    async fn send<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writer.send(make(reply)).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `read` on a reader connection, on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let _slot = self.reader_slots.acquire().await.map_err(|_| StoreError::Closed)?;
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || readers.with(read)).await.map_err(|_| StoreError::Closed)?
    }
}

/// What an acknowledged write survives: SQLite's `synchronous` setting, chosen by the URL's
/// `?synchronous=` (`full`, the default, or `normal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// Every commit is synced to disk before it is acknowledged (one fsync per group commit):
    /// an accepted job survives power loss and an operating-system crash.
    Full,
    /// The log is synced only at checkpoints: a process crash (`kill -9`) loses nothing, an
    /// operating-system crash or power loss may lose the last commits. Faster where fsync is slow.
    Normal,
}

impl Durability {
    fn pragma(self) -> &'static str {
        match self {
            Self::Full => "FULL",
            Self::Normal => "NORMAL",
        }
    }
}

/// The file a `sqlite://PATH[?synchronous=full|normal]` (or `sqlite:PATH`) URL names and the
/// durability it asks for.
fn parse_url(url: &str) -> Result<(PathBuf, Durability), StoreError> {
    let refuse = |reason: String| StoreError::Url { url: url.to_owned(), reason };
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or_default();
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" {
        return Err(refuse("name a file: sqlite://data/rampart.db".into()));
    }
    let mut durability = Durability::Full;
    for parameter in query.split('&').filter(|parameter| !parameter.is_empty()) {
        durability = match parameter.to_ascii_lowercase().as_str() {
            "synchronous=full" => Durability::Full,
            "synchronous=normal" => Durability::Normal,
            _ => {
                return Err(refuse(format!(
                    "unknown parameter `{parameter}`; the one parameter is synchronous=full (the default) or synchronous=normal"
                )));
            }
        };
    }
    Ok((PathBuf::from(path), durability))
}

fn open_connection(path: &Path, read_only: bool, durability: Durability) -> Result<Connection, StoreError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    if !read_only {
        conn.pragma_update(None, "journal_mode", "WAL")?;
    }
    conn.pragma_update(None, "synchronous", durability.pragma())?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "cache_size", -65_536)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Brings the schema up to date, each migration in its own transaction.
fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let applied: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let applied = usize::try_from(applied).unwrap_or(0);
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
        conn.execute_batch(&format!("BEGIN IMMEDIATE; {migration}; PRAGMA user_version = {}; COMMIT;", index + 1))
            .map_err(|error| StoreError::Migrate(format!("migration {} failed: {error}", index + 1)))?;
    }
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Migrate(format!(
            "the database is at schema version {applied}, newer than this gateway's {}",
            MIGRATIONS.len()
        )));
    }
    Ok(())
}

/// Takes the file's lock (`PATH.lock`), or says which file another gateway holds.
fn lock(url: &str, database: &Path) -> Result<Flock<std::fs::File>, StoreError> {
    let mut path = database.as_os_str().to_owned();
    path.push(".lock");
    let refuse = |reason: String| StoreError::Url { url: url.to_owned(), reason };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|error| refuse(format!("cannot open {}: {error}", Path::new(&path).display())))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|_| {
        refuse(format!(
            "another gateway is using {} (one gateway per SQLite file; use PostgreSQL for several)",
            database.display()
        ))
    })
}

/// Read-only connections, opened as needed and kept for reuse.
struct Readers {
    path: PathBuf,
    durability: Durability,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    fn with<T>(&self, read: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => open_connection(&self.path, true, self.durability)?,
        };
        let result = read(&conn);
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).push(conn);
        result
    }
}

/// Commits every command waiting into one transaction, each in a savepoint so that one failure
/// does not undo the others, and answers them once the commit is durable.
fn write_loop(mut conn: Connection, mut inbox: mpsc::Receiver<Command>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = inbox.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match inbox.try_recv() {
                Ok(command) => batch.push(command),
                Err(_) => break,
            }
        }
        let mut answers = Vec::with_capacity(batch.len());
        let committed = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(mut tx) => {
                for command in batch.drain(..) {
                    answers.push(run_in_savepoint(&mut tx, command));
                }
                tx.commit().map_err(Arc::new)
            }
            Err(error) => Err(Arc::new(error)),
        };
        if let Err(error) = &committed {
            tracing::error!(%error, "job store transaction failed");
            for command in batch.drain(..) {
                command.fail(|| StoreError::Database(error.clone()));
            }
        }
        for answer in answers.drain(..) {
            match &committed {
                Ok(()) => answer.send(),
                Err(error) => answer.fail(StoreError::Database(error.clone())),
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
    Ids(Reply<Vec<String>>, Result<Vec<String>, StoreError>),
    /// Already answered (with an error).
    Done,
}

impl Answer {
    fn failed(&self) -> bool {
        match self {
            Self::Accepted(_, result) => result.is_err(),
            Self::Claimed(_, result) => result.is_err(),
            Self::Completed(_, result) => result.is_err(),
            Self::Renewed(_, result) => result.is_err(),
            Self::Count(_, result) => result.is_err(),
            Self::Cancel(_, result) => result.is_err(),
            Self::Ids(_, result) => result.is_err(),
            Self::Done => true,
        }
    }

    fn send(self) {
        match self {
            Self::Accepted(reply, result) => drop(reply.send(result)),
            Self::Claimed(reply, result) => drop(reply.send(result)),
            Self::Completed(reply, result) => drop(reply.send(result)),
            Self::Renewed(reply, result) => drop(reply.send(result)),
            Self::Count(reply, result) => drop(reply.send(result)),
            Self::Cancel(reply, result) => drop(reply.send(result)),
            Self::Ids(reply, result) => drop(reply.send(result)),
            Self::Done => {}
        }
    }

    fn fail(self, error: StoreError) {
        let error = Arc::new(error);
        let error = || StoreError::Database(Arc::clone(&error) as Arc<dyn std::error::Error + Send + Sync>);
        match self {
            Self::Accepted(reply, _) => drop(reply.send(Err(error()))),
            Self::Claimed(reply, _) => drop(reply.send(Err(error()))),
            Self::Completed(reply, _) => drop(reply.send(Err(error()))),
            Self::Renewed(reply, _) => drop(reply.send(Err(error()))),
            Self::Count(reply, _) => drop(reply.send(Err(error()))),
            Self::Cancel(reply, _) => drop(reply.send(Err(error()))),
            Self::Ids(reply, _) => drop(reply.send(Err(error()))),
            Self::Done => {}
        }
    }
}

impl Command {
    fn fail(self, error: impl Fn() -> StoreError) {
        match self {
            Self::Insert(_, reply) => drop(reply.send(Err(error()))),
            Self::Claim(_, reply) => drop(reply.send(Err(error()))),
            Self::Complete(_, reply) => drop(reply.send(Err(error()))),
            Self::Renew { reply, .. } => drop(reply.send(Err(error()))),
            Self::Rescue { reply, .. }
            | Self::Recover { reply, .. }
            | Self::Purge { reply, .. }
            | Self::Pause { reply, .. }
            | Self::Resume { reply, .. }
            | Self::Progress { reply, .. }
            | Self::CronRan { reply, .. }
            | Self::Heartbeat { reply, .. }
            | Self::Leave { reply, .. } => {
                drop(reply.send(Err(error())));
            }
            Self::Cancel { reply, .. } => drop(reply.send(Err(error()))),
            Self::Expire { reply, .. } | Self::Retry { reply, .. } => drop(reply.send(Err(error()))),
        }
    }
}

fn run_in_savepoint(tx: &mut Transaction<'_>, command: Command) -> Answer {
    let savepoint = match tx.savepoint() {
        Ok(savepoint) => savepoint,
        Err(error) => {
            let error = Arc::new(error);
            command.fail(|| StoreError::Database(error.clone()));
            return Answer::Done;
        }
    };
    let answer = execute(&savepoint, command);
    if answer.failed() {
        // Dropping a savepoint rolls its changes back.
        return answer;
    }
    match savepoint.commit() {
        Ok(()) => answer,
        Err(error) => {
            answer.fail(StoreError::database(error));
            Answer::Done
        }
    }
}

fn execute(conn: &Connection, command: Command) -> Answer {
    match command {
        Command::Insert(jobs, reply) => Answer::Accepted(reply, insert(conn, jobs)),
        Command::Claim(request, reply) => Answer::Claimed(reply, claim::claim(conn, &request)),
        Command::Pause { scope, name, now, reply } => Answer::Count(
            reply,
            conn.prepare_cached(
                "INSERT INTO job_pauses (scope, name, paused_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            )
            .and_then(|mut insert| insert.execute(params![scope.as_str(), name, now]))
            .map(|changed| changed as u64)
            .map_err(StoreError::from),
        ),
        Command::Progress { id, token, progress, reply } => {
            static PROGRESS: LazyLock<String> = LazyLock::new(|| super::progress_sql("?1", "?2", "?3"));
            let changed = conn
                .prepare_cached(&PROGRESS)
                .and_then(|mut update| update.execute(params![id, token, progress]))
                .map(|changed| changed as u64)
                .map_err(StoreError::from);
            Answer::Count(reply, changed)
        }
        Command::Resume { scope, name, reply } => Answer::Count(
            reply,
            conn.prepare_cached("DELETE FROM job_pauses WHERE scope = ?1 AND name = ?2")
                .and_then(|mut delete| delete.execute(params![scope.as_str(), name]))
                .map(|changed| changed as u64)
                .map_err(StoreError::from),
        ),
        Command::Complete(completions, reply) => Answer::Completed(reply, complete(conn, completions)),
        Command::Renew { owner, leases, until, reply } => Answer::Renewed(reply, renew(conn, &owner, leases, until)),
        Command::Rescue { now, reply } => Answer::Count(reply, requeue_running(conn, false, now)),
        Command::Recover { now, reply } => Answer::Count(reply, requeue_running(conn, true, now)),
        Command::Cancel { id, now, reply } => Answer::Cancel(reply, cancel(conn, &id, now)),
        Command::Purge { filter, reply } => Answer::Count(reply, purge(conn, &filter)),
        Command::Expire { now, reply } => Answer::Ids(reply, ids(conn, &SqlValue::statement(expire_sql("?1"), now))),
        Command::CronRan { name, tick, reply } => Answer::Count(reply, cron_ran(conn, &name, tick)),
        Command::Heartbeat { member, forget_before, reply } => {
            Answer::Count(reply, heartbeat(conn, &member, forget_before))
        }
        Command::Leave { id, reply } => Answer::Count(
            reply,
            conn.prepare_cached("DELETE FROM gateways WHERE id = ?1")
                .and_then(|mut delete| delete.execute([id]))
                .map(|changed| changed as u64)
                .map_err(StoreError::from),
        ),
        Command::Retry { filter, limit, now, reply } => {
            Answer::Ids(reply, ids(conn, &retry_sql(&filter, limit, now, "0", placeholder)))
        }
    }
}

fn insert(conn: &Connection, jobs: Vec<NewJob>) -> Result<Vec<Accepted>, StoreError> {
    let mut accepted = Vec::with_capacity(jobs.len());
    let mut add_job = conn.prepare_cached(
        "INSERT INTO jobs (id, kind, priority, status, max_attempts, run_after, timeout_ms, idempotency_key,
                           request_fingerprint, tenant, created_at, attempt, attempt_token, lease_owner,
                           lease_expires_at, started_at, start_by, traceparent)
         VALUES (?1, ?2, ?3, ?10, ?4, ?16, ?6, ?7, ?8, ?9, ?5, ?11, ?12, ?13, ?14, ?15, ?17, ?18)
         ON CONFLICT (idempotency_key) DO NOTHING",
    )?;
    let mut add_payload = conn.prepare_cached("INSERT INTO job_payloads (id, payload) VALUES (?1, ?2)")?;
    // Looked at once for the batch: pauses are rare, and one writer means none comes meanwhile.
    let any_paused = jobs.iter().any(|job| job.claim.is_some())
        && conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM job_pauses)")?
            .query_row([], |row| row.get::<_, bool>(0))?;
    for job in jobs {
        if let Some(unique) = &job.unique {
            // One writer: nothing can come between this look and the insert.
            if let Some(earlier) = replayed(conn, &job)? {
                accepted.push(earlier);
                continue;
            }
            if let Some(holder) = unique_holder(conn, unique)? {
                accepted.push(Accepted::unique_conflict(holder));
                continue;
            }
            conn.prepare_cached("INSERT OR REPLACE INTO job_uniques (key, job_id) VALUES (?1, ?2)")?
                .execute(params![unique.key, job.id])?;
        }
        // A paused kind or tenant starts nothing, not even at acceptance.
        let claim = match job.claim.as_ref() {
            Some(claim) if !(any_paused && paused(conn, &job.kind, &job.tenant)?) => Some(claim),
            _ => None,
        };
        let inserted = add_job.execute(params![
            job.id,
            job.kind,
            job.priority.stored(),
            job.max_attempts,
            job.created_at,
            job.timeout_ms,
            job.idempotency_key,
            job.fingerprint,
            job.tenant,
            if claim.is_some() { Status::Running } else { Status::Queued }.as_str(),
            i32::from(claim.is_some()),
            claim.map_or(0, |claim| claim.token),
            claim.map(|claim| claim.owner.as_ref()),
            claim.map(|claim| claim.lease_until),
            claim.map(|_| job.created_at),
            job.run_after,
            job.start_by,
            job.traceparent,
        ])?;
        if inserted == 1 {
            add_payload.execute(params![job.id, job.payload.as_ref()])?;
            accepted.push(Accepted::created(job.id, claim.is_some()));
        } else {
            let earlier = replayed(conn, &job)?.ok_or_else(|| {
                StoreError::database(format!("job {} was not inserted and no job holds its key", job.id))
            })?;
            accepted.push(earlier);
        }
    }
    Ok(accepted)
}

/// Whether jobs of `kind` or of `tenant` are paused.
fn paused(conn: &Connection, kind: &str, tenant: &str) -> Result<bool, StoreError> {
    static PAUSED: LazyLock<String> =
        LazyLock::new(|| format!("SELECT {} FROM (SELECT ?1 AS kind, ?2 AS tenant) AS job", super::paused_sql("job")));
    Ok(conn.prepare_cached(&PAUSED)?.query_row([kind, tenant], |row| row.get(0))?)
}

/// Every pause, oldest first.
fn pauses(conn: &Connection) -> Result<Vec<Pause>, StoreError> {
    let mut select =
        conn.prepare_cached("SELECT scope, name, paused_at FROM job_pauses ORDER BY paused_at, scope, name")?;
    let rows = select.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get(1)?, row.get(2)?)))?;
    let mut pauses = Vec::new();
    for row in rows {
        let (scope, name, since) = row?;
        if let Some(scope) = PauseScope::parse(&scope) {
            pauses.push(Pause { scope, name, since });
        }
    }
    Ok(pauses)
}

/// The earlier job of `job`'s idempotency key, if it has one that is taken.
fn replayed(conn: &Connection, job: &NewJob) -> Result<Option<Accepted>, StoreError> {
    let Some(key) = &job.idempotency_key else { return Ok(None) };
    let earlier: Option<(String, Option<String>)> = conn
        .prepare_cached("SELECT id, request_fingerprint FROM jobs WHERE idempotency_key = ?1")?
        .query_row([key], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    Ok(earlier.map(|(id, fingerprint)| Accepted::replayed(id, fingerprint != job.fingerprint)))
}

/// The job holding `unique`'s key in one of its states, if any.
fn unique_holder(conn: &Connection, unique: &Unique) -> Result<Option<String>, StoreError> {
    let holder: Option<(String, String, Micros)> = conn
        .prepare_cached(
            "SELECT j.id, j.status, j.created_at FROM job_uniques u JOIN jobs j ON j.id = u.job_id WHERE u.key = ?1",
        )?
        .query_row([&unique.key], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .optional()?;
    Ok(holder.and_then(|(id, status, created_at)| unique.blocks(&status, created_at).then_some(id)))
}

fn complete(conn: &Connection, completions: Vec<Completion>) -> Result<Vec<bool>, StoreError> {
    // One statement for every outcome, fenced by the attempt's token; what it writes is the
    // outcome's transition.
    let mut update = conn.prepare_cached(
        "UPDATE jobs SET status = ?3, finished_at = ?4, run_after = COALESCE(?5, run_after),
                error = CASE WHEN ?6 THEN ?7 ELSE error END, attempt = attempt + ?8,
                lease_owner = NULL, lease_expires_at = NULL, progress = COALESCE(?9, progress),
                worker = COALESCE(?10, worker), attempt_started_at = COALESCE(?11, attempt_started_at)
         WHERE id = ?1 AND attempt_token = ?2 AND status = 'running'",
    )?;
    let mut save_result = conn.prepare_cached("INSERT OR REPLACE INTO job_results (id, result) VALUES (?1, ?2)")?;
    let mut save_attempt = conn.prepare_cached(
        "INSERT INTO job_attempts (job_id, attempt, worker, started_at, finished_at, status, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let mut accepted = Vec::with_capacity(completions.len());
    for Completion { id, token, outcome, at, progress, run } in &completions {
        let transition = outcome.transition(*at);
        let (error_changes, error) = error_columns(transition.error);
        let changed = update.execute(params![
            id,
            token,
            transition.status.as_str(),
            transition.finished_at,
            transition.run_after,
            error_changes,
            error,
            transition.attempt_change,
            progress.as_ref().map(JobProgress::stored),
            run.as_ref().and_then(|run| run.worker.as_deref()),
            run.as_ref().map(|run| run.started),
        ])?;
        if changed == 1 {
            if let Some(result) = transition.result {
                save_result.execute(params![id, result.as_ref()])?;
            } else if let Some(run) = run {
                save_attempt.execute(params![
                    id,
                    run.attempt,
                    run.worker,
                    run.started,
                    at,
                    transition.status.as_str(),
                    error
                ])?;
            }
        }
        accepted.push(changed == 1);
    }
    Ok(accepted)
}

fn renew(conn: &Connection, owner: &str, leases: Vec<Lease>, until: Micros) -> Result<Renewal, StoreError> {
    let mut renewal = Renewal::default();
    let mut update = conn.prepare_cached(
        "UPDATE jobs SET lease_expires_at = ?1
         WHERE id = ?2 AND attempt_token = ?3 AND lease_owner = ?4 AND status = 'running'
         RETURNING cancel_requested",
    )?;
    for lease in leases {
        let requested: Option<i64> =
            update.query_row(params![until, lease.id, lease.token, owner], |row| row.get(0)).optional()?;
        match requested {
            Some(1) => renewal.cancel.push(lease.id.clone()),
            Some(_) => {}
            None => renewal.lost.push(lease),
        }
    }
    Ok(renewal)
}

/// Requeues (or ends) running jobs whose lease expired, or, with `all`, every running job: one
/// gateway uses the file at a time, so at its start none can be running.
fn requeue_running(conn: &Connection, all: bool, now: Micros) -> Result<u64, StoreError> {
    static ALL: LazyLock<String> =
        LazyLock::new(|| requeue_running_sql("?1", "cancel_requested = 1", RECOVERED, "1 = 1"));
    static EXPIRED: LazyLock<String> =
        LazyLock::new(|| requeue_running_sql("?1", "cancel_requested = 1", RESCUED, "lease_expires_at < ?1"));
    let sql = if all { ALL.as_str() } else { EXPIRED.as_str() };
    Ok(conn.prepare_cached(sql)?.execute([now])? as u64)
}

fn cancel(conn: &Connection, id: &str, now: Micros) -> Result<CancelOutcome, StoreError> {
    let queued = conn
        .prepare_cached("UPDATE jobs SET status = 'cancelled', finished_at = ?2 WHERE id = ?1 AND status = 'queued'")?
        .execute(params![id, now])?;
    if queued == 1 {
        return Ok(CancelOutcome::Cancelled);
    }
    let running = conn
        .prepare_cached("UPDATE jobs SET cancel_requested = 1 WHERE id = ?1 AND status = 'running'")?
        .execute([id])?;
    if running == 1 {
        return Ok(CancelOutcome::Requested);
    }
    let exists: Option<String> =
        conn.prepare_cached("SELECT status FROM jobs WHERE id = ?1")?.query_row([id], |row| row.get(0)).optional()?;
    Ok(if exists.is_some() { CancelOutcome::AlreadyFinished } else { CancelOutcome::NotFound })
}

/// SQLite's placeholders: `?1`, `?2`, ...
fn placeholder(n: usize) -> String {
    format!("?{n}")
}

impl SqlValue {
    /// A statement with one time parameter, `?1`.
    fn statement(text: String, now: Micros) -> Sql {
        Sql { text, values: vec![Self::Int(now)], placeholder }
    }

    fn to_sqlite(&self) -> rusqlite::types::Value {
        match self {
            Self::Text(text) => rusqlite::types::Value::Text(text.clone()),
            Self::Int(number) => rusqlite::types::Value::Integer(*number),
        }
    }
}

/// Runs a statement returning ids.
fn ids(conn: &Connection, sql: &Sql) -> Result<Vec<String>, StoreError> {
    let mut statement = conn.prepare_cached(&sql.text)?;
    let rows = statement.query_map(rusqlite::params_from_iter(sql.values.iter().map(SqlValue::to_sqlite)), |row| {
        row.get::<_, String>(0)
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

fn purge(conn: &Connection, filter: &JobFilter) -> Result<u64, StoreError> {
    // The writer is the only one: the four statements see the same jobs.
    let selection = purge_selection_sql(filter, placeholder);
    let values = || rusqlite::params_from_iter(selection.values.iter().map(SqlValue::to_sqlite));
    for (table, id) in [("job_payloads", "id"), ("job_results", "id"), ("job_attempts", "job_id")] {
        let sql = format!("DELETE FROM {table} WHERE {id} IN ({})", selection.text);
        conn.prepare_cached(&sql)?.execute(values())?;
    }
    let sql = format!("DELETE FROM jobs WHERE id IN ({})", selection.text);
    Ok(conn.prepare_cached(&sql)?.execute(values())? as u64)
}

/// A job record from a row of [`RECORD_COLUMNS`].
fn record(row: &rusqlite::Row<'_>) -> rusqlite::Result<JobRecord> {
    let status: String = row.get(2)?;
    let result: Option<Vec<u8>> = row.get(10)?;
    Ok(JobRecord {
        id: row.get(0)?,
        kind: row.get(1)?,
        status: Status::parse(&status).unwrap_or(Status::Queued),
        priority: Priority::from_stored(row.get(3)?),
        attempt: row.get(4)?,
        max_attempts: row.get(5)?,
        created_at: row.get(6)?,
        started_at: row.get(7)?,
        finished_at: row.get(8)?,
        error: row.get(9)?,
        result: result.map(Bytes::from),
        tenant: row.get(11)?,
        run_after: row.get(12)?,
        start_by: row.get(13)?,
        progress: JobProgress::from_stored(row.get::<_, Option<String>>(14)?.as_deref()),
    })
}

fn get(conn: &Connection, id: &str) -> Result<Option<JobRecord>, StoreError> {
    static GET: LazyLock<String> = LazyLock::new(|| {
        format!("SELECT {RECORD_COLUMNS} FROM jobs j LEFT JOIN job_results r ON r.id = j.id WHERE j.id = ?1")
    });
    Ok(conn.prepare_cached(&GET)?.query_row([id], record).optional()?)
}

fn detail(conn: &Connection, id: &str) -> Result<Option<JobDetail>, StoreError> {
    static DETAIL: LazyLock<String> = LazyLock::new(|| detail_sql("?1"));
    static ATTEMPTS: LazyLock<String> = LazyLock::new(|| failed_attempts_sql("?1"));
    let found = conn
        .prepare_cached(&DETAIL)?
        .query_row([id], |row| {
            let payload: Option<Vec<u8>> = row.get(RECORD_COLUMN_COUNT)?;
            Ok(JobDetail {
                record: record(row)?,
                payload: payload.map(Bytes::from).unwrap_or_default(),
                idempotency_key: row.get(RECORD_COLUMN_COUNT + 1)?,
                traceparent: row.get(RECORD_COLUMN_COUNT + 2)?,
                worker: row.get(RECORD_COLUMN_COUNT + 3)?,
                attempt_started_at: row.get(RECORD_COLUMN_COUNT + 4)?,
                failed_attempts: Vec::new(),
            })
        })
        .optional()?;
    let Some(mut detail) = found else { return Ok(None) };
    let mut attempts = conn.prepare_cached(&ATTEMPTS)?;
    let rows = attempts.query_map([id], |row| {
        let status: String = row.get(4)?;
        Ok(AttemptRecord {
            attempt: row.get(0)?,
            worker: row.get(1)?,
            started_at: row.get(2)?,
            finished_at: row.get(3)?,
            status: Status::parse(&status).unwrap_or(Status::Failed),
            error: row.get(5)?,
        })
    })?;
    detail.failed_attempts = rows.collect::<Result<Vec<_>, _>>()?;
    Ok(Some(detail))
}

fn list(conn: &Connection, filter: &JobFilter, page: &Page) -> Result<Vec<JobRecord>, StoreError> {
    let sql = list_sql(filter, page, placeholder);
    let mut statement = conn.prepare_cached(&sql.text)?;
    let rows = statement.query_map(rusqlite::params_from_iter(sql.values.iter().map(SqlValue::to_sqlite)), record)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

fn cron_ran(conn: &Connection, name: &str, tick: Micros) -> Result<u64, StoreError> {
    static CRON_RAN: LazyLock<String> = LazyLock::new(|| cron_ran_sql("?1", "?2", "MAX"));
    Ok(conn.prepare_cached(&CRON_RAN)?.execute(params![name, tick])? as u64)
}

fn heartbeat(conn: &Connection, member: &Member, forget_before: Micros) -> Result<u64, StoreError> {
    static HEARTBEAT: LazyLock<String> = LazyLock::new(|| heartbeat_sql(placeholder));
    static FORGET: LazyLock<String> = LazyLock::new(|| forget_members_sql(placeholder));
    conn.prepare_cached(&HEARTBEAT)?.execute(params![
        member.id,
        member.address,
        member.started_at,
        member.last_seen
    ])?;
    Ok(conn.prepare_cached(&FORGET)?.execute([forget_before])? as u64)
}

fn members(conn: &Connection) -> Result<Vec<Member>, StoreError> {
    let mut select = conn.prepare_cached(MEMBERS_SQL)?;
    let rows = select.query_map([], |row| {
        Ok(Member { id: row.get(0)?, address: row.get(1)?, started_at: row.get(2)?, last_seen: row.get(3)? })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

fn cron_runs(conn: &Connection) -> Result<Vec<(String, Micros)>, StoreError> {
    let mut select = conn.prepare_cached("SELECT name, last_tick FROM cron_runs ORDER BY name")?;
    let rows = select.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

fn next_due(conn: &Connection, now: Micros) -> Result<NextDue, StoreError> {
    static NEXT_DUE: LazyLock<String> = LazyLock::new(|| next_due_sql("?1"));
    let (run, expiry) = conn.prepare_cached(&NEXT_DUE)?.query_row([now], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(NextDue { run, expiry })
}

fn stats(conn: &Connection, filter: &JobFilter, now: Micros) -> Result<JobStats, StoreError> {
    let mut counts = Vec::new();
    let sql = stats_sql(filter, placeholder);
    let mut select = conn.prepare_cached(&sql.text)?;
    let values = rusqlite::params_from_iter(sql.values.iter().map(SqlValue::to_sqlite));
    let rows = select.query_map(values, |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get(2)?)))?;
    for row in rows {
        let (status, kind, count) = row?;
        if let Some(status) = Status::parse(&status) {
            counts.push((status, kind, count));
        }
    }
    Ok(JobStats { counts, oldest_due: oldest_due(conn, filter, now)? })
}

fn oldest_due(conn: &Connection, filter: &JobFilter, now: Micros) -> Result<Option<Micros>, StoreError> {
    let sql = oldest_due_sql(filter, now, placeholder);
    let values = rusqlite::params_from_iter(sql.values.iter().map(SqlValue::to_sqlite));
    Ok(conn.prepare_cached(&sql.text)?.query_row(values, |row| row.get(0))?)
}

fn depth(conn: &Connection) -> Result<Depth, StoreError> {
    let mut select =
        conn.prepare_cached("SELECT status, COUNT(*) FROM jobs WHERE status IN ('queued', 'running') GROUP BY status")?;
    let mut depth = Depth::default();
    let rows = select.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))?;
    for row in rows {
        match row? {
            (status, count) if status == "queued" => depth.queued = count,
            (status, count) if status == "running" => depth.running = count,
            _ => {}
        }
    }
    Ok(depth)
}

#[async_trait::async_trait]
impl JobStore for SqliteStore {
    async fn insert(&self, jobs: Vec<NewJob>) -> Result<Vec<Accepted>, StoreError> {
        self.send(|reply| Command::Insert(jobs, reply)).await
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<Claimed>, StoreError> {
        self.send(|reply| Command::Claim(Box::new(request.clone()), reply)).await
    }

    async fn pause(&self, scope: PauseScope, name: &str, now: Micros) -> Result<bool, StoreError> {
        let changed = self.send(|reply| Command::Pause { scope, name: name.to_owned(), now, reply }).await?;
        Ok(changed > 0)
    }

    async fn resume(&self, scope: PauseScope, name: &str) -> Result<bool, StoreError> {
        let changed = self.send(|reply| Command::Resume { scope, name: name.to_owned(), reply }).await?;
        Ok(changed > 0)
    }

    async fn pauses(&self) -> Result<Vec<Pause>, StoreError> {
        self.read(pauses).await
    }

    async fn progress(&self, id: &str, token: i64, progress: &JobProgress) -> Result<bool, StoreError> {
        let progress = progress.stored();
        let changed = self.send(|reply| Command::Progress { id: id.to_owned(), token, progress, reply }).await?;
        Ok(changed > 0)
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

    async fn recover(&self, _owner: &str, now: Micros) -> Result<u64, StoreError> {
        // One gateway per file: every running job was this gateway's.
        self.send(|reply| Command::Recover { now, reply }).await
    }

    async fn get(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| get(conn, &id)).await
    }

    async fn detail(&self, id: &str) -> Result<Option<JobDetail>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| detail(conn, &id)).await
    }

    async fn cancel(&self, id: &str, now: Micros) -> Result<CancelOutcome, StoreError> {
        self.send(|reply| Command::Cancel { id: id.to_owned(), now, reply }).await
    }

    async fn purge(&self, filter: &JobFilter) -> Result<u64, StoreError> {
        self.send(|reply| Command::Purge { filter: filter.clone(), reply }).await
    }

    async fn depth(&self) -> Result<Depth, StoreError> {
        self.read(depth).await
    }

    async fn next_due(&self, now: Micros) -> Result<NextDue, StoreError> {
        self.read(move |conn| next_due(conn, now)).await
    }

    async fn expire(&self, now: Micros) -> Result<Vec<String>, StoreError> {
        self.send(|reply| Command::Expire { now, reply }).await
    }

    async fn list(&self, filter: &JobFilter, page: &Page) -> Result<Vec<JobRecord>, StoreError> {
        let (filter, page) = (filter.clone(), page.clone());
        self.read(move |conn| list(conn, &filter, &page)).await
    }

    async fn stats(&self, filter: &JobFilter, now: Micros) -> Result<JobStats, StoreError> {
        let filter = filter.clone();
        self.read(move |conn| stats(conn, &filter, now)).await
    }

    async fn oldest_due(&self, filter: &JobFilter, now: Micros) -> Result<Option<Micros>, StoreError> {
        let filter = filter.clone();
        self.read(move |conn| oldest_due(conn, &filter, now)).await
    }

    async fn retry(&self, filter: &JobFilter, limit: usize, now: Micros) -> Result<Vec<String>, StoreError> {
        self.send(|reply| Command::Retry { filter: filter.clone(), limit, now, reply }).await
    }

    async fn cron_runs(&self) -> Result<Vec<(String, Micros)>, StoreError> {
        self.read(cron_runs).await
    }

    async fn cron_ran(&self, name: &str, tick: Micros) -> Result<(), StoreError> {
        self.send(|reply| Command::CronRan { name: name.to_owned(), tick, reply }).await.map(drop)
    }

    async fn heartbeat(
        &self,
        member: &Member,
        forget_before: Micros,
        _within: Duration,
    ) -> Result<Vec<Member>, StoreError> {
        // A local file: nothing between the gateway and it to time out.
        self.send(|reply| Command::Heartbeat { member: member.clone(), forget_before, reply }).await?;
        self.read(members).await
    }

    async fn leave(&self, id: &str) -> Result<(), StoreError> {
        self.send(|reply| Command::Leave { id: id.to_owned(), reply }).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synchronous_of(url: &str) -> i64 {
        let (path, durability) = parse_url(url).unwrap();
        let conn = open_connection(&path, false, durability).unwrap();
        conn.pragma_query_value(None, "synchronous", |row| row.get(0)).unwrap()
    }

    #[test]
    fn commits_are_synced_unless_the_url_opts_out() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("jobs.db");
        // SQLite's values: 1 is NORMAL, 2 is FULL.
        assert_eq!(synchronous_of(&format!("sqlite://{}", file.display())), 2);
        assert_eq!(synchronous_of(&format!("sqlite://{}?synchronous=full", file.display())), 2);
        assert_eq!(synchronous_of(&format!("sqlite://{}?synchronous=NORMAL", file.display())), 1);
    }

    #[test]
    fn unknown_url_parameters_are_refused_by_name() {
        for url in ["sqlite://jobs.db?synchronous=off", "sqlite://jobs.db?mode=ro", "sqlite://?synchronous=full"] {
            let error = parse_url(url).unwrap_err().to_string();
            assert!(error.contains(url), "{error}");
        }
        let error = parse_url("sqlite://jobs.db?synchronous=off").unwrap_err().to_string();
        assert!(error.contains("`synchronous=off`") && error.contains("synchronous=normal"), "{error}");
    }
}
