//! Traces of API requests, when trace export is on: a server span per request (a child of the
//! client's `traceparent`, if it sent one), its trace id in the `X-Trace-Id` answer header and
//! in the log lines written while it runs. With export off this adds one branch per request.

use axum::{
    extract::{MatchedPath, Request},
    middleware::Next,
    response::Response,
};
use http::HeaderValue;
use tracing::Instrument as _;

/// The answer header naming the request's trace.
pub const TRACE_ID_HEADER: &str = "x-trace-id";

/// Middleware: runs the request inside its span.
pub async fn trace(request: Request, next: Next) -> Response {
    if !rampart_common::logging::tracing_enabled() {
        return next.run(request).await;
    }
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |path| path.as_str()).to_owned();
    let span = tracing::info_span!(
        "http.request",
        otel.name = %format!("{} {route}", request.method()),
        otel.kind = "server",
        http.request.method = %request.method(),
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    rampart_common::trace_context::adopt_from_headers(&span, request.headers());
    let trace_id = rampart_common::trace_context::trace_id(&span);
    if let Some(id) = &trace_id {
        span.record("trace_id", id.as_str());
    }
    let mut response = next.run(request).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    span.in_scope(|| tracing::debug!(status = response.status().as_u16(), "request answered"));
    if let Some(value) = trace_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        response.headers_mut().insert(TRACE_ID_HEADER, value);
    }
    response
}
