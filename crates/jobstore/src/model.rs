//! What a durable job is, in the store and on the wire.

use bytes::Bytes;
use serde::Serialize;

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
            _ => return None,
        })
    }

    /// Whether the job is over.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled | Self::Dead)
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
    /// 0 high, 1 normal, 2 low.
    pub priority: i16,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// Each attempt's time limit.
    pub timeout_ms: i64,
    /// A client key making a replay return this job, scoped to the client that sent it.
    pub idempotency_key: Option<String>,
    /// A digest of the request that carried the key: a later request with the same key and
    /// another digest is a reuse of the key, not a replay.
    pub fingerprint: Option<String>,
    /// When it was accepted.
    pub created_at: Micros,
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
    /// 0 high, 1 normal, 2 low.
    pub priority: i16,
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
    /// `high`, `normal` or `low`.
    pub priority: &'static str,
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
    /// The last error, for failed, dead and retrying jobs.
    pub error: Option<String>,
    /// Its result, a JSON document, once succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Box<serde_json::value::RawValue>>,
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
    /// 0 high, 1 normal, 2 low.
    pub priority: i16,
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
    /// Last error.
    pub error: Option<String>,
    /// Result, once succeeded.
    pub result: Option<Bytes>,
}

/// A time as RFC 3339 with microseconds, in UTC (times before 1970 read as 1970).
pub fn rfc3339(micros: Micros) -> String {
    let since_epoch = std::time::Duration::from_micros(u64::try_from(micros).unwrap_or(0));
    humantime::format_rfc3339_micros(std::time::UNIX_EPOCH + since_epoch).to_string()
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
            error: None,
            result: None,
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
            priority: priority_name(self.priority),
            attempts: self.attempt,
            max_attempts: self.max_attempts,
            created_at: rfc3339(self.created_at),
            started_at: self.started_at.map(rfc3339),
            finished_at: self.finished_at.map(rfc3339),
            error: self.error.clone(),
            result,
        }
    }
}

/// The stored priority's name.
pub fn priority_name(priority: i16) -> &'static str {
    match priority {
        0 => "high",
        2 => "low",
        _ => "normal",
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
    fn statuses_round_trip() {
        for status in
            [Status::Queued, Status::Running, Status::Succeeded, Status::Failed, Status::Cancelled, Status::Dead]
        {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
        assert!(Status::Dead.is_terminal() && !Status::Running.is_terminal());
    }
}
