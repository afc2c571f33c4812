//! The console: the web pages an operator opens first, served by the admin listener at
//! `/console`. Server-rendered HTML (askama templates under `templates/console/`), one small
//! hand-written script for live updates over Server-Sent Events, one stylesheet, charts drawn
//! as SVG on the server; all embedded in the binary, and every page works with JavaScript off
//! except the live updates. Every form is guarded against cross-site request forgery
//! ([`csrf`]); on a listener with a token, a browser signs in first ([`login`]).

mod actions;
mod assets;
mod chart;
mod counts;
mod csrf;
mod filter;
mod format;
mod job;
mod jobs;
mod live;
mod login;
mod metric_text;
mod overview;
mod schedules;
mod telemetry;
mod workers;

use crate::AppState;
use askama::Template;
use axum::{
    Router,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use rampart_common::http::admin_access::AdminAccess;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What every console page works from.
pub(crate) struct Console {
    /// The gateway's state on the main runtime.
    main: AppState,
    telemetry: Arc<telemetry::Telemetry>,
    counts: Arc<counts::Counts>,
    access: AdminAccess,
}

impl Console {
    /// The console of `app`, its sampling and counting tasks running until `stop`.
    pub(crate) fn start(app: AppState, access: AdminAccess, stop: &CancellationToken) -> Arc<Self> {
        let telemetry = Arc::new(telemetry::Telemetry::default());
        tokio::spawn(Arc::clone(&telemetry).keep_sampling(stop.clone()));
        let counts = counts::Counts::new(Arc::clone(&app.jobs));
        tokio::spawn(Arc::clone(&counts).keep_counting(stop.clone()));
        Arc::new(Self { main: app, telemetry, counts, access })
    }

    /// The generation in force, for a page being drawn now.
    fn app(&self) -> AppState {
        self.main.latest()
    }
}

/// The console's routes, for the admin listener.
pub(crate) fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/console", get(overview::page))
        .route("/console/live", get(live::overview))
        .route("/console/jobs", get(jobs::page))
        .route("/console/jobs/retry", post(actions::retry_many))
        .route("/console/jobs/purge", post(actions::purge))
        .route("/console/jobs/{id}", get(job::page))
        .route("/console/jobs/{id}/events", get(job::events))
        .route("/console/jobs/{id}/cancel", post(actions::cancel))
        .route("/console/jobs/{id}/retry", post(actions::retry_one))
        .route("/console/workers", get(workers::page))
        .route("/console/schedules", get(schedules::page))
        .route("/console/pauses", post(actions::pause))
        .route("/console/login", get(login::page).post(login::sign_in))
        .route("/console/assets/{file}", get(assets::serve))
        .with_state(console)
}

/// What the frame around every page shows.
struct Chrome {
    /// The page's title.
    title: String,
    /// Which entry of the navigation is this page.
    nav: &'static str,
    /// The token the page's forms carry.
    csrf: String,
}

impl Chrome {
    /// The frame of a page titled `title` under `nav`.
    fn new(title: impl Into<String>, nav: &'static str, csrf: &csrf::Token) -> Self {
        Self { title: title.into(), nav, csrf: csrf.value.clone() }
    }
}

/// A page with a new form token for the browser if it had none.
fn render(template: &impl Template, token: &csrf::Token) -> Response {
    page_with_status(StatusCode::OK, template, token.set_cookie.clone())
}

/// A rendered page with `status`, setting `cookie` if given.
fn page_with_status(status: StatusCode, template: &impl Template, cookie: Option<HeaderValue>) -> Response {
    match template.render() {
        Ok(html) => {
            let mut response = (status, html).into_response();
            let headers = response.headers_mut();
            html_headers(headers);
            if let Some(cookie) = cookie {
                headers.append(header::SET_COOKIE, cookie);
            }
            response
        }
        Err(error) => {
            tracing::error!(%error, "a console page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page failed to render; see the gateway's log").into_response()
        }
    }
}

/// The headers of every console page: HTML, never cached, never framed, and scripts and styles
/// from the console only.
fn html_headers(headers: &mut HeaderMap) {
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
}

/// A 303 to `location` (after a form, so reloading the next page does not post again).
fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(location) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}
