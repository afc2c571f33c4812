//! Error answers as RFC 9457 problem details (`application/problem+json`), each with a stable
//! machine-readable `code`.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Map, Value};
use std::time::Duration;

/// The stable error codes a client can match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemCode {
    /// The request is malformed or its fields have the wrong shape (400, 415, 422).
    InvalidRequest,
    /// The body is over the configured limit (413).
    PayloadTooLarge,
    /// No worker runs the requested job kind (422).
    UnknownKind,
    /// The job ran and failed by its own logic (422).
    JobFailed,
    /// Every worker that could take the job is full (503, `Retry-After`).
    Overloaded,
    /// No worker is reachable (503, `Retry-After`).
    NoHealthyBackend,
    /// The worker failed during the call, so the job's fate is unknown (502).
    WorkerFailed,
    /// A proxied upstream failed or answered nothing usable (502).
    UpstreamFailed,
    /// The request's time budget ran out (504).
    DeadlineExceeded,
    /// The request carries no valid credential where one is required (401,
    /// `WWW-Authenticate`).
    Unauthorized,
    /// The request is not allowed from where it comes (403).
    Forbidden,
    /// The client is over its rate limit, or the gateway over its global one (429,
    /// `Retry-After`, `RateLimit`, `RateLimit-Policy`).
    RateLimited,
    /// The cluster's rate limits live in Redis, which cannot be reached, and the limits are
    /// configured to fail closed (503, `Retry-After`).
    RateLimitUnavailable,
    /// Every endpoint that could take the job has an open circuit breaker (503, `Retry-After`).
    BreakerOpen,
    /// No route matches the path (404).
    NotFound,
    /// The route exists but not for this method (405).
    MethodNotAllowed,
    /// No job has this id (404).
    JobNotFound,
    /// The job already ended, so it cannot be cancelled (409).
    JobFinished,
    /// The job is queued, running or succeeded, so it cannot be retried (409).
    JobNotRetryable,
    /// The job store failed; nothing was accepted or changed (503, `Retry-After`).
    StoreUnavailable,
    /// The client sent its request body too slowly, or not at all within the time allowed (408).
    RequestTimeout,
    /// An `Idempotency-Key` already named a different request (422).
    IdempotencyKeyReused,
    /// The request target is longer than the gateway reads (414).
    UriTooLong,
    /// A configuration reloaded is refused; the one in force stays.
    ConfigInvalid,
}

impl ProblemCode {
    /// The code as it appears in the `code` member.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnknownKind => "unknown_kind",
            Self::JobFailed => "job_failed",
            Self::Overloaded => "overloaded",
            Self::NoHealthyBackend => "no_healthy_backend",
            Self::WorkerFailed => "worker_failed",
            Self::UpstreamFailed => "upstream_failed",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::RateLimited => "rate_limited",
            Self::RateLimitUnavailable => "rate_limit_unavailable",
            Self::BreakerOpen => "breaker_open",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::JobNotFound => "job_not_found",
            Self::JobFinished => "job_finished",
            Self::JobNotRetryable => "job_not_retryable",
            Self::StoreUnavailable => "store_unavailable",
            Self::RequestTimeout => "request_timeout",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::UriTooLong => "uri_too_long",
            Self::ConfigInvalid => "config_invalid",
        }
    }

    /// The `reason` label when this problem is a load-shedding rejection, the bounded set the
    /// `rampart_rejections_total` metric counts.
    pub fn rejection_reason(self) -> Option<&'static str> {
        match self {
            Self::Unauthorized => Some("unauthorized"),
            Self::Forbidden => Some("forbidden"),
            Self::RateLimited => Some("rate_limited"),
            Self::RateLimitUnavailable => Some("rate_limit_unavailable"),
            Self::Overloaded => Some("overloaded"),
            Self::BreakerOpen => Some("breaker_open"),
            Self::DeadlineExceeded => Some("deadline"),
            Self::NoHealthyBackend => Some("no_healthy_backend"),
            _ => None,
        }
    }

    /// A short, fixed summary of the problem type.
    fn title(self) -> &'static str {
        match self {
            Self::InvalidRequest => "The request is invalid",
            Self::PayloadTooLarge => "The request body is too large",
            Self::UnknownKind => "No worker runs this job kind",
            Self::JobFailed => "The job failed",
            Self::Overloaded => "The workers are overloaded",
            Self::NoHealthyBackend => "No worker is available",
            Self::WorkerFailed => "The worker failed during the call",
            Self::UpstreamFailed => "The upstream failed",
            Self::DeadlineExceeded => "The request ran out of time",
            Self::Unauthorized => "Unauthorized",
            Self::Forbidden => "Forbidden",
            Self::RateLimited => "Too many requests",
            Self::RateLimitUnavailable => "The rate limits cannot be checked",
            Self::BreakerOpen => "Circuit breakers are open",
            Self::NotFound => "No such route",
            Self::MethodNotAllowed => "Method not allowed on this route",
            Self::JobNotFound => "No such job",
            Self::JobFinished => "The job has already ended",
            Self::JobNotRetryable => "The job cannot be retried",
            Self::StoreUnavailable => "The job store is unavailable",
            Self::RequestTimeout => "The request took too long to arrive",
            Self::IdempotencyKeyReused => "The idempotency key was used for another request",
            Self::UriTooLong => "The URI is too long",
            Self::ConfigInvalid => "The configuration is invalid",
        }
    }
}

/// A problem-details answer under construction.
#[derive(Debug)]
pub struct Problem {
    status: StatusCode,
    code: ProblemCode,
    detail: String,
    extensions: Map<String, Value>,
    retry_after: Option<Duration>,
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl Problem {
    /// A problem with the given status, code and human-readable detail.
    pub fn new(status: StatusCode, code: ProblemCode, detail: impl Into<String>) -> Self {
        Self { status, code, detail: detail.into(), extensions: Map::new(), retry_after: None, headers: Vec::new() }
    }

    /// A 400 `invalid_request`.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ProblemCode::InvalidRequest, detail)
    }

    /// A 422 `invalid_request`: well-formed, but the fields are wrong.
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, ProblemCode::InvalidRequest, detail)
    }

    /// Adds a member to the problem document, for example the job id.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extensions.insert(key.to_owned(), value.into());
        self
    }

    /// Sends `Retry-After`, rounded up to whole seconds (at least one).
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// Sends an extra header with the answer.
    pub fn header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code.
    pub fn code(&self) -> ProblemCode {
        self.code
    }

    /// The human-readable detail.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

/// Whole seconds for `Retry-After`, rounded up so a client never comes back too early.
pub fn retry_after_seconds(after: Duration) -> u64 {
    after.as_secs() + u64::from(after.subsec_nanos() > 0)
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = rampart_common::http::problem::document(
            self.status,
            self.code.as_str(),
            self.code.title(),
            &self.detail,
            &self.extensions,
        );
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(rampart_common::http::problem::CONTENT_TYPE));
        if let Some(after) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_seconds(after).max(1)));
        }
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        // Lets the metrics layer count rejections by reason without parsing the body.
        response.extensions_mut().insert(self.code);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    #[tokio::test]
    async fn renders_rfc9457_with_code_and_retry_after() {
        let response = Problem::new(StatusCode::SERVICE_UNAVAILABLE, ProblemCode::Overloaded, "all full")
            .with("job_id", "j1")
            .retry_after(Duration::from_millis(1500))
            .into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/problem+json");
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let document: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(document["code"], "overloaded");
        assert_eq!(document["status"], 503);
        assert_eq!(document["detail"], "all full");
        assert_eq!(document["job_id"], "j1");
        assert_eq!(document["type"], "urn:rampart:problem:overloaded");
    }
}
