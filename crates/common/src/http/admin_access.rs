//! Who may use an admin listener. On a loopback address, whoever can reach it (the host's own
//! operators); anywhere else only callers presenting the admin token as
//! `Authorization: Bearer TOKEN`, and a listener bound there without a token refuses to start:
//! metrics, backend state and CPU profiles are not for the internet. `/health` stays open, for
//! orchestrators' probes.

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

    /// `router` guarded by this rule.
    pub fn guard<S: Clone + Send + Sync + 'static>(&self, router: Router<S>) -> Router<S> {
        match &self.0 {
            Some(digest) => router.layer(axum::middleware::from_fn_with_state(Arc::clone(digest), check)),
            None => router,
        }
    }
}

/// Lets a request through if it is for `/health` or carries the token.
async fn check(State(expected): State<Arc<SecretDigest>>, request: Request, next: Next) -> Response {
    if request.uri().path() == "/health" {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| SecretDigest::of(token.trim().as_bytes()));
    match presented {
        Some(digest) if digest.matches(&expected) => next.run(request).await,
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
