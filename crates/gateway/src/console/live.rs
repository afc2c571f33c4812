//! `GET /console/live`: the overview's figures again every [`EVERY`], as Server-Sent Events
//! (`event: overview`, `data:` JSON of `text` — element key to text — and `html` — element key
//! to markup rendered by the same templates as the page).

use super::{
    Console,
    overview::{Figures, KindRows, RejectionRows},
};
use askama::Template;
use axum::{
    extract::State,
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use serde_json::{Map, Value, json};
use std::{convert::Infallible, sync::Arc, time::Duration};

/// How often the figures are sent.
const EVERY: Duration = Duration::from_secs(2);

/// `GET /console/live`.
pub(super) async fn overview(State(console): State<Arc<Console>>) -> Response {
    let stream = futures_util::stream::unfold((console, true), |(console, first)| async move {
        if !first {
            tokio::time::sleep(EVERY).await;
        }
        let figures = Figures::now(&console).await;
        let event = Event::default().event("overview").data(message(&figures).to_string());
        Some((Ok::<_, Infallible>(event), (console, false)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

/// The figures as the script applies them.
fn message(figures: &Figures) -> Value {
    let mut text = Map::new();
    for tile in &figures.statuses {
        text.insert(format!("status.{}", tile.name), Value::from(tile.count.clone()));
    }
    for (key, value) in [
        ("counted", &figures.counted),
        ("oldest", &figures.oldest),
        ("rate.accepted", &figures.accepted),
        ("rate.completed", &figures.completed),
        ("rate.failed", &figures.failed),
        ("rate.requests", &figures.requests),
        ("rate.sync", &figures.sync_requests),
        ("rate.errors", &figures.errors),
        ("pickup.p50", &figures.pickup_p50),
        ("pickup.p99", &figures.pickup_p99),
        ("run.p50", &figures.run_p50),
        ("run.p99", &figures.run_p99),
    ] {
        text.insert(key.to_owned(), Value::from(value.clone()));
    }
    let kinds = KindRows { kinds: &figures.kinds }.render().unwrap_or_default();
    let rejections = RejectionRows { rejections: &figures.rejections }.render().unwrap_or_default();
    json!({ "text": text, "html": { "chart": figures.chart, "kinds": kinds, "rejections": rejections } })
}
