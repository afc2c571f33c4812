//! The one protection stack every request passes, whether the API answers it or the proxy
//! forwards it: its trace span, its metrics and totals, the rate limit, its deadline and the
//! admission limit of its route, in that order. A new filter is added here, once.

use crate::{
    AppState,
    client::ClientAddr,
    config::AuthMode,
    deadline,
    observe::Recorder,
    problem::{Problem, ProblemCode},
    rate_limit,
};
use axum::{
    body::Body,
    extract::MatchedPath,
    middleware::Next,
    response::{IntoResponse as _, Response},
};
use http::{HeaderValue, Request, StatusCode};
use std::{
    net::IpAddr,
    time::{Duration, Instant},
};
use tracing::Instrument as _;

/// The answer header naming the request's trace.
pub const TRACE_ID_HEADER: &str = "x-trace-id";

/// When a request's time is up: its `Request-Timeout` or its route's default, from when the
/// stack admitted it. Handlers read it from the request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(pub Instant);

/// What the stack needs to know of a request's route.
#[derive(Debug, Clone, Copy)]
pub struct RouteGuard {
    /// The route template or proxy prefix: the metric label, the rate limit and admission key.
    pub route: &'static str,
    /// The default time budget; `None` for routes with no deadline (the probes).
    pub timeout: Option<Duration>,
    /// Whether it asks for a credential.
    pub auth: AuthMode,
    /// Whether it is a proxied route (scoped by `route:PREFIX`) rather than the API.
    pub proxied: bool,
}

/// Whether `identity` may use the route at all (its kinds are checked once the body is read).
fn route_permitted(identity: Option<&crate::auth::Identity>, guard: RouteGuard) -> Result<(), Problem> {
    use crate::auth::scopes::{Family, forbidden};
    let Some(scopes) = identity.and_then(|identity| identity.scopes.as_deref()) else { return Ok(()) };
    if guard.proxied {
        return if scopes.allows_route(guard.route) {
            Ok(())
        } else {
            Err(forbidden(format!("route:{}", guard.route)))
        };
    }
    match Family::of_route(guard.route) {
        Some(family) if !scopes.opens(family) => Err(forbidden(format!("{}:*", family.name()))),
        _ => Ok(()),
    }
}

/// Passes `request` through the stack to `inner`, or answers for it. The request is counted and
/// timed whatever answers it (a 499 if its client goes away first).
pub async fn protect<F>(
    state: &AppState,
    guard: RouteGuard,
    client: Option<IpAddr>,
    mut request: Request<Body>,
    inner: impl FnOnce(Request<Body>) -> F,
) -> Response
where
    F: Future<Output = Response>,
{
    // With trace export off the span costs this one branch.
    let span = rampart_common::logging::tracing_enabled().then(|| request_span(guard.route, &request));
    let trace_id = span.as_ref().and_then(rampart_common::trace_context::trace_id);
    let recorder = Recorder::start(guard.route, request.method());
    let in_flight = state.stats.enter();
    let cors = state.cors.for_route(guard.route);
    let origin = cors.and_then(|_| request.headers().get(http::header::ORIGIN).cloned());
    let mut tenant = None;
    let limited = async {
        // A preflight carries no credentials and is answered here, reaching nothing else.
        if let Some(preflight) = cors.and_then(|cors| cors.preflight(&request)) {
            return preflight;
        }
        // Who is calling comes next: an unauthorized request costs nothing more.
        let identity = match &state.auth {
            Some(auth) => match auth.authenticate(request.headers(), guard.auth).await {
                Ok(identity) => identity,
                Err(refused) => return refused.into_response(),
            },
            None => None,
        };
        if let Err(problem) = route_permitted(identity.as_ref(), guard) {
            return problem.into_response();
        }
        let limits = state.rate_limits.as_deref();
        let gateways = state.jobs.cluster().live();
        let allowed = match rate_limit::decide(limits, Some(guard.route), client, identity.as_ref(), gateways).await {
            rate_limit::Verdict::Refused(response) => return response,
            rate_limit::Verdict::Unlimited => None,
            rate_limit::Verdict::Allowed { scope, quota, decision } => Some((scope, quota, decision)),
        };
        if let Some(default) = guard.timeout {
            match deadline::budget(request.headers(), default, state.config.max_request_timeout) {
                Ok(budget) => request.extensions_mut().insert(Deadline(Instant::now() + budget)),
                Err(problem) => return problem.into_response(),
            };
        }
        if let Some(identity) = identity {
            tenant = Some(identity.label);
            // The request's span, when tracing is on (a no-op otherwise).
            tracing::Span::current().record("tenant", &*identity.tenant);
            request.extensions_mut().insert(identity);
        }
        let mut response = match state.admission.enter(guard.route) {
            Ok(admitted) => {
                let response = inner(request).await;
                drop(admitted);
                response
            }
            Err(limit) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ProblemCode::Overloaded,
                format!("{} has {limit} requests in flight, its limit", guard.route),
            )
            .retry_after(Duration::from_secs(1))
            .into_response(),
        };
        if let Some((scope, quota, decision)) = allowed {
            rate_limit::annotate(response.headers_mut(), scope, quota, &decision);
        }
        response
    };
    let mut response = match &span {
        Some(span) => limited.instrument(span.clone()).await,
        None => limited.await,
    };
    drop(in_flight);
    if let Some(cors) = cors {
        cors.decorate(&mut response, origin.as_ref());
    }
    recorder.finish(response.status());
    if let Some(tenant) = tenant {
        let class = match response.status().as_u16() / 100 {
            1 | 2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        };
        metrics::counter!("rampart_tenant_requests_total", "tenant" => tenant, "class" => class).increment(1);
    }
    state.stats.count_rejection(&response);
    if let Some(span) = span {
        span.record("http.response.status_code", response.status().as_u16());
        span.in_scope(|| tracing::debug!(status = response.status().as_u16(), "request answered"));
    }
    if let Some(value) = trace_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        response.headers_mut().insert(TRACE_ID_HEADER, value);
    }
    response
}

/// A server span for one request, a child of the client's `traceparent` if it sent one.
fn request_span(route: &str, request: &Request<Body>) -> tracing::Span {
    let span = tracing::info_span!(
        "http.request",
        otel.name = %format!("{} {route}", request.method()),
        otel.kind = "server",
        http.request.method = %request.method(),
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
        tenant = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    rampart_common::trace_context::adopt_from_headers(&span, request.headers());
    if let Some(id) = rampart_common::trace_context::trace_id(&span) {
        span.record("trace_id", id.as_str());
    }
    span
}

/// The stack as the API router's middleware, keyed by the matched route template.
pub async fn layer(state: AppState, request: Request<Body>, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |path| rampart_common::metrics::intern(path.as_str()));
    let probe = matches!(route, "/health" | "/ready");
    let auth = if probe {
        AuthMode::None
    } else {
        state.config.auth.as_ref().map_or(AuthMode::None, |auth| auth.mode_for(route))
    };
    let guard = RouteGuard { route, timeout: (!probe).then_some(state.config.request_timeout), auth, proxied: false };
    let client = request.extensions().get::<ClientAddr>().map(|client| client.0);
    protect(&state, guard, client, request, |request| next.run(request)).await
}
