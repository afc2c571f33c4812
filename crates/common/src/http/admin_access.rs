//! Who may use an admin listener. On a loopback address, whoever can reach it (the host's own
//! operators); anywhere else only callers presenting the admin token as
//! `Authorization: Bearer TOKEN`, and a listener bound there without a token refuses to start:
//! metrics, backend state and CPU profiles are not for the internet. `/health` stays open, for
//! orchestrators' probes.
//!
//! A browser cannot send a bearer token on its own, so the console signs in once
//! (`/console/login`, the token in a form) and then presents [`SESSION_COOKIE`]: the token's
//! SHA-256 digest, never the token itself, in an `HttpOnly`, `SameSite=Strict` cookie. An
//! unsigned browser asking for a console page is sent to the sign-in page.

use crate::{http::problem, secret::SecretDigest};
use axum::{
    Router,
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse as _, Response},
};
use http::{HeaderValue, StatusCode, header};
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

/// Why an admin listener cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AdminAccessError {
    /// Bound beyond loopback with no token.
    #[error(
        "the admin listener on {0} is reachable from other hosts: give it a token (admin_token_file, or a worker's --admin-token-file) or bind it to 127.0.0.1"
    )]
    TokenNeeded(SocketAddr),
    /// The token file cannot be read.
    #[error("cannot read the admin token file {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The token is empty.
    #[error("the admin token is empty")]
    Empty,
}

/// The cookie that signs a browser in to the console of a listener with a token.
pub const SESSION_COOKIE: &str = "rampart_admin";

/// Where the console signs in.
pub const LOGIN_PATH: &str = "/console/login";

/// What an admin listener asks of its callers.
#[derive(Debug, Clone)]
pub struct AdminAccess(Option<Arc<SecretDigest>>);

impl AdminAccess {
    /// The access rule for a listener bound to `bound`, with the token given inline or in a file
    /// (the file wins).
    pub fn new(bound: SocketAddr, token: Option<&str>, token_file: Option<&Path>) -> Result<Self, AdminAccessError> {
        let token = match token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|error| AdminAccessError::File { path: path.to_owned(), reason: error.to_string() })?,
            ),
            None => token.map(str::to_owned),
        };
        match token {
            Some(token) if token.trim().is_empty() => Err(AdminAccessError::Empty),
            Some(token) => Ok(Self(Some(Arc::new(SecretDigest::of(token.trim().as_bytes()))))),
            None if bound.ip().is_loopback() => Ok(Self(None)),
            None => Err(AdminAccessError::TokenNeeded(bound)),
        }
    }

    /// Whether callers must present a token.
    pub fn needs_token(&self) -> bool {
        self.0.is_some()
    }

    /// The session cookie's value for a browser that presented `token`, if it is the token.
    pub fn session_for(&self, token: &str) -> Option<String> {
        let digest = self.0.as_ref()?;
        let presented = SecretDigest::of(token.trim().as_bytes());
        presented.matches(digest).then(|| presented.to_hex())
    }

    /// `router` guarded by this rule.
    pub fn guard<S: Clone + Send + Sync + 'static>(&self, router: Router<S>) -> Router<S> {
        match &self.0 {
            Some(digest) => router.layer(axum::middleware::from_fn_with_state(Arc::clone(digest), check)),
            None => router,
        }
    }
}

/// Whether `path` is open to all: the probe, the console's sign-in page and its static assets.
fn open_path(path: &str) -> bool {
    path == "/health" || path == LOGIN_PATH || path.starts_with("/console/assets/")
}

/// Lets a request through if it is for an open path or carries the token (or, from a browser,
/// the console's session cookie).
async fn check(State(expected): State<Arc<SecretDigest>>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if open_path(path) {
        return next.run(request).await;
    }
    let headers = request.headers();
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| SecretDigest::of(token.trim().as_bytes()))
        .or_else(|| crate::http::cookie::get(headers, SESSION_COOKIE).and_then(SecretDigest::from_hex));
    let console_page = path == "/console" || path.starts_with("/console/");
    match presented {
        Some(digest) if digest.matches(&expected) => next.run(request).await,
        None if console_page && request.method() == http::Method::GET => {
            let back = request.uri().path_and_query().map_or("/console", |target| target.as_str());
            let location = format!("{LOGIN_PATH}?next={}", crate::http::cookie::encode_component(back));
            let mut answer = StatusCode::SEE_OTHER.into_response();
            if let Ok(location) = HeaderValue::from_str(&location) {
                answer.headers_mut().insert(header::LOCATION, location);
            }
            answer
        }
        presented => {
            let detail =
                if presented.is_some() { "the admin token is not valid" } else { "the admin listener needs its token" };
            let mut answer = problem::response(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized", detail);
            answer
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"rampart-admin\""));
            answer.into_response()
        }
    }
}
