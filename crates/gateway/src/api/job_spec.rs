//! The fields that describe a job in a request body, shared by `/api/process`, `/api/jobs` and
//! `/api/batch`, with their checks.

use crate::{
    config::JobsConfig,
    problem::{Problem, ProblemCode},
};
use axum::http::StatusCode;
use bytes::Bytes;
use rampart_jobs::{
    durable::model::{Micros, NewJob, Priority, Status, Unique, now_micros, parse_rfc3339},
    durable::rules::DEFAULT_TENANT,
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

/// How far ahead a job may be scheduled, or given to start: a year (366 days).
const MAX_AHEAD: std::time::Duration = std::time::Duration::from_secs(366 * 86_400);

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
    check_name("kind", kind)
}

/// Checks a tenant's name as a client gives it (the same form as a kind's).
pub fn check_tenant(tenant: &str) -> Result<(), Problem> {
    check_name("tenant", tenant)
}

fn check_name(field: &str, name: &str) -> Result<(), Problem> {
    let well_formed = !name.is_empty()
        && name.len() <= MAX_KIND_LEN
        && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.' | b':'));
    if well_formed {
        Ok(())
    } else {
        Err(Problem::unprocessable(format!(
            "{field} must be 1 to {MAX_KIND_LEN} letters, digits, '_', '-', '.' or ':' (got {name:?})"
        )))
    }
}

/// Whose job it is: the authenticated `caller`'s tenant (a `named` one must be the same), else
/// the tenant the request names, else the default one.
pub fn job_tenant(caller: Option<&str>, named: Option<&str>) -> Result<String, Problem> {
    match (caller, named) {
        (Some(caller), Some(named)) if caller != named => Err(Problem::new(
            StatusCode::FORBIDDEN,
            ProblemCode::Forbidden,
            format!("a caller submits jobs as its own tenant ({caller:?}); leave out `tenant`"),
        )
        .with("tenant", named)),
        (Some(caller), _) => Ok(caller.to_owned()),
        (None, Some(named)) => check_tenant(named).map(|()| named.to_owned()),
        (None, None) => Ok(DEFAULT_TENANT.to_owned()),
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
    /// Due at this RFC 3339 time.
    #[serde(borrow, default)]
    run_at: Option<Cow<'a, str>>,
    /// Due this long after acceptance ("90s", "10m").
    #[serde(borrow, default)]
    delay: Option<Cow<'a, str>>,
    /// Expires unless started by this RFC 3339 time.
    #[serde(borrow, default)]
    start_by: Option<Cow<'a, str>>,
    /// Expires unless started this long after it is due.
    #[serde(borrow, default)]
    start_within: Option<Cow<'a, str>>,
    /// Makes it a unique job.
    #[serde(borrow, default)]
    unique: Option<UniqueBody<'a>>,
    /// Whose job it is, when the caller is not authenticated [default: `default`].
    #[serde(borrow, default)]
    tenant: Option<Cow<'a, str>>,
}

/// `unique`: `{"key", "period", "states"}`, each optional.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UniqueBody<'a> {
    /// The key [default: a digest of the kind and the payload].
    #[serde(borrow, default)]
    key: Option<Cow<'a, str>>,
    /// Only a job accepted this long ago or less counts [default: any].
    #[serde(borrow, default)]
    period: Option<Cow<'a, str>>,
    /// The statuses in which a job with the key counts [default: queued and running].
    #[serde(default)]
    states: Option<Vec<String>>,
}

/// The longest uniqueness key accepted.
const MAX_UNIQUE_KEY_LEN: usize = 255;

impl UniqueBody<'_> {
    /// What makes the job unique, for a job of `kind` with `payload` accepted at `now`. The key
    /// is not yet scoped to the tenant: the caller does that.
    fn unique(&self, kind: &str, payload: &[u8], now: Micros) -> Result<Unique, Problem> {
        let key = match &self.key {
            Some(key) if key.is_empty() || key.len() > MAX_UNIQUE_KEY_LEN => {
                return Err(Problem::unprocessable(format!("unique.key must be 1 to {MAX_UNIQUE_KEY_LEN} bytes")));
            }
            Some(key) => format!("key:{key}"),
            None => {
                use sha2::Digest as _;
                // The payload as a value, so that spacing and key order do not make two jobs differ.
                let value: serde_json::Value = serde_json::from_slice(payload).unwrap_or_default();
                let mut digest = sha2::Sha256::new();
                digest.update(kind.as_bytes());
                digest.update([0]);
                digest.update(value.to_string().as_bytes());
                format!("job:{}", hex::encode(digest.finalize()))
            }
        };
        let since = self.period.as_deref().map(|period| duration("unique.period", period)).transpose()?;
        let states = match &self.states {
            None => vec![Status::Queued, Status::Running],
            Some(names) if names.is_empty() => {
                return Err(Problem::unprocessable(
                    "unique.states names no status; leave it out for queued and running",
                ));
            }
            Some(names) => names
                .iter()
                .map(|name| {
                    Status::parse(name).ok_or_else(|| {
                        let known: Vec<&str> = Status::ALL.iter().map(|status| status.as_str()).collect();
                        Problem::unprocessable(format!(
                            "unique.states: unknown status {name:?}; use {}",
                            known.join(", ")
                        ))
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(Unique { key, since: since.map(|period| now.saturating_sub(micros(period))), states })
    }

    fn digest_into(&self, digest: &mut sha2::Sha256) {
        use sha2::Digest as _;
        digest.update(b"unique");
        for field in [self.key.as_deref(), self.period.as_deref()] {
            digest.update(field.unwrap_or("").as_bytes());
            digest.update([0]);
        }
        for state in self.states.iter().flatten() {
            digest.update(state.as_bytes());
            digest.update([0]);
        }
    }
}

/// When a durable job may run: at a time or after a delay, and by when it must have started.
struct Schedule<'a> {
    run_at: Option<&'a str>,
    delay: Option<&'a str>,
    start_by: Option<&'a str>,
    start_within: Option<&'a str>,
}

impl Schedule<'_> {
    fn is_empty(&self) -> bool {
        self.run_at.is_none() && self.delay.is_none() && self.start_by.is_none() && self.start_within.is_none()
    }

    /// When the job is due and when it must have started by, for a job accepted at `now`.
    fn times(&self, now: Micros) -> Result<(Micros, Option<Micros>), Problem> {
        let latest = now.saturating_add(micros(MAX_AHEAD));
        let too_far = |field: &str| {
            Problem::unprocessable(format!("{field} is more than {} ahead", humantime::format_duration(MAX_AHEAD)))
        };
        let run_after = match (&self.run_at, &self.delay) {
            (Some(_), Some(_)) => return Err(Problem::unprocessable("give run_at or delay, not both")),
            (Some(run_at), None) => {
                parse_rfc3339(run_at).map_err(|reason| Problem::unprocessable(format!("run_at: {reason}")))?.max(now)
            }
            (None, Some(delay)) => now.saturating_add(micros(duration("delay", delay)?)),
            (None, None) => now,
        };
        if run_after > latest {
            return Err(too_far(if self.run_at.is_some() { "run_at" } else { "delay" }));
        }
        let start_by = match (&self.start_by, &self.start_within) {
            (Some(_), Some(_)) => return Err(Problem::unprocessable("give start_by or start_within, not both")),
            (Some(start_by), None) => {
                Some(parse_rfc3339(start_by).map_err(|reason| Problem::unprocessable(format!("start_by: {reason}")))?)
            }
            (None, Some(within)) => Some(run_after.saturating_add(micros(duration("start_within", within)?))),
            (None, None) => None,
        };
        if let Some(start_by) = start_by {
            if start_by < run_after {
                return Err(Problem::unprocessable(
                    "start_by is before the job is due: it would expire without ever running",
                ));
            }
            if start_by > latest.saturating_add(micros(MAX_AHEAD)) {
                return Err(too_far("start_by"));
            }
        }
        Ok((run_after, start_by))
    }

    /// The fields as sent, for the request's fingerprint (a replay sends the same text, whatever
    /// times it works out to).
    fn digest_into(&self, digest: &mut sha2::Sha256) {
        use sha2::Digest as _;
        for field in [&self.run_at, &self.delay, &self.start_by, &self.start_within] {
            digest.update(field.unwrap_or("").as_bytes());
            digest.update([0]);
        }
    }
}

/// A duration field, parsed.
fn duration(field: &str, text: &str) -> Result<std::time::Duration, Problem> {
    rampart_common::duration::parse(text).map_err(|reason| Problem::unprocessable(format!("{field}: {reason}")))
}

fn micros(duration: std::time::Duration) -> Micros {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
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
    /// The scheduling fields.
    fn schedule(&self) -> Schedule<'_> {
        Schedule {
            run_at: self.run_at.as_deref(),
            delay: self.delay.as_deref(),
            start_by: self.start_by.as_deref(),
            start_within: self.start_within.as_deref(),
        }
    }

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
        if self.unique.is_some() {
            return Err(Problem::unprocessable("unique applies to durable jobs (POST /api/jobs)"));
        }
        if !self.schedule().is_empty() {
            return Err(Problem::unprocessable(
                "run_at, delay, start_by and start_within apply to durable jobs (POST /api/jobs); /api/process runs a job now",
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
    /// the client sent it. With an idempotency key, the job carries the request's fingerprint.
    /// The job for an authenticated `caller` (its tenant), or for the tenant the body names.
    pub fn into_new_job(
        self,
        body: &Bytes,
        config: &JobsConfig,
        key: Option<String>,
        caller: Option<&str>,
    ) -> Result<NewJob, Problem> {
        check_kind(&self.kind)?;
        let tenant = job_tenant(caller, self.tenant.as_deref())?;
        let created_at = now_micros();
        let schedule = self.schedule();
        let (run_after, start_by) = schedule.times(created_at)?;
        // Digested before the fields move into the job; only a keyed request needs it.
        let digest = key.as_ref().map(|_| {
            let mut digest = sha2::Sha256::default();
            schedule.digest_into(&mut digest);
            if let Some(unique) = &self.unique {
                unique.digest_into(&mut digest);
            }
            digest
        });
        check_timeout(self.timeout_ms)?;
        let max_attempts = self.max_attempts.unwrap_or(config.max_attempts);
        if !(1..=MAX_ATTEMPTS).contains(&max_attempts) {
            return Err(Problem::unprocessable(format!("max_attempts must be 1 to {MAX_ATTEMPTS}")));
        }
        let timeout_ms = self
            .timeout_ms
            .unwrap_or_else(|| u64::try_from(config.default_timeout.as_millis()).unwrap_or(MAX_TIMEOUT_MS));
        let mut job = NewJob {
            id: uuid::Uuid::now_v7().to_string(),
            kind: self.kind.into_owned(),
            payload: self.payload.map_or(Bytes::from_static(b"null"), |raw| body.slice_ref(raw.get().as_bytes())),
            priority: self.priority,
            max_attempts: i32::try_from(max_attempts).unwrap_or(i32::MAX),
            timeout_ms: i64::try_from(timeout_ms).unwrap_or(i64::MAX),
            idempotency_key: key,
            fingerprint: None,
            tenant,
            created_at,
            run_after,
            start_by,
            claim: None,
            unique: None,
            // The request's own trace, which every attempt of the job joins.
            traceparent: rampart_common::logging::tracing_enabled()
                .then(rampart_common::trace_context::current_traceparent)
                .flatten(),
        };
        if let Some(unique) = &self.unique {
            job.unique = Some(unique.unique(&job.kind, &job.payload, created_at)?);
        }
        if let Some(digest) = digest {
            job.fingerprint = Some(fingerprint(&job, digest));
        }
        Ok(job)
    }
}

/// A digest of everything a job's request asks for (kind, payload bytes, priority, time limit,
/// attempts, schedule as written): two requests with the same digest are the same request.
fn fingerprint(job: &NewJob, mut digest: sha2::Sha256) -> String {
    use sha2::Digest as _;
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
        parse_keyed(text, None)
    }

    fn parse_keyed(text: &'static str, key: Option<&str>) -> Result<NewJob, Problem> {
        let body = Bytes::from_static(text.as_bytes());
        let job: JobBody<'_> =
            serde_json::from_slice(&body).map_err(|error| Problem::bad_request(error.to_string()))?;
        job.into_new_job(&body, &JobsConfig::default(), key.map(str::to_owned), None)
    }

    fn fingerprint_of(text: &'static str) -> String {
        parse_keyed(text, Some("k")).unwrap().fingerprint.unwrap()
    }

    const SECOND: i64 = 1_000_000;

    #[test]
    fn schedules_set_when_a_job_is_due_and_when_it_expires() {
        let job = parse(r#"{"kind": "echo"}"#).unwrap();
        assert_eq!((job.run_after, job.start_by), (job.created_at, None), "due at once, never expires");
        let job = parse(r#"{"kind": "echo", "delay": "90s", "start_within": "10s"}"#).unwrap();
        assert_eq!(job.run_after - job.created_at, 90 * SECOND);
        assert_eq!(job.start_by, Some(job.run_after + 10 * SECOND), "start_within counts from when it is due");
        let job =
            parse(r#"{"kind": "echo", "run_at": "2099-01-01T01:00:00+01:00", "start_by": "2099-01-01T00:00:01Z"}"#);
        assert!(job.is_err(), "over a year ahead");
        let job = parse(r#"{"kind": "echo", "run_at": "2020-01-01T00:00:00Z", "start_within": "1m"}"#).unwrap();
        assert_eq!(job.run_after, job.created_at, "a time already past is due now");
        assert_eq!(job.start_by, Some(job.created_at + 60 * SECOND));
    }

    #[test]
    fn schedules_that_cannot_work_are_refused_by_field() {
        for (body, field) in [
            (r#"{"kind": "echo", "run_at": "soon"}"#, "run_at"),
            (r#"{"kind": "echo", "delay": "10"}"#, "delay"),
            (r#"{"kind": "echo", "delay": "1s", "run_at": "2030-01-01T00:00:00Z"}"#, "not both"),
            (r#"{"kind": "echo", "start_by": "2030-01-01T00:00:00Z", "start_within": "1s"}"#, "not both"),
            (r#"{"kind": "echo", "delay": "1h", "start_by": "2020-01-01T00:00:00Z"}"#, "expire without ever running"),
            (r#"{"kind": "echo", "delay": "400 days"}"#, "ahead"),
        ] {
            let problem = parse(body).err().unwrap_or_else(|| panic!("{body} was accepted"));
            assert!(problem.detail().contains(field), "{body}: {}", problem.detail());
        }
    }

    #[test]
    fn the_schedule_as_written_is_part_of_the_fingerprint() {
        let delayed = fingerprint_of(r#"{"kind": "echo", "delay": "1m"}"#);
        assert_eq!(delayed, fingerprint_of(r#"{"kind": "echo", "delay": "1m"}"#), "a replay, a moment later");
        assert_ne!(delayed, fingerprint_of(r#"{"kind": "echo", "delay": "2m"}"#));
        assert_ne!(delayed, fingerprint_of(r#"{"kind": "echo"}"#));
    }

    #[test]
    fn unique_keys_default_to_the_kind_and_the_payload_as_a_value() {
        let unique = |text: &'static str| parse(text).unwrap().unique.unwrap();
        let spaced = unique(r#"{"kind": "echo", "payload": {"a": 1, "b": 2}, "unique": {}}"#);
        let tight = unique(r#"{"kind": "echo", "payload": {"b":2,"a":1}, "unique": {}}"#);
        assert_eq!(spaced.key, tight.key, "spacing and key order make no other job");
        assert_eq!((spaced.since, spaced.states.as_slice()), (None, &[Status::Queued, Status::Running][..]));
        assert_ne!(spaced.key, unique(r#"{"kind": "sleep", "payload": {"a": 1, "b": 2}, "unique": {}}"#).key);
        assert_ne!(spaced.key, unique(r#"{"kind": "echo", "payload": {"a": 2, "b": 2}, "unique": {}}"#).key);
        let keyed =
            parse(r#"{"kind": "echo", "unique": {"key": "nightly", "period": "10m", "states": ["succeeded"]}}"#)
                .unwrap();
        let unique = keyed.unique.unwrap();
        assert_eq!((unique.key.as_str(), unique.states.as_slice()), ("key:nightly", &[Status::Succeeded][..]));
        assert_eq!(unique.since, Some(keyed.created_at - 600 * SECOND));
        for bad in [
            r#"{"kind": "echo", "unique": {"states": []}}"#,
            r#"{"kind": "echo", "unique": {"states": ["zombie"]}}"#,
            r#"{"kind": "echo", "unique": {"period": "soon"}}"#,
            r#"{"kind": "echo", "unique": {"key": ""}}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn jobs_run_now_refuse_schedules() {
        let body = Bytes::from_static(br#"{"kind": "echo", "delay": "1s"}"#);
        let job: JobBody<'_> = serde_json::from_slice(&body).unwrap();
        assert!(job.run_now(&body).is_err());
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
        let echo = fingerprint_of(r#"{"kind": "echo", "payload": 1}"#);
        assert_eq!(echo, fingerprint_of(r#"{"payload": 1, "kind": "echo"}"#));
        for other in [
            r#"{"kind": "echo", "payload": 2}"#,
            r#"{"kind": "sleep", "payload": 1}"#,
            r#"{"kind": "echo", "payload": 1, "priority": "high"}"#,
            r#"{"kind": "echo", "payload": 1, "max_attempts": 1}"#,
        ] {
            assert_ne!(echo, fingerprint_of(other), "{other}");
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
