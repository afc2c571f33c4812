//! The reverse proxy for `[[routes]]` (the article's load balancer): requests whose path starts
//! with a route's prefix go to one of its plain-HTTP upstreams, with streaming bodies, pooled
//! keep-alive connections, hop-by-hop headers stripped and `X-Forwarded-*` set, balanced, health
//! checked and guarded by breakers like the workers.

pub mod client;
mod headers;
pub mod lean;
pub mod matching;
pub mod mirror;
pub mod rewrite;
pub mod upgrade;

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
    websocket: crate::config::WebSocketConfig,
    /// What a request must be, besides under the prefix.
    matching: matching::RouteMatch,
    /// What changes on the way.
    rewrite: rewrite::Rewrite,
    /// The shadow that gets copies, if any.
    mirror: Option<mirror::Mirror>,
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

    /// Whether its answers' fields change (then the lean path leaves its requests to hyper).
    pub fn changes_answers(&self) -> bool {
        self.rewrite.changes_answers()
    }

    /// What the protection stack needs to know of it.
    fn guard(&self) -> RouteGuard {
        RouteGuard { route: self.label, timeout: Some(self.timeout), auth: self.auth, proxied: true }
    }
}

/// Every proxied prefix, longest first.
#[derive(Debug, Default)]
pub struct Routes {
    routes: Vec<Route>,
}

impl Routes {
    /// The routes `config` describes. A route of `previous` (its config and routes) under the
    /// same prefix, balanced and guarded alike, lends its endpoint set, so endpoints that stay
    /// keep their health, breakers and latency; other sets start empty, for discovery to fill.
    pub fn new(config: &GatewayConfig, previous: Option<(&GatewayConfig, &Self)>) -> Self {
        let kept_set = |route: &crate::config::RouteConfig| {
            let (before, routes) = previous?;
            let guarded_alike = before.outlier == config.outlier && before.breaker == config.breaker;
            let same = before.routes.iter().any(|old| old.prefix == route.prefix && old.balance == route.balance);
            let kept = routes.routes.iter().find(|old| old.prefix == route.prefix)?;
            (guarded_alike && same).then(|| Arc::clone(&kept.set))
        };
        let mut routes: Vec<Route> = config
            .routes
            .iter()
            .map(|route| {
                let (label, timeout) =
                    (rampart_common::metrics::intern(&route.prefix), route.timeout.unwrap_or(config.request_timeout));
                Route {
                    prefix: route.prefix.clone(),
                    label,
                    set: kept_set(route).unwrap_or_else(|| {
                        Arc::new(EndpointSet::new(&route.prefix, route.balance, &config.outlier, &config.breaker))
                    }),
                    specs: route.upstreams.iter().map(|entry| Source::parse(entry.url())).collect(),
                    timeout,
                    auth: route.auth.or(config.auth.as_ref().map(|auth| auth.default)).unwrap_or(AuthMode::None),
                    websocket: route.websocket.clone(),
                    // Both were checked when the configuration was read.
                    matching: matching::RouteMatch::new(route).unwrap_or_default(),
                    rewrite: rewrite::Rewrite::new(route).unwrap_or_default(),
                    mirror: route.mirror.as_ref().and_then(|mirror| mirror::Mirror::new(mirror, label, timeout).ok()),
                }
            })
            .collect();
        for (route, config) in routes.iter().zip(&config.routes) {
            route.set.set_weights(weights_of(&config.upstreams));
        }
        // The longest prefix first; on one prefix, the route with more conditions first.
        routes.sort_by_key(|route| std::cmp::Reverse((route.prefix.len(), route.matching.conditions())));
        Self { routes }
    }

    /// The route serving `request` (its path in normal form): the longest prefix its path lies
    /// under, on a segment boundary (`/raw` serves `/raw/x`, never `/rawfoo`), whose host,
    /// method and field conditions it meets.
    pub fn find<B>(&self, request: &Request<B>) -> Option<&Route> {
        let path = request.uri().path();
        self.routes
            .iter()
            .find(|route| crate::path::under_prefix(path, &route.prefix) && route.matching.matches(request))
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

/// The weight of each upstream when any has one (those without weigh 1); none otherwise.
fn weights_of(entries: &[crate::config::UpstreamEntry]) -> Vec<(String, u32)> {
    if entries.iter().all(|entry| entry.weight().is_none()) {
        return Vec::new();
    }
    entries.iter().map(|entry| (entry.url().trim_end_matches('/').to_owned(), entry.weight().unwrap_or(1))).collect()
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
    protect(state, route.guard(), Some(client.0), request, |request| {
        forward_inner(state, route, request, peer, progress)
    })
    .await
}

/// Proxies one plain request (HTTP/1.1, no body) on `route` for the lean path: the same stack
/// and call loop as [`forward`], over this thread's [`lean::Pool`]. An upstream's answer comes
/// back as a [`lean::RawAnswer`] in the response's extensions, for the lean path to pass on.
pub async fn forward_lean(
    state: &AppState,
    route: &Route,
    request: Request<Body>,
    peer: &Peer,
    client: ClientAddr,
) -> Response {
    protect(state, route.guard(), Some(client.0), request, |request| forward_lean_inner(state, route, request, peer))
        .await
}

/// Makes a request's `parts` the ones sent upstream, and says when its time is up: its
/// deadline from the stack, hop-by-hop fields gone, HTTP/1.1, `X-Forwarded-*` set.
fn for_upstream(state: &AppState, route: &Route, parts: &mut Parts, peer: &Peer) -> Instant {
    let deadline = parts.extensions.remove::<Deadline>().map_or_else(|| Instant::now() + route.timeout, |at| at.0);
    headers::strip_hop_by_hop(&mut parts.headers);
    headers::for_upstream_hop(parts);
    // Behind a trusted proxy the chain so far is believed and extended; from anyone else it is
    // the client's own say-so, replaced by the address the gateway saw.
    let chained = state.trusted_proxies.trusts(peer.address.ip());
    headers::add_forwarded(&mut parts.headers, peer, chained);
    route.rewrite.request(parts);
    if let Some(mirror) = &route.mirror
        && bodiless(parts)
    {
        mirror.copy(state.http(), parts);
    }
    deadline
}

async fn forward_lean_inner(state: &AppState, route: &Route, request: Request<Body>, peer: &Peer) -> Response {
    let (mut parts, _) = request.into_parts();
    let deadline = for_upstream(state, route, &mut parts, peer);
    let mut upstreams = LeanUpstreams {
        pool: state.upstream_pool(),
        retryable: route.set.snapshot().len() > 1,
        idempotent: parts.method.is_idempotent(),
        head_request: parts.method == http::Method::HEAD,
        parts,
        prefix: &route.prefix,
    };
    let answered = call::call(&route.set, &mut upstreams, deadline, Retries::each_endpoint_once()).await;
    answered.unwrap_or_else(|problem| problem)
}

/// One lean request's calls to the upstreams of its route.
struct LeanUpstreams<'a> {
    pool: &'a lean::Pool,
    parts: Parts,
    /// Whether the request can be sent again if an upstream cannot be reached (there is another).
    retryable: bool,
    /// Whether it may be repeated on a fresh connection when a kept-alive one turns out closed.
    idempotent: bool,
    head_request: bool,
    prefix: &'a str,
}

impl Transport for LeanUpstreams<'_> {
    type Request = Vec<u8>;
    type Sent = Result<lean::upstream::Answer, lean::upstream::SendError>;
    type Answer = Response;
    type Error = Response;

    fn request(&mut self, upstream: &Endpoint) -> Result<Vec<u8>, Response> {
        headers::encode_request_head(&self.parts, upstream.authority())
            .map_err(|detail| problem(StatusCode::BAD_GATEWAY, ProblemCode::UpstreamFailed, detail))
    }

    fn send(
        &self,
        upstream: &Arc<Endpoint>,
        head: Vec<u8>,
        _remaining: Duration,
    ) -> impl Future<Output = Self::Sent> + Send {
        let (pool, head_request, idempotent) = (self.pool, self.head_request, self.idempotent);
        let upstream = Arc::clone(upstream);
        async move { pool.send(&upstream, &head, head_request, idempotent).await }
    }

    fn classify(&self, upstream: &Arc<Endpoint>, sent: Option<Self::Sent>, _: Instant) -> Verdict<Response, Response> {
        use lean::upstream::SendError;
        match sent {
            None => Verdict::EndpointFailure { outcome: Err(upstream_timeout()), pushback: None, retry: None },
            Some(Ok(answer)) => {
                let status = answer.status;
                let pushback = answer.retry_after;
                let mut response = Response::new(Body::empty());
                *response.status_mut() = status;
                response.extensions_mut().insert(lean::RawAnswer(Arc::new(std::sync::Mutex::new(Some(answer)))));
                if upstream_refused(status) {
                    Verdict::EndpointFailure { outcome: Ok(response), pushback, retry: None }
                } else {
                    Verdict::Answer(Ok(response))
                }
            }
            Some(Err(SendError::Connect(error))) => {
                let error_answer =
                    if self.retryable { self.unavailable(None) } else { upstream_failed(upstream, &error) };
                Verdict::NeverReached {
                    error: error_answer,
                    blame: true,
                    retry: self.retryable,
                    reason: error.to_string(),
                }
            }
            Some(Err(error)) => Verdict::EndpointFailure {
                outcome: Err(upstream_failed(upstream, &error)),
                pushback: None,
                retry: None,
            },
        }
    }

    fn unavailable(&self, breaker_open: Option<Duration>) -> Response {
        unavailable(self.prefix, breaker_open)
    }

    fn deadline_passed(&self) -> Response {
        deadline_passed()
    }
}

/// Whether an upstream's answer with `status` says it failed or is overloaded (it counts
/// against it, and its `Retry-After` keeps calls away).
pub(crate) fn upstream_refused(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 502 | 503 | 504)
}

fn upstream_timeout() -> Response {
    problem(StatusCode::GATEWAY_TIMEOUT, ProblemCode::DeadlineExceeded, "the upstream did not answer in time")
}

fn upstream_failed(upstream: &Endpoint, error: &dyn std::fmt::Display) -> Response {
    problem(
        StatusCode::BAD_GATEWAY,
        ProblemCode::UpstreamFailed,
        format!("upstream {} failed: {error}", upstream.url()),
    )
}

fn deadline_passed() -> Response {
    problem(StatusCode::GATEWAY_TIMEOUT, ProblemCode::DeadlineExceeded, "the request's deadline passed")
}

/// The answer when no upstream of the route under `prefix` can take a call.
fn unavailable(prefix: &str, breaker_open: Option<Duration>) -> Response {
    match breaker_open {
        Some(after) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ProblemCode::BreakerOpen,
            format!("the circuit breaker of every upstream of {prefix} is open"),
        )
        .retry_after(after)
        .into_response(),
        None => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ProblemCode::NoHealthyBackend,
            format!("no upstream of {prefix} is reachable"),
        )
        .retry_after(Duration::from_secs(1))
        .into_response(),
    }
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

/// Sends an `Upgrade` request (its `Connection` and `Upgrade` fields restored after the hop's
/// own are stripped) to an upstream of `route` and answers as it does; a `101` keeps the
/// upstream's upgrade in its extensions for [`upgrade`] to take.
async fn forward_upgrade_inner(state: &AppState, route: &Route, request: Request<Body>, peer: &Peer) -> Response {
    let protocol = request.headers().get(header::UPGRADE).cloned();
    let (mut parts, body) = request.into_parts();
    let deadline = for_upstream(state, route, &mut parts, peer);
    if let Some(protocol) = protocol {
        upgrade::mark(&mut parts.headers, protocol);
    }
    // Nothing is sent before the upstream is reached, so another may be tried.
    let retryable = route.set.snapshot().len() > 1;
    let mut upstreams = Upstreams {
        http: state.http(),
        parts,
        body: Some(body),
        retryable,
        progress: None,
        prefix: &route.prefix,
        rewrite: &route.rewrite,
    };
    let answered = call::call(&route.set, &mut upstreams, deadline, Retries::each_endpoint_once()).await;
    answered.unwrap_or_else(|problem| problem)
}

async fn forward_inner(
    state: &AppState,
    route: &Route,
    request: Request<Body>,
    peer: &Peer,
    progress: Option<&BodyProgress>,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let deadline = for_upstream(state, route, &mut parts, peer);
    // A request without a body can be sent again if the first upstream cannot be reached; that
    // needs a copy, worth making only when there is another upstream to try.
    let retryable = bodiless(&parts) && route.set.snapshot().len() > 1;
    let mut upstreams = Upstreams {
        http: state.http(),
        parts,
        body: Some(body),
        retryable,
        progress,
        prefix: &route.prefix,
        rewrite: &route.rewrite,
    };
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
    /// The route's changes, for the answer's fields.
    rewrite: &'a rewrite::Rewrite,
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
            None => Verdict::EndpointFailure { outcome: Err(upstream_timeout()), pushback: None, retry: None },
            Some(Ok(answer)) => {
                let status = answer.status();
                let failed = upstream_refused(status);
                let pushback = if failed { retry_after(answer.headers()) } else { None };
                let (mut answer_parts, answer_body) = answer.into_parts();
                let switched = (status == StatusCode::SWITCHING_PROTOCOLS)
                    .then(|| answer_parts.headers.get(header::UPGRADE).cloned())
                    .flatten();
                headers::strip_hop_by_hop(&mut answer_parts.headers);
                // A switch of protocols keeps what it switched to (the connection is then the
                // upgrade's, see [`upgrade`]).
                if let Some(protocol) = switched {
                    upgrade::mark(&mut answer_parts.headers, protocol);
                }
                self.rewrite.response(&mut answer_parts.headers);
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
                let failed = upstream_failed(upstream, &error);
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
        unavailable(self.prefix, breaker_open)
    }

    fn deadline_passed(&self) -> Response {
        deadline_passed()
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
    retry_after_value(headers.get(header::RETRY_AFTER)?.as_bytes())
}

/// A `Retry-After` value given in seconds, as pushback (at most five minutes).
pub(crate) fn retry_after_value(value: &[u8]) -> Option<Duration> {
    let seconds: u64 = std::str::from_utf8(value).ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds.min(300)))
}
