//! The fields that describe a job in a request body, shared by `/api/process`, `/api/jobs` and
//! `/api/batch`, with their checks.

use crate::{config::JobsConfig, problem::Problem};
use bytes::Bytes;
use rampart_jobs::{
    durable::model::{NewJob, Priority, now_micros},
    workers::Pools,
};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// The longest job kind name accepted.
const MAX_KIND_LEN: usize = 64;

/// The longest time limit a job may ask for: a day.
const MAX_TIMEOUT_MS: u64 = 86_400_000;

/// The most attempts a job may ask for.
const MAX_ATTEMPTS: u32 = 100;

/// Checks that some worker runs `kind`, once the workers have said what they run; before that
/// the workers answer for it.
pub fn check_runs(pools: &Pools, kind: &str) -> Result<(), Problem> {
    if pools.runs(kind) != Some(false) {
        return Ok(());
    }
    let known = pools.kinds();
    Err(Problem::new(
        http::StatusCode::UNPROCESSABLE_ENTITY,
        crate::problem::ProblemCode::UnknownKind,
        format!("no worker runs job kind {kind:?}; the workers run {}", known.join(", ")),
    )
    .with("kinds", known))
}

/// Checks a job kind's name.
pub fn check_kind(kind: &str) -> Result<(), Problem> {
    let well_formed = !kind.is_empty()
        && kind.len() <= MAX_KIND_LEN
        && kind.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.' | b':'));
    if well_formed {
        Ok(())
    } else {
        Err(Problem::unprocessable(format!(
            "kind must be 1 to {MAX_KIND_LEN} letters, digits, '_', '-', '.' or ':' (got {kind:?})"
        )))
    }
}

/// Checks a job's own time limit, if given.
pub fn check_timeout(timeout_ms: Option<u64>) -> Result<(), Problem> {
    match timeout_ms {
        Some(0) => Err(Problem::unprocessable("timeout_ms must be at least 1")),
        Some(ms) if ms > MAX_TIMEOUT_MS => {
            Err(Problem::unprocessable(format!("timeout_ms must be at most {MAX_TIMEOUT_MS} (a day)")))
        }
        _ => Ok(()),
    }
}

/// A durable job as a client describes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobBody<'a> {
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
    #[serde(default)]
    priority: Priority,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    max_attempts: Option<u32>,
}

/// A job to run now (`POST /api/process`): what a [`JobBody`] asks for, checked.
pub struct RunNow<'a> {
    /// The kind.
    pub kind: Cow<'a, str>,
    /// The payload, as the exact bytes the client sent (never re-encoded).
    pub payload: Bytes,
    /// Its place in the worker's queue.
    pub priority: Priority,
    /// Its own time limit, if any.
    pub timeout_ms: Option<u64>,
}

impl<'a> JobBody<'a> {
    /// The job to run now, its payload sliced out of `body`. `max_attempts` belongs to durable
    /// jobs and is refused here.
    pub fn run_now(self, body: &Bytes) -> Result<RunNow<'a>, Problem> {
        check_kind(&self.kind)?;
        check_timeout(self.timeout_ms)?;
        if self.max_attempts.is_some() {
            return Err(Problem::unprocessable(
                "max_attempts applies to durable jobs (POST /api/jobs); /api/process runs a job once",
            ));
        }
        Ok(RunNow {
            payload: self.payload.map_or(Bytes::from_static(b"null"), |raw| body.slice_ref(raw.get().as_bytes())),
            kind: self.kind,
            priority: self.priority,
            timeout_ms: self.timeout_ms,
        })
    }
}

impl JobBody<'_> {
    /// The job to store, its payload sliced out of `body` (the bytes this was parsed from) as
    /// the client sent it.
    pub fn into_new_job(self, body: &Bytes, config: &JobsConfig, key: Option<String>) -> Result<NewJob, Problem> {
        check_kind(&self.kind)?;
        check_timeout(self.timeout_ms)?;
        let max_attempts = self.max_attempts.unwrap_or(config.max_attempts);
        if !(1..=MAX_ATTEMPTS).contains(&max_attempts) {
            return Err(Problem::unprocessable(format!("max_attempts must be 1 to {MAX_ATTEMPTS}")));
        }
        let timeout_ms = self
            .timeout_ms
            .unwrap_or_else(|| u64::try_from(config.default_timeout.as_millis()).unwrap_or(MAX_TIMEOUT_MS));
        Ok(NewJob {
            id: uuid::Uuid::now_v7().to_string(),
            kind: self.kind.into_owned(),
            payload: self.payload.map_or(Bytes::from_static(b"null"), |raw| body.slice_ref(raw.get().as_bytes())),
            priority: self.priority,
            max_attempts: i32::try_from(max_attempts).unwrap_or(i32::MAX),
            timeout_ms: i64::try_from(timeout_ms).unwrap_or(i64::MAX),
            idempotency_key: key,
            fingerprint: None,
            tenant: None,
            created_at: now_micros(),
            claim: None,
        })
    }
}

/// A digest of everything a job's request asks for (kind, payload bytes, priority, time limit,
/// attempts): two requests with the same digest are the same request.
pub fn fingerprint(job: &NewJob) -> String {
    use sha2::{Digest as _, Sha256};
    let mut digest = Sha256::new();
    digest.update(job.kind.as_bytes());
    digest.update([0]);
    digest.update(&job.payload);
    digest.update([0]);
    digest.update(job.priority.stored().to_le_bytes());
    digest.update(job.timeout_ms.to_le_bytes());
    digest.update(job.max_attempts.to_le_bytes());
    hex::encode(digest.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &'static str) -> Result<NewJob, Problem> {
        let body = Bytes::from_static(text.as_bytes());
        let job: JobBody<'_> =
            serde_json::from_slice(&body).map_err(|error| Problem::bad_request(error.to_string()))?;
        job.into_new_job(&body, &JobsConfig::default(), None)
    }

    #[test]
    fn fills_defaults_and_keeps_the_payload_bytes() {
        let job = parse(r#"{"kind": "sleep", "payload": {"ms":  5}, "priority": "high"}"#).unwrap();
        assert_eq!(&job.payload[..], br#"{"ms":  5}"#);
        assert_eq!((job.priority, job.max_attempts, job.timeout_ms), (Priority::High, 5, 60_000));
        assert_eq!(&parse(r#"{"kind": "echo"}"#).unwrap().payload[..], b"null");
    }

    #[test]
    fn fingerprints_tell_requests_apart() {
        let echo = parse(r#"{"kind": "echo", "payload": 1}"#).unwrap();
        assert_eq!(fingerprint(&echo), fingerprint(&parse(r#"{"payload": 1, "kind": "echo"}"#).unwrap()));
        for other in [
            r#"{"kind": "echo", "payload": 2}"#,
            r#"{"kind": "sleep", "payload": 1}"#,
            r#"{"kind": "echo", "payload": 1, "priority": "high"}"#,
            r#"{"kind": "echo", "payload": 1, "max_attempts": 1}"#,
        ] {
            assert_ne!(fingerprint(&echo), fingerprint(&parse(other).unwrap()), "{other}");
        }
    }

    #[test]
    fn refuses_bad_fields() {
        for body in [
            r#"{"kind": ""}"#,
            r#"{"kind": "echo", "timeout_ms": 0}"#,
            r#"{"kind": "echo", "timeout_ms": 86400001}"#,
            r#"{"kind": "echo", "max_attempts": 0}"#,
            r#"{"kind": "echo", "max_attempts": 101}"#,
        ] {
            assert!(parse(body).is_err(), "{body}");
        }
    }
}
