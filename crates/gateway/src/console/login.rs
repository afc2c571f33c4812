//! Signing a browser in to the console of an admin listener that has a token: the token once in
//! a form, then the session cookie ([`SESSION_COOKIE`]) the listener's guard accepts.

use super::{Chrome, Console, csrf, page_with_status, see_other};
use askama::Template;
use axum::{
    Form,
    extract::{
        Query, State,
        rejection::{FormRejection, QueryRejection},
    },
    response::Response,
};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use rampart_common::http::admin_access::SESSION_COOKIE;
use serde::Deserialize;
use std::sync::Arc;

/// Where to go once signed in.
#[derive(Deserialize, Default)]
pub(super) struct Next {
    #[serde(default)]
    next: String,
}

/// The sign-in form.
#[derive(Deserialize)]
pub(super) struct SignIn {
    #[serde(default)]
    token: String,
    #[serde(default)]
    next: String,
}

/// The page.
#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage {
    chrome: Chrome,
    next: String,
    problem: Option<String>,
}

/// Only a console page, so the sign-in page cannot send a browser elsewhere.
fn console_target(next: &str) -> &str {
    if next.starts_with("/console") && !next.starts_with("/console/login") && !next.contains("//") {
        next
    } else {
        "/console"
    }
}

/// `GET /console/login?next=`.
pub(super) async fn page(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    query: Result<Query<Next>, QueryRejection>,
) -> Response {
    let next = query.map(|Query(next)| next.next).unwrap_or_default();
    if !console.access.needs_token() {
        return see_other(console_target(&next));
    }
    let token = csrf::token(&headers);
    let page = LoginPage { chrome: Chrome::new("Sign in", "", &token), next, problem: None };
    page_with_status(StatusCode::OK, &page, token.set_cookie)
}

/// `POST /console/login`.
pub(super) async fn sign_in(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    form: Result<Form<SignIn>, FormRejection>,
) -> Response {
    let token = csrf::token(&headers);
    let Ok(Form(form)) = form else {
        let page = LoginPage { chrome: Chrome::new("Sign in", "", &token), next: String::new(), problem: None };
        return page_with_status(StatusCode::BAD_REQUEST, &page, token.set_cookie);
    };
    let refused = |problem: String| {
        let page =
            LoginPage { chrome: Chrome::new("Sign in", "", &token), next: form.next.clone(), problem: Some(problem) };
        page_with_status(StatusCode::UNAUTHORIZED, &page, token.set_cookie.clone())
    };
    if let Err(refusal) = csrf::check_origin(&headers) {
        return refused(refusal.to_string());
    }
    if !console.access.needs_token() {
        return see_other(console_target(&form.next));
    }
    let Some(session) = console.access.session_for(&form.token) else {
        return refused("That is not the admin token.".to_owned());
    };
    let mut answer = see_other(console_target(&form.next));
    let cookie = format!("{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict");
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        answer.headers_mut().append(header::SET_COOKIE, cookie);
    }
    answer
}
