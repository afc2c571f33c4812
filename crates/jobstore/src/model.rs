//! What a durable job is, in the store and on the wire.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Why an expired job never ran.
pub const EXPIRED_ERROR: &str = "not started by its start_by time (expired)";

/// Microseconds since the Unix epoch: the store's clock.
pub type Micros = i64;

/// Now, in microseconds since the Unix epoch.
pub fn now_micros() -> Micros {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Accepted, waiting for a worker (or for its retry time).
    Queued,
    /// Dispatched to a worker under a lease.
    Running,
    /// Finished with a result.
    Succeeded,
    /// Finished with an error no retry can fix (an unknown kind, a payload the kind refuses, a
    /// message over the size limit): it ran once, or not at all.
    Failed,
    /// Cancelled by a client.
    Cancelled,
    /// Failed on every allowed attempt; the last error is kept.
    Dead,
    /// Not started by its `start_by` time, so never run.
    Expired,
}

impl Status {
    /// The status as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Dead => "dead",
            Self::Expired => "expired",
        }
    }

    /// Reads a stored status.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            "dead" => Self::Dead,
            "expired" => Self::Expired,
            _ => return None,
        })
    }

    /// Whether the job is over.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled | Self::Dead | Self::Expired)
    }

    /// Whether a client may run the job again: it ended without succeeding.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Failed | Self::Cancelled | Self::Dead | Self::Expired)
    }

    /// Every status, in the order a job may pass through them.
    pub const ALL: [Self; 7] =
        [Self::Queued, Self::Running, Self::Succeeded, Self::Failed, Self::Cancelled, Self::Dead, Self::Expired];

    /// The statuses a client may retry from.
    pub const RETRYABLE: [Self; 4] = [Self::Failed, Self::Cancelled, Self::Dead, Self::Expired];
}

/// How soon a job runs beside the others: claims take high before normal before low.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Ahead of the others.
    High,
    /// The default.
    #[default]
    Normal,
    /// After the others.
    Low,
}

impl Priority {
    /// As stored: 0 high, 1 normal, 2 low, so that claims take the lowest first.
    pub fn stored(self) -> i16 {
        match self {
            Self::High => 0,
            Self::Normal => 1,
            Self::Low => 2,
        }
    }

    /// The priority a stored number stands for (anything unknown reads as normal).
    pub fn from_stored(stored: i16) -> Self {
        match stored {
            0 => Self::High,
            2 => Self::Low,
            _ => Self::Normal,
        }
    }

    /// Its name: `high`, `normal` or `low`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::High => "high",
            Self::Normal => "normal",
            Self::Low => "low",
        }
    }
}

/// A job to accept.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Its id (a UUIDv7).
    pub id: String,
    /// The job kind.
    pub kind: String,
    /// The JSON payload.
    pub payload: Bytes,
    /// How soon it runs beside the others.
    pub priority: Priority,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// Each attempt's time limit.
    pub timeout_ms: i64,
    /// A client key making a replay return this job, scoped to the client that sent it.
    pub idempotency_key: Option<String>,
    /// A digest of the request that carried the key: a later request with the same key and
    /// another digest is a reuse of the key, not a replay.
    pub fingerprint: Option<String>,
    /// Whose job it is: its caller's tenant once authenticated, else the `tenant` it names
    /// ([`DEFAULT_TENANT`] when it names none). Claims take turns over tenants.
    pub tenant: String,
    /// When it was accepted.
    pub created_at: Micros,
    /// When it is due: `created_at` for a job to run now, later for a scheduled one.
    pub run_after: Micros,
    /// When it must have started by, if ever: a job still queued then ends `expired`.
    pub start_by: Option<Micros>,
    /// Set when the accepting gateway runs the job at once: it is stored as its first attempt,
    /// running under this lease, instead of queued (acceptance and claim in one write).
    pub claim: Option<ClaimAtAccept>,
    /// Set for a unique job: it is not accepted while another job holds its key.
    pub unique: Option<Unique>,
    /// The W3C `traceparent` of the request that accepted it, when traces are kept.
    pub traceparent: Option<String>,
}

/// What makes a job unique: no other job with its key may be accepted while this one is in one
/// of `states` (and, with `since`, was accepted after it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unique {
    /// The key (its tenant's, once authenticated).
    pub key: String,
    /// Only a job accepted at or after this time counts (the unique period's start).
    pub since: Option<Micros>,
    /// The statuses in which a job with the key blocks a new one.
    pub states: Vec<Status>,
}

impl NewJob {
    /// The attempt a job stored with `claim` is in.
    pub fn claimed(&self, claim: &ClaimAtAccept) -> Claimed {
        Claimed {
            id: self.id.clone(),
            kind: self.kind.clone(),
            payload: self.payload.clone(),
            priority: self.priority,
            attempt: 1,
            max_attempts: self.max_attempts,
            token: claim.token,
            timeout_ms: self.timeout_ms,
            created_at: self.created_at,
            traceparent: self.traceparent.clone(),
            tenant: self.tenant.clone(),
        }
    }
}

/// A lease taken on a job as it is accepted, by a gateway with a free slot and nothing queued
/// before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimAtAccept {
    /// The gateway that runs it.
    pub owner: std::sync::Arc<str>,
    /// When the lease runs out unless renewed.
    pub lease_until: Micros,
    /// Fences the attempt, as a claim's token does.
    pub token: i64,
}

impl Unique {
    /// Whether a job with this key, in `status` and accepted at `created_at`, blocks a new one.
    pub fn blocks(&self, status: &str, created_at: Micros) -> bool {
        Status::parse(status).is_some_and(|status| self.states.contains(&status))
            && self.since.is_none_or(|since| created_at >= since)
    }
}

/// The job a store accepted for a [`NewJob`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The job's id: the new one, or the earlier job's on an idempotent replay.
    pub id: String,
    /// False when an earlier job with the same idempotency key was returned instead.
    pub created: bool,
    /// For a job not created: the key's first request was a different one, so this is a reuse
    /// of the key (refused), not a replay.
    pub key_reused: bool,
    /// For a job not created: a job with its uniqueness key exists, and `id` is that job's.
    pub unique_conflict: bool,
    /// For a job created with a [`ClaimAtAccept`]: it was stored running, under that lease.
    /// False when its kind or tenant was paused, so it was queued instead.
    pub started: bool,
}

impl Accepted {
    /// A job stored as asked.
    pub fn created(id: String, started: bool) -> Self {
        Self { id, created: true, key_reused: false, unique_conflict: false, started }
    }

    /// The earlier job of an idempotency key; `key_reused` when its request differed.
    pub fn replayed(id: String, key_reused: bool) -> Self {
        Self { id, created: false, key_reused, unique_conflict: false, started: false }
    }

    /// The job that holds the uniqueness key, returned instead of a new one.
    pub fn unique_conflict(id: String) -> Self {
        Self { id, created: false, key_reused: false, unique_conflict: true, started: false }
    }
}

/// A job claimed for one attempt.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// Its id.
    pub id: String,
    /// Its kind.
    pub kind: String,
    /// Its payload.
    pub payload: Bytes,
    /// How soon it runs beside the others.
    pub priority: Priority,
    /// This attempt's number, from 1.
    pub attempt: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// Fences this attempt: only a completion carrying it is accepted.
    pub token: i64,
    /// The attempt's time limit.
    pub timeout_ms: i64,
    /// When the job was accepted.
    pub created_at: Micros,
    /// The `traceparent` of the request that accepted it: the attempt's spans are its children.
    pub traceparent: Option<String>,
    /// Whose job it is.
    pub tenant: String,
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The job succeeded with this JSON result.
    Succeeded(Bytes),
    /// The attempt failed; retry at the given time, or end `dead` when `None`.
    Failed {
        /// Why.
        error: String,
        /// When to try again.
        retry_at: Option<Micros>,
    },
    /// The attempt failed in a way no retry can fix (an unknown kind, an invalid payload): the
    /// job ends `failed`.
    Refused(String),
    /// The job never started (no worker free or reachable): back to the queue without using up
    /// an attempt.
    NotStarted {
        /// When to try again.
        retry_at: Micros,
    },
    /// A client cancelled it.
    Cancelled,
}

/// What an attempt's outcome does to its job's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorChange<'a> {
    /// The error stays as it was.
    Keep,
    /// The error is cleared (the job succeeded).
    Clear,
    /// The error becomes this.
    Set(&'a str),
}

/// What an attempt's outcome does to its job: computed once, here, applied by every store, and
/// the source of the event that announces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition<'a> {
    /// The job's status after it.
    pub status: Status,
    /// When the job ended, if it did.
    pub finished_at: Option<Micros>,
    /// When the job is due again, if it is queued again.
    pub run_after: Option<Micros>,
    /// What becomes of its error.
    pub error: ErrorChange<'a>,
    /// Its result, if it succeeded.
    pub result: Option<&'a Bytes>,
    /// How its attempt count changes: −1 for an attempt that never started, else 0.
    pub attempt_change: i32,
}

impl Outcome {
    /// What this outcome, reached at `at`, does to the job.
    pub fn transition(&self, at: Micros) -> Transition<'_> {
        let ended = |status, error| Transition {
            status,
            finished_at: Some(at),
            run_after: None,
            error,
            result: None,
            attempt_change: 0,
        };
        match self {
            Self::Succeeded(result) => {
                Transition { result: Some(result), ..ended(Status::Succeeded, ErrorChange::Clear) }
            }
            Self::Failed { error, retry_at: Some(retry_at) } => Transition {
                status: Status::Queued,
                finished_at: None,
                run_after: Some(*retry_at),
                error: ErrorChange::Set(error),
                result: None,
                attempt_change: 0,
            },
            Self::Failed { error, retry_at: None } => ended(Status::Dead, ErrorChange::Set(error)),
            Self::Refused(error) => ended(Status::Failed, ErrorChange::Set(error)),
            Self::NotStarted { retry_at } => Transition {
                status: Status::Queued,
                finished_at: None,
                run_after: Some(*retry_at),
                error: ErrorChange::Keep,
                result: None,
                attempt_change: -1,
            },
            Self::Cancelled => ended(Status::Cancelled, ErrorChange::Keep),
        }
    }
}

/// An attempt's end, fenced by its token.
#[derive(Debug, Clone)]
pub struct Completion {
    /// The job.
    pub id: String,
    /// The attempt's token.
    pub token: i64,
    /// How it ended.
    pub outcome: Outcome,
    /// When.
    pub at: Micros,
    /// The attempt's last progress report, if it is not stored yet.
    pub progress: Option<JobProgress>,
    /// The attempt itself, if it started on a worker (an attempt never started has none).
    pub run: Option<AttemptRun>,
}

/// An attempt that ran: which it was, where and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRun {
    /// Its number (1 for the first).
    pub attempt: i32,
    /// The worker endpoint that ran it, if one answered.
    pub worker: Option<String>,
    /// When it started.
    pub started: Micros,
}

/// An attempt that ended without succeeding, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// Its number.
    pub attempt: i32,
    /// The worker that ran it, if one answered.
    pub worker: Option<String>,
    /// When it started.
    pub started_at: Micros,
    /// When it ended.
    pub finished_at: Micros,
    /// What the job became after it (queued for a retry, dead, failed, cancelled).
    pub status: Status,
    /// Its error.
    pub error: Option<String>,
}

/// Everything the store knows of one job: its record, what it was given, and its attempts.
#[derive(Debug, Clone)]
pub struct JobDetail {
    /// The job as every listing shows it.
    pub record: JobRecord,
    /// Its payload.
    pub payload: Bytes,
    /// The key it was submitted under, if any.
    pub idempotency_key: Option<String>,
    /// The W3C trace context of the request that accepted it.
    pub traceparent: Option<String>,
    /// The worker of its last attempt that got an answer.
    pub worker: Option<String>,
    /// When its last attempt started.
    pub attempt_started_at: Option<Micros>,
    /// Its attempts that did not succeed, oldest first.
    pub failed_attempts: Vec<AttemptRecord>,
}

/// What a client sees of a job.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    /// Its id.
    pub id: String,
    /// Its kind.
    pub kind: String,
    /// Where it stands.
    pub status: Status,
    /// How soon it runs beside the others.
    pub priority: Priority,
    /// Attempts made so far.
    pub attempts: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// When it was accepted (RFC 3339).
    pub created_at: String,
    /// When its first attempt started.
    pub started_at: Option<String>,
    /// When it ended.
    pub finished_at: Option<String>,
    /// When it is due (or was last due): its scheduled time, its cron tick, or its next retry's.
    pub run_at: String,
    /// The time it must have started by, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_by: Option<String>,
    /// The last error, for failed, dead and retrying jobs.
    pub error: Option<String>,
    /// Its result, a JSON document, once succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Box<serde_json::value::RawValue>>,
    /// The tenant that submitted it, if its caller was authenticated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The last progress its attempt reported, if any did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<ProgressView>,
}

/// A job's progress as a client sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProgressView {
    /// From 0 to 1.
    pub fraction: f64,
    /// What it is doing.
    pub message: String,
}

/// Which jobs a listing, a bulk retry or a purge is about; every field given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Only this job.
    pub id: Option<String>,
    /// In one of these statuses (any, when empty).
    pub statuses: Vec<Status>,
    /// Of this kind.
    pub kind: Option<String>,
    /// Submitted by this tenant.
    pub tenant: Option<String>,
    /// Accepted after this time.
    pub created_after: Option<Micros>,
    /// Ended before this time.
    pub finished_before: Option<Micros>,
    /// Accepted before this time.
    pub created_before: Option<Micros>,
    /// Whose id or idempotency key starts with this text.
    pub text: Option<String>,
}

/// A page of a listing: jobs newest first, up to a limit, after a cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The most jobs to return.
    pub limit: usize,
    /// Only jobs older than this one (the last of the previous page), by id. Ids are UUIDv7,
    /// so their order is their acceptance order and a page never shifts as jobs are added.
    pub before_id: Option<String>,
}

/// How many jobs there are of each status and kind, and how long the oldest queued one has
/// been due.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobStats {
    /// `(status, kind, count)`, by status then kind.
    pub counts: Vec<(Status, String, i64)>,
    /// When the longest-waiting queued job that is due became due.
    pub oldest_due: Option<Micros>,
}

/// Jobs in each status, by status name.
pub type StatusCounts = BTreeMap<&'static str, i64>;

impl JobStats {
    /// Jobs in each status (every status named, zero or not), and per kind, jobs in each status
    /// that has any.
    pub fn totals(&self) -> (StatusCounts, BTreeMap<String, StatusCounts>) {
        let mut by_status: BTreeMap<&'static str, i64> =
            Status::ALL.iter().map(|status| (status.as_str(), 0)).collect();
        let mut by_kind: BTreeMap<String, StatusCounts> = BTreeMap::new();
        for (status, kind, count) in &self.counts {
            *by_status.entry(status.as_str()).or_default() += count;
            by_kind.entry(kind.clone()).or_default().insert(status.as_str(), *count);
        }
        (by_status, by_kind)
    }
}

/// How long something due at `due` has waited by `now`, in seconds (0 if it is not due yet).
pub fn waited_seconds(due: Micros, now: Micros) -> f64 {
    #[allow(clippy::cast_precision_loss)] // an age in seconds
    let seconds = now.saturating_sub(due).max(0) as f64 / 1_000_000.0;
    seconds
}

/// When the claim loop next has something to do for queued jobs it cannot see yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NextDue {
    /// The earliest time a queued job not yet due becomes due.
    pub run: Option<Micros>,
    /// The earliest `start_by` of a queued job: it expires after that.
    pub expiry: Option<Micros>,
}

/// A job as stored.
#[derive(Debug, Clone)]
pub struct JobRecord {
    /// Its id.
    pub id: String,
    /// Its kind.
    pub kind: String,
    /// Where it stands.
    pub status: Status,
    /// How soon it runs beside the others.
    pub priority: Priority,
    /// Attempts made.
    pub attempt: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// Accepted at.
    pub created_at: Micros,
    /// First attempt started at.
    pub started_at: Option<Micros>,
    /// Ended at.
    pub finished_at: Option<Micros>,
    /// Due at (its next attempt's time while queued).
    pub run_after: Micros,
    /// Must have started by.
    pub start_by: Option<Micros>,
    /// Last error.
    pub error: Option<String>,
    /// Result, once succeeded.
    pub result: Option<Bytes>,
    /// The tenant that submitted it, if its caller was authenticated.
    pub tenant: Option<String>,
    /// The last progress an attempt reported.
    pub progress: Option<JobProgress>,
}

/// How far a running job has got, as its attempt reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobProgress {
    /// From 0 (nothing done) to 1 (all done).
    pub fraction: f64,
    /// What it is doing, in a few words.
    pub message: String,
    /// The attempt that reported it.
    pub attempt: i32,
    /// Which report of its attempt this is, from 1: later reports are higher.
    pub seq: u32,
}

impl JobProgress {
    /// As the store keeps it: a JSON object.
    pub fn stored(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// As a client sees it.
    pub fn view(&self) -> ProgressView {
        ProgressView { fraction: self.fraction, message: self.message.clone() }
    }

    /// What the store kept, if it reads as progress.
    pub fn from_stored(text: Option<&str>) -> Option<Self> {
        text.and_then(|text| serde_json::from_str(text).ok())
    }
}

/// A time as RFC 3339 with microseconds, in UTC (times before 1970 read as 1970).
pub fn rfc3339(micros: Micros) -> String {
    let since_epoch = std::time::Duration::from_micros(u64::try_from(micros).unwrap_or(0));
    humantime::format_rfc3339_micros(std::time::UNIX_EPOCH + since_epoch).to_string()
}

/// Reads an RFC 3339 time (`2026-12-02T09:30:00Z`, `2026-12-02T10:30:00+01:00`, fractions of
/// a second allowed) as microseconds since the Unix epoch.
pub fn parse_rfc3339(text: &str) -> Result<Micros, String> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|time| time.timestamp_micros())
        .map_err(|error| format!("{text:?} is not an RFC 3339 time ({error}); write it like \"2026-12-02T09:30:00Z\""))
}

impl JobRecord {
    /// The record of a job just accepted.
    pub fn accepted(job: &NewJob) -> Self {
        Self {
            id: job.id.clone(),
            kind: job.kind.clone(),
            status: Status::Queued,
            priority: job.priority,
            attempt: 0,
            max_attempts: job.max_attempts,
            created_at: job.created_at,
            started_at: None,
            finished_at: None,
            run_after: job.run_after,
            start_by: job.start_by,
            error: None,
            result: None,
            tenant: Some(job.tenant.clone()),
            progress: None,
        }
    }

    /// The record as a client sees it.
    pub fn view(&self) -> JobView {
        let result = self
            .result
            .as_ref()
            .and_then(|bytes| serde_json::from_slice::<Box<serde_json::value::RawValue>>(bytes).ok());
        JobView {
            id: self.id.clone(),
            kind: self.kind.clone(),
            status: self.status,
            priority: self.priority,
            attempts: self.attempt,
            max_attempts: self.max_attempts,
            created_at: rfc3339(self.created_at),
            started_at: self.started_at.map(rfc3339),
            finished_at: self.finished_at.map(rfc3339),
            run_at: rfc3339(self.run_after),
            start_by: self.start_by.map(rfc3339),
            error: self.error.clone(),
            result,
            tenant: self.tenant.clone(),
            progress: self.progress.as_ref().map(JobProgress::view),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_render_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(1_795_000_000_123_456), "2026-11-18T11:06:40.123456Z");
        assert_eq!(rfc3339(951_782_400_000_000), "2000-02-29T00:00:00.000000Z");
    }

    #[test]
    fn rfc3339_times_are_read_with_their_offsets() {
        assert_eq!(parse_rfc3339("2026-11-18T11:06:40.123456Z"), Ok(1_795_000_000_123_456));
        assert_eq!(parse_rfc3339("2026-11-18T12:06:40.123456+01:00"), Ok(1_795_000_000_123_456));
        assert_eq!(parse_rfc3339(&rfc3339(1_795_000_000_123_456)), Ok(1_795_000_000_123_456));
        for bad in ["tomorrow", "2026-11-18", "2026-11-18T11:06:40", ""] {
            let error = parse_rfc3339(bad).unwrap_err();
            assert!(error.contains("RFC 3339"), "{error}");
        }
    }

    #[test]
    fn statuses_round_trip() {
        for status in Status::ALL {
            assert_eq!(Status::parse(status.as_str()), Some(status));
            assert_eq!(Status::RETRYABLE.contains(&status), status.is_retryable());
            assert!(!status.is_retryable() || status.is_terminal(), "only an ended job is retried");
        }
        assert!(Status::Dead.is_terminal() && Status::Expired.is_terminal() && !Status::Running.is_terminal());
        assert!(!Status::Succeeded.is_retryable());
    }

    #[test]
    fn priorities_round_trip_and_order_claims() {
        for priority in [Priority::High, Priority::Normal, Priority::Low] {
            assert_eq!(Priority::from_stored(priority.stored()), priority);
        }
        assert!(Priority::High < Priority::Normal && Priority::Normal < Priority::Low);
        assert!(Priority::High.stored() < Priority::Low.stored(), "claims take the lowest stored number first");
    }

    #[test]
    fn each_outcome_makes_one_transition() {
        let result = Bytes::from_static(b"1");
        let outcome = Outcome::Succeeded(result.clone());
        let succeeded = outcome.transition(7);
        assert_eq!(
            (succeeded.status, succeeded.finished_at, succeeded.error),
            (Status::Succeeded, Some(7), ErrorChange::Clear)
        );
        assert_eq!(succeeded.result, Some(&result));
        let outcome = Outcome::Failed { error: "boom".into(), retry_at: Some(9) };
        let retry = outcome.transition(7);
        assert_eq!((retry.status, retry.finished_at, retry.run_after), (Status::Queued, None, Some(9)));
        assert_eq!(retry.error, ErrorChange::Set("boom"));
        let outcome = Outcome::Failed { error: "boom".into(), retry_at: None };
        let dead = outcome.transition(7);
        assert_eq!((dead.status, dead.finished_at), (Status::Dead, Some(7)));
        assert_eq!(Outcome::Refused("bad".into()).transition(7).status, Status::Failed);
        let not_started = Outcome::NotStarted { retry_at: 8 }.transition(7);
        assert_eq!(
            (not_started.status, not_started.attempt_change, not_started.error),
            (Status::Queued, -1, ErrorChange::Keep)
        );
        let cancelled = Outcome::Cancelled.transition(7);
        assert_eq!((cancelled.status, cancelled.error), (Status::Cancelled, ErrorChange::Keep));
    }
}
