//! The reverse proxy for `[[routes]]` (the article's load balancer): requests whose path starts
//! with a route's prefix go to one of its plain-HTTP upstreams, with streaming bodies, pooled
//! keep-alive connections, hop-by-hop headers stripped and `X-Forwarded-*` set, balanced, health
//! checked and guarded by breakers like the workers.

pub mod client;
mod headers;

pub use headers::X_FORWARDED_FOR;

use crate::{
    AppState,
    client::{ClientAddr, Peer},
    client_body::{BodyProgress, ClientFault},
    config::{AuthMode, GatewayConfig},
    problem::{Problem, ProblemCode},
    protect::{Deadline, RouteGuard, protect},
};
use axum::{
    body::Body,
    response::{IntoResponse, Response},
};
use client::HttpClient;
use http::{Request, StatusCode, Uri, header, request::Parts};
use rampart_balance::{
    call::{self, Retries, Transport, Verdict},
    discovery::Source,
    endpoint::Endpoint,
    set::EndpointSet,
};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

/// One proxied prefix.
#[derive(Debug)]
pub struct Route {
    prefix: String,
    /// The prefix as a `'static` metric label.
    label: &'static str,
    set: Arc<EndpointSet>,
    specs: Vec<Source>,
    timeout: Duration,
    auth: AuthMode,
}

impl Route {
    /// The path prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The upstreams.
    pub fn set(&self) -> &Arc<EndpointSet> {
        &self.set
    }

    /// Where the upstreams come from.
    pub fn specs(&self) -> &[Source] {
        &self.specs
    }
}

/// Every proxied prefix, longest first.
#[derive(Debug, Default)]
pub struct Routes {
    routes: Vec<Route>,
}

impl Routes {
    /// The routes `config` describes, with no upstreams yet: discovery fills them.
    pub fn new(config: &GatewayConfig) -> Self {
        let mut routes: Vec<Route> = config
            .routes
            .iter()
            .map(|route| Route {
                prefix: route.prefix.clone(),
                label: rampart_common::metrics::intern(&route.prefix),
                set: Arc::new(EndpointSet::new(&route.prefix, route.balance, &config.outlier, &config.breaker)),
                specs: route.upstreams.iter().map(|url| Source::parse(url)).collect(),
                timeout: route.timeout.unwrap_or(config.request_timeout),
                auth: route.auth.or(config.auth.as_ref().map(|auth| auth.default)).unwrap_or(AuthMode::None),
            })
            .collect();
        routes.sort_by_key(|route| std::cmp::Reverse(route.prefix.len()));
        Self { routes }
    }

    /// The route serving `path` (in normal form): the longest prefix it lies under, on a
    /// segment boundary (`/raw` serves `/raw/x`, never `/rawfoo`).
    pub fn find(&self, path: &str) -> Option<&Route> {
        self.routes.iter().find(|route| crate::path::under_prefix(path, &route.prefix))
    }

    /// Every route.
    pub fn all(&self) -> &[Route] {
        &self.routes
    }

    /// Each route with its upstreams, for the admin pages.
    pub fn views(&self) -> serde_json::Value {
        let views = self
            .routes
            .iter()
            .map(|route| serde_json::json!({ "prefix": route.prefix(), "upstreams": route.set().views() }));
        serde_json::Value::Array(views.collect())
    }
}

/// Whether a request has no body, so it can be sent again to another upstream.
fn bodiless(parts: &Parts) -> bool {
    let declared_empty = parts.headers.get(header::CONTENT_LENGTH).is_none_or(|length| length.as_bytes() == b"0");
    declared_empty && !parts.headers.contains_key(header::TRANSFER_ENCODING)
}

fn problem(status: StatusCode, code: ProblemCode, detail: impl Into<String>) -> Response {
    Problem::new(status, code, detail).into_response()
}

/// Proxies one request on `route` and answers with the upstream's response, or a problem.
/// `client` is who sent it (see [`ClientAddr`]); `progress`, for a request with a body, tells
/// whether a failed call was the client's doing (its body stalled, was cut off or malformed).
pub async fn forward(
    state: &AppState,
    route: &Route,
    request: Request<Body>,
    peer: &Peer,
    client: ClientAddr,
    progress: Option<&BodyProgress>,
) -> Response {
    let guard = RouteGuard { route: route.label, timeout: Some(route.timeout), auth: route.auth, proxied: true };
    protect(state, guard, Some(client.0), request, |request| forward_inner(state, route, request, peer, progress)).await
}

/// The answer for a call that failed because of the client, not the upstream; it counts
/// against nobody.
fn client_fault(fault: ClientFault) -> Response {
    let code = if fault.status() == StatusCode::REQUEST_TIMEOUT {
        ProblemCode::RequestTimeout
    } else {
        ProblemCode::InvalidRequest
    };
    problem(fault.status(), code, fault.detail())
}

/// The client's fault behind an upstream call that failed before the deadline, if it was one:
/// the body failed (too slow, cut off, malformed). A body still arriving when the call failed
/// says nothing against the client.
fn fault_of(progress: Option<&BodyProgress>) -> Option<ClientFault> {
    progress.and_then(BodyProgress::fault).filter(|fault| *fault != ClientFault::StillArriving)
}

/// `Via` (RFC 9110 §7.6.3) on the proxied answers the connection layer could otherwise take for
/// hyper's own error answers.
const VIA: http::HeaderValue = http::HeaderValue::from_static("1.1 rampart");

async fn forward_inner(
    state: &AppState,
    route: &Route,
    request: Request<Body>,
    peer: &Peer,
    progress: Option<&BodyProgress>,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let deadline = parts.extensions.remove::<Deadline>().map_or_else(|| Instant::now() + route.timeout, |at| at.0);
    headers::strip_hop_by_hop(&mut parts.headers);
    // Behind a trusted proxy the chain so far is believed and extended; from anyone else it is
    // the client's own say-so, replaced by the address the gateway saw.
    let chained = state.trusted_proxies.trusts(peer.address.ip());
    headers::add_forwarded(&mut parts.headers, peer, chained);
    // A request without a body can be sent again if the first upstream cannot be reached; that
    // needs a copy, worth making only when there is another upstream to try.
    let retryable = bodiless(&parts) && route.set.snapshot().len() > 1;
    let mut upstreams =
        Upstreams { http: &state.http, parts, body: Some(body), retryable, progress, prefix: &route.prefix };
    let answered = call::call(&route.set, &mut upstreams, deadline, Retries::each_endpoint_once()).await;
    answered.unwrap_or_else(|problem| problem)
}

/// One proxied request's calls to the upstreams of its route.
struct Upstreams<'a> {
    http: &'a HttpClient,
    parts: Parts,
    /// The body, until the first attempt takes it.
    body: Option<Body>,
    /// Whether the request can be sent again (it has no body, and there is another upstream).
    retryable: bool,
    progress: Option<&'a BodyProgress>,
    prefix: &'a str,
}

impl Transport for Upstreams<'_> {
    type Request = Request<Body>;
    type Sent = Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error>;
    type Answer = Response;
    type Error = Response;

    fn request(&mut self, upstream: &Endpoint) -> Result<Request<Body>, Response> {
        let body = match self.body.take() {
            Some(body) => body,
            None if self.retryable => Body::empty(),
            None => return Err(problem(StatusCode::BAD_GATEWAY, ProblemCode::UpstreamFailed, "the upstream failed")),
        };
        let uri = upstream_uri(upstream, &self.parts.uri)
            .map_err(|detail| problem(StatusCode::BAD_GATEWAY, ProblemCode::UpstreamFailed, detail))?;
        let mut parts =
            if self.retryable { clone_parts(&self.parts) } else { std::mem::replace(&mut self.parts, empty_parts()) };
        parts.uri = uri;
        Ok(Request::from_parts(parts, body))
    }

    fn send(
        &self,
        _upstream: &Arc<Endpoint>,
        request: Request<Body>,
        _remaining: Duration,
    ) -> impl Future<Output = Self::Sent> + Send {
        self.http.request(request)
    }

    fn classify(&self, upstream: &Arc<Endpoint>, sent: Option<Self::Sent>, _: Instant) -> Verdict<Response, Response> {
        match sent {
            // The time ran out while the client was still sending: its fault, not the upstream's.
            None if self.progress.and_then(BodyProgress::fault).is_some() => {
                Verdict::Blameless(Err(client_fault(ClientFault::StillArriving)))
            }
            None => Verdict::EndpointFailure {
                outcome: Err(problem(
                    StatusCode::GATEWAY_TIMEOUT,
                    ProblemCode::DeadlineExceeded,
                    "the upstream did not answer in time",
                )),
                pushback: None,
                retry: None,
            },
            Some(Ok(answer)) => {
                let status = answer.status();
                let failed = matches!(status.as_u16(), 429 | 502 | 503 | 504);
                let pushback = if failed { retry_after(answer.headers()) } else { None };
                let (mut answer_parts, answer_body) = answer.into_parts();
                headers::strip_hop_by_hop(&mut answer_parts.headers);
                // An empty 4xx with nothing but a length and a date would look like one of
                // hyper's own error answers to the connection layer, which rewrites those: the
                // `Via` marks it as the upstream's.
                if matches!(status.as_u16(), 400 | 408 | 414 | 431) {
                    answer_parts.headers.append(header::VIA, VIA);
                }
                let response = Response::from_parts(answer_parts, Body::new(answer_body));
                if failed {
                    Verdict::EndpointFailure { outcome: Ok(response), pushback, retry: None }
                } else {
                    Verdict::Answer(Ok(response))
                }
            }
            Some(Err(error)) => {
                if let Some(fault) = fault_of(self.progress) {
                    return Verdict::Blameless(Err(client_fault(fault)));
                }
                let failed = problem(
                    StatusCode::BAD_GATEWAY,
                    ProblemCode::UpstreamFailed,
                    format!("upstream {} failed: {error}", upstream.url()),
                );
                if !error.is_connect() {
                    return Verdict::EndpointFailure { outcome: Err(failed), pushback: None, retry: None };
                }
                // Once every upstream is tried the answer is that none is reachable.
                let error_answer = if self.retryable { self.unavailable(None) } else { failed };
                Verdict::NeverReached {
                    error: error_answer,
                    blame: true,
                    retry: self.retryable,
                    reason: error.to_string(),
                }
            }
        }
    }

    fn unavailable(&self, breaker_open: Option<Duration>) -> Response {
        match breaker_open {
            Some(after) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ProblemCode::BreakerOpen,
                format!("the circuit breaker of every upstream of {} is open", self.prefix),
            )
            .retry_after(after)
            .into_response(),
            None => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ProblemCode::NoHealthyBackend,
                format!("no upstream of {} is reachable", self.prefix),
            )
            .retry_after(Duration::from_secs(1))
            .into_response(),
        }
    }

    fn deadline_passed(&self) -> Response {
        problem(StatusCode::GATEWAY_TIMEOUT, ProblemCode::DeadlineExceeded, "the request's deadline passed")
    }
}

/// The upstream's URL for the request's path and query, assembled from parsed parts.
fn upstream_uri(upstream: &Endpoint, original: &Uri) -> Result<Uri, String> {
    let Some(authority) = upstream.authority() else {
        return Err(format!("upstream {} has no address", upstream.url()));
    };
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(http::uri::Scheme::HTTP);
    parts.authority = Some(authority.clone());
    parts.path_and_query =
        Some(original.path_and_query().cloned().unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")));
    Uri::from_parts(parts).map_err(|error| format!("cannot build the upstream URL: {error}"))
}

/// The parts of a request, copied, for sending it again to another upstream.
fn clone_parts(parts: &Parts) -> Parts {
    let mut request = Request::builder().method(parts.method.clone()).uri(parts.uri.clone()).version(parts.version);
    if let Some(headers) = request.headers_mut() {
        headers.clone_from(&parts.headers);
    }
    request.body(()).map(|request| request.into_parts().0).unwrap_or_else(|_| empty_parts())
}

fn empty_parts() -> Parts {
    Request::new(()).into_parts().0
}

/// A `Retry-After` given in seconds.
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds.min(300)))
}
