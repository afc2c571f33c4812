//! What the gateway tells its operators: request metrics by route template, method and status;
//! rejections by reason; per-endpoint gauges; and the article's JSON summary.

use crate::{AppState, problem::ProblemCode};
use axum::{
    Json,
    response::{IntoResponse, Response},
};
use http::{HeaderValue, Method, header};
use rampart_common::metrics::intern;
use serde_json::{Value, json};
use std::{
    collections::BTreeMap,
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::Instant,
};

/// Running totals for `/metrics.json`, kept beside the Prometheus metrics so the summary needs
/// no parsing of them.
pub struct Stats {
    started: Instant,
    requests: AtomicU64,
    in_flight: AtomicI64,
    rejections: Mutex<BTreeMap<&'static str, u64>>,
}

impl Stats {
    /// Totals starting now.
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            requests: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
            rejections: Mutex::new(BTreeMap::new()),
        }
    }

    /// When the gateway started.
    pub fn started(&self) -> Instant {
        self.started
    }
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

/// A request counted in flight; keeps the count right even when its future is dropped mid-way.
pub struct RequestInFlight<'a>(&'a AtomicI64);

impl Drop for RequestInFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The method as a bounded metric label.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// A request series (route label address, method label address, status) and its handles.
type SeriesHandles = ((usize, usize, u16), metrics::Counter, metrics::Histogram);

thread_local! {
    /// Metric handles by (route, method, status), so that recording a request does not look the
    /// series up in the registry each time. Bounded: routes, methods and statuses are.
    static HANDLES: std::cell::RefCell<Vec<SeriesHandles>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Counts and times one request under its route template (or proxy prefix), method and status.
pub fn record_request(route: &'static str, method: &'static str, status: http::StatusCode, took: std::time::Duration) {
    let key = (route.as_ptr() as usize, method.as_ptr() as usize, status.as_u16());
    HANDLES.with_borrow_mut(|handles| {
        if let Some((_, counter, histogram)) = handles.iter().find(|(known, ..)| *known == key) {
            counter.increment(1);
            histogram.record(took.as_secs_f64());
            return;
        }
        let status = intern(status.as_str());
        let counter =
            metrics::counter!("rampart_http_requests_total", "route" => route, "method" => method, "status" => status);
        let histogram = metrics::histogram!(
            "rampart_http_request_duration_seconds", "route" => route, "method" => method, "status" => status
        );
        counter.increment(1);
        histogram.record(took.as_secs_f64());
        handles.push((key, counter, histogram));
    });
}

/// The status recorded for a request whose client went away before its answer (nginx's 499): no
/// answer was sent, and nothing counts against the endpoint the request was for.
pub fn client_closed() -> http::StatusCode {
    http::StatusCode::from_u16(499).unwrap_or(http::StatusCode::BAD_REQUEST)
}

/// Times one request and records it when it is answered, or as 499 if its client goes away
/// first (the request's future is then dropped mid-way).
pub struct Recorder {
    route: &'static str,
    method: &'static str,
    started: Instant,
    answered: bool,
}

impl Recorder {
    /// Starts timing a request on `route` (a route template or proxy prefix).
    pub fn start(route: &'static str, method: &Method) -> Self {
        Self { route, method: method_label(method), started: Instant::now(), answered: false }
    }

    /// Records the answer.
    pub fn finish(mut self, status: http::StatusCode) {
        self.answered = true;
        record_request(self.route, self.method, status, self.started.elapsed());
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if !self.answered {
            record_request(self.route, self.method, client_closed(), self.started.elapsed());
        }
    }
}

impl Stats {
    /// Counts a request arriving; it stays in flight until the guard is dropped.
    pub fn enter(&self) -> RequestInFlight<'_> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        RequestInFlight(&self.in_flight)
    }

    /// Counts the answer's rejection reason, if it is a rejection.
    pub fn count_rejection(&self, response: &Response) {
        if let Some(reason) = response.extensions().get::<ProblemCode>().and_then(|code| code.rejection_reason()) {
            metrics::counter!("rampart_rejections_total", "reason" => reason).increment(1);
            *self.rejections.lock().unwrap_or_else(PoisonError::into_inner).entry(reason).or_default() += 1;
        }
    }
}

/// Sets the gauges that are cheapest to read at scrape time rather than keep up to date.
fn record_gauges(state: &AppState) {
    rampart_common::metrics::record_process(state.stats.started);
    metrics::gauge!("rampart_http_requests_in_flight").set(state.stats.in_flight.load(Ordering::Relaxed) as f64);
    let pools = state.pools.all().iter().map(|pool| pool.set());
    let routes = state.routes.all().iter().map(|route| route.set());
    for backend in pools.chain(routes).flat_map(|set| set.snapshot().iter().cloned().collect::<Vec<_>>()) {
        let endpoint = backend.label();
        let snapshot = backend.breaker_snapshot();
        metrics::gauge!("rampart_endpoint_in_flight", "endpoint" => endpoint)
            .set(f64::from(backend.load().in_flight()));
        metrics::gauge!("rampart_endpoint_ewma_seconds", "endpoint" => endpoint)
            .set(backend.load().latency(rampart_common::clock::now()) / 1e9);
        let healthy = backend.health() == rampart_balance::endpoint::Health::Healthy
            && !backend.ejected(rampart_common::clock::now());
        metrics::gauge!("rampart_endpoint_healthy", "endpoint" => endpoint).set(if healthy { 1.0 } else { 0.0 });
        metrics::gauge!("rampart_breaker_state", "endpoint" => endpoint).set(snapshot.state.as_gauge());
    }
    if let Some(limits) = &state.rate_limits {
        #[allow(clippy::cast_precision_loss)] // far below 2^52
        metrics::gauge!("rampart_rate_limit_clients").set(limits.tracked_clients() as f64);
    }
}

/// `GET /metrics`: Prometheus text.
pub async fn prometheus(state: AppState) -> impl IntoResponse {
    record_gauges(&state);
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"))],
        rampart_common::metrics::render(),
    )
}

/// `GET /metrics.json`: the article's summary (requests, tasks, memory) and more.
pub async fn summary(state: AppState) -> Json<Value> {
    let stats = &state.stats;
    let runtime = tokio::runtime::Handle::current().metrics();
    let memory = rampart_common::process::memory_usage().unwrap_or_default();
    let rejections = stats.rejections.lock().unwrap_or_else(PoisonError::into_inner).clone();
    Json(json!({
        "requests": stats.requests.load(Ordering::Relaxed),
        "in_flight": stats.in_flight.load(Ordering::Relaxed),
        "uptime_seconds": stats.started.elapsed().as_secs_f64(),
        "tasks": runtime.num_alive_tasks(),
        "runtime_workers": runtime.num_workers(),
        "memory": {"resident_bytes": memory.resident_bytes, "virtual_bytes": memory.virtual_bytes},
        "rejections": rejections,
        "rate_limit_clients": state.rate_limits.as_ref().map(|limits| limits.tracked_clients()),
        "pools": state.pools.views(),
        "routes": state.routes.views(),
    }))
}
