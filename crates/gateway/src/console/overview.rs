//! The overview: jobs by status, throughput over the last 15 minutes, queues by kind, pickup
//! and run percentiles, request, error and rejection rates. [`live`](super::live) sends the
//! same figures again every few seconds.

use super::{Chrome, Console, chart, counts::Snapshot, csrf, format, render, telemetry::Percentiles};
use askama::Template;
use axum::{extract::State, response::Response};
use http::HeaderMap;
use std::{sync::Arc, time::Instant};

/// One status's tile.
pub(super) struct StatusTile {
    /// The status.
    pub(super) name: &'static str,
    /// Its count, written out.
    pub(super) count: String,
}

/// One kind's row.
pub(super) struct KindRow {
    /// The kind.
    pub(super) kind: String,
    /// Queued jobs.
    pub(super) queued: String,
    /// Running jobs.
    pub(super) running: String,
    /// Jobs that ended without succeeding (failed, dead, expired).
    pub(super) failed: String,
    /// The oldest due queued job's wait.
    pub(super) oldest: String,
}

/// One rejection reason's row.
pub(super) struct RejectionRow {
    /// The reason (the problem code).
    pub(super) reason: String,
    /// Per second over the last interval.
    pub(super) rate: String,
}

/// Every figure of the overview, written out.
pub(super) struct Figures {
    /// Jobs by status.
    pub(super) statuses: Vec<StatusTile>,
    /// When they were counted, in words.
    pub(super) counted: String,
    /// Queues by kind.
    pub(super) kinds: Vec<KindRow>,
    /// The oldest due queued job's wait, of all kinds.
    pub(super) oldest: String,
    /// The throughput chart, as SVG.
    pub(super) chart: String,
    /// Jobs accepted, completed and failed per second, requests, sync requests and 5xx per second.
    pub(super) accepted: String,
    pub(super) completed: String,
    pub(super) failed: String,
    pub(super) requests: String,
    pub(super) sync_requests: String,
    pub(super) errors: String,
    /// Pickup and run time p50 and p99 over the last minute.
    pub(super) pickup_p50: String,
    pub(super) pickup_p99: String,
    pub(super) run_p50: String,
    pub(super) run_p99: String,
    /// Rejections by reason.
    pub(super) rejections: Vec<RejectionRow>,
}

impl Figures {
    /// The figures now.
    pub(super) async fn now(console: &Console) -> Self {
        let snapshot = console.counts.latest().await;
        let (rates, pickup, run) = console.telemetry.now();
        let now = Instant::now();
        // The intervals sampled, then the one running now, so the chart ends at this moment.
        let mut series = console.telemetry.series();
        series.push((now, rates.clone()));
        let chart = chart::job_rates(&series, now);
        let (statuses, counted, kinds, oldest) = match snapshot.as_deref() {
            Some(snapshot) => counted(snapshot),
            None => (Vec::new(), "not yet (counting…)".to_owned(), Vec::new(), "—".to_owned()),
        };
        let percentile = |p: Percentiles| (format::millis(p.p50), format::millis(p.p99));
        let (pickup_p50, pickup_p99) = percentile(pickup);
        let (run_p50, run_p99) = percentile(run);
        Self {
            statuses,
            counted,
            kinds,
            oldest,
            chart,
            accepted: format::rate(rates.accepted),
            completed: format::rate(rates.completed),
            failed: format::rate(rates.failed),
            requests: format::rate(rates.requests),
            sync_requests: format::rate(rates.sync_requests),
            errors: format::rate(rates.errors),
            pickup_p50,
            pickup_p99,
            run_p50,
            run_p99,
            rejections: rates
                .rejections
                .into_iter()
                .map(|(reason, rate)| RejectionRow { reason, rate: format::rate(rate) })
                .collect(),
        }
    }
}

type Counted = (Vec<StatusTile>, String, Vec<KindRow>, String);

fn counted(snapshot: &Snapshot) -> Counted {
    let statuses =
        snapshot.by_status.iter().map(|(name, count)| StatusTile { name, count: format::count(*count) }).collect();
    let when = format!(
        "{} ago (the count took {})",
        format::age(snapshot.taken.elapsed().as_secs_f64()),
        format::millis(Some(snapshot.took.as_secs_f64()))
    );
    let kinds = snapshot
        .kinds
        .iter()
        .map(|queue| {
            let of = |status: &str| queue.by_status.get(status).copied().unwrap_or(0);
            KindRow {
                kind: queue.kind.clone(),
                queued: format::count(of("queued")),
                running: format::count(of("running")),
                failed: format::count(of("failed") + of("dead") + of("expired")),
                oldest: queue.oldest_queued_seconds.map_or_else(|| "—".to_owned(), format::age),
            }
        })
        .collect();
    let oldest = snapshot.oldest_queued_seconds.map_or_else(|| "—".to_owned(), format::age);
    (statuses, when, kinds, oldest)
}

/// The overview page.
#[derive(Template)]
#[template(path = "console/overview.html")]
struct OverviewPage {
    chrome: Chrome,
    figures: Figures,
}

/// The rows of the kinds table, for live updates.
#[derive(Template)]
#[template(path = "console/kind_rows.html")]
pub(super) struct KindRows<'a> {
    /// The rows.
    pub(super) kinds: &'a [KindRow],
}

/// The rows of the rejections table, for live updates.
#[derive(Template)]
#[template(path = "console/rejection_rows.html")]
pub(super) struct RejectionRows<'a> {
    /// The rows.
    pub(super) rejections: &'a [RejectionRow],
}

/// `GET /console`.
pub(super) async fn page(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let token = csrf::token(&headers);
    let figures = Figures::now(&console).await;
    render(&OverviewPage { chrome: Chrome::new("Overview", "overview", &token), figures }, &token)
}
