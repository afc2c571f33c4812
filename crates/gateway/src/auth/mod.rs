//! Authentication at the front door: API keys and JSON Web Tokens, checked before rate limits
//! and before any work, and what the credential's scopes allow.
//!
//! A key is presented as `Authorization: Bearer KEY` or `X-Api-Key: KEY` and stored only as its
//! SHA-256 digest. Keys are 256 random bits (`rampart keys new`), so an unsalted fast digest is
//! the right store: nobody can guess such a key, so the slow, salted hashes built for passwords
//! would buy nothing and cost a millisecond per request. The presented key's digest is compared
//! with every stored one in constant time, so how long a check takes says nothing about any key.
//! A bearer token shaped like a JWT (three dot-separated parts) goes to [`jwt`] when
//! `[auth.jwt]` is configured.

pub mod jwt;
pub mod keys;
pub mod scopes;

use crate::{
    config::{AuthConfig, AuthMode},
    problem::{Problem, ProblemCode},
};
use anyhow::Context as _;
use axum::response::{IntoResponse as _, Response};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use rampart_common::{rate_limit::DirectRateLimiter, secret::SecretDigest};
use std::{io::Read as _, sync::Arc};
use tokio_util::sync::CancellationToken;

/// The header an API key may come in instead of `Authorization`.
pub const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// Who an authenticated request speaks for, in the request's extensions: its tenant (the
/// rate-limit bucket, the idempotency scope, the metric label and the owner of its jobs), the
/// key id or token subject, what it may use, and the key's own rate limit.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The tenant.
    pub tenant: Arc<str>,
    /// The tenant's metric label (see [`tenant_label`]), found once when the key is read or the
    /// token verified, so no request takes the labels' lock.
    pub label: &'static str,
    /// The API key's id, or the token's `sub`.
    pub subject: Arc<str>,
    /// Its scopes; `None`: every route.
    pub scopes: Option<Arc<scopes::Scopes>>,
    /// The key's own limit (`rate`/`burst` on its entry).
    pub limit: Option<Arc<DirectRateLimiter>>,
}

/// The gateway's credentials: API keys and, with `[auth.jwt]`, a token verifier.
#[derive(Debug)]
pub struct Authenticator {
    keys: Arc<keys::Keys>,
    jwt: Option<Arc<jwt::JwtVerifier>>,
}

impl Authenticator {
    /// The API keys of `config` (a JWT verifier is added with [`Self::with_jwt`]); the error
    /// names the key or file at fault.
    pub fn new(config: &AuthConfig) -> Result<Self, (String, String)> {
        Ok(Self { keys: Arc::new(keys::Keys::new(config)?), jwt: None })
    }

    /// The keys and token verifier of `config`. What `previous` (its config and authenticator)
    /// holds carries over where `config` leaves it as it was: each unchanged key's own limit, and
    /// the verifier with its key set when `[auth.jwt]` is the same.
    pub async fn assemble(config: &AuthConfig, previous: Option<(&AuthConfig, &Self)>) -> anyhow::Result<Self> {
        let keys = keys::Keys::after(config, previous.map(|(_, previous)| &*previous.keys))
            .map_err(|(key, reason)| anyhow::anyhow!("invalid {key}: {reason}"))?;
        let jwt = match &config.jwt {
            Some(settings) => match previous.filter(|(before, _)| before.jwt.as_ref() == Some(settings)) {
                Some((_, previous)) => previous.jwt.clone(),
                None => Some(Arc::new(jwt::JwtVerifier::new(settings).await.context("cannot use [auth.jwt]")?)),
            },
            None => None,
        };
        Ok(Self { keys: Arc::new(keys), jwt })
    }

    /// The same keys, and tokens checked by `verifier`.
    #[must_use]
    pub fn with_jwt(self, verifier: jwt::JwtVerifier) -> Self {
        Self { jwt: Some(Arc::new(verifier)), ..self }
    }

    /// Reads the keys file and the key set again as they change, until `stop`.
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let keys = tokio::spawn(Arc::clone(&self.keys).watch(stop.clone()));
        if let Some(jwt) = &self.jwt {
            Arc::clone(jwt).watch(stop).await;
        }
        let _ = keys.await;
    }

    /// Who sent a request with `headers` on a route that asks for `mode`: an identity, nobody
    /// (`Ok(None)`, where no credential is needed), or why it is refused.
    pub async fn authenticate(&self, headers: &HeaderMap, mode: AuthMode) -> Result<Option<Identity>, Refused> {
        if mode == AuthMode::None {
            return Ok(None);
        }
        let Some(presented) = presented(headers) else {
            return match mode {
                AuthMode::Required => Err(Refused::Missing),
                AuthMode::Optional | AuthMode::None => Ok(None),
            };
        };
        let identity = match (presented, &self.jwt) {
            (Presented::Bearer(token), Some(jwt)) if token.bytes().filter(|byte| *byte == b'.').count() == 2 => {
                jwt.verify(token).await?
            }
            (Presented::Bearer(key) | Presented::Key(key), _) => self.keys.identify(key).ok_or(Refused::Invalid)?,
        };
        tracing::debug!(subject = %identity.subject, tenant = %identity.tenant, "authenticated");
        Ok(Some(identity))
    }
}

/// Tenants with a metric label of their own; the rest share `other`, so a gateway with many
/// tenants (or tokens naming made-up ones) cannot grow the metrics without bound.
pub const MAX_TENANT_LABELS: usize = 100;

/// The metric label for `tenant`: its name for the first [`MAX_TENANT_LABELS`] tenants met (keys
/// read, tokens verified), `other` after that.
pub fn tenant_label(tenant: &str) -> &'static str {
    static LABELS: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut labels = LABELS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(known) = labels.iter().find(|label| ***label == *tenant) {
        return known;
    }
    if labels.len() >= MAX_TENANT_LABELS {
        return "other";
    }
    let label = rampart_common::metrics::intern(tenant);
    labels.push(label);
    label
}

/// A credential as a request shows it.
enum Presented<'a> {
    /// `Authorization: Bearer ...`: an API key or a JWT.
    Bearer(&'a str),
    /// `X-Api-Key: ...`.
    Key(&'a str),
}

/// The credential a request presents, if any.
fn presented(headers: &HeaderMap) -> Option<Presented<'_>> {
    if let Some(value) = headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok()) {
        let (scheme, token) = value.trim().split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim())
            .filter(|token| !token.is_empty())
            .map(Presented::Bearer);
    }
    let key = headers.get(X_API_KEY).and_then(|value| value.to_str().ok()).map(str::trim);
    key.filter(|key| !key.is_empty()).map(Presented::Key)
}

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// It carries no credential where one is required.
    Missing,
    /// Its credential is no key of the gateway's.
    Invalid,
    /// Its token is not one the gateway accepts, for this reason.
    Token(&'static str),
}

impl axum::response::IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Self::Missing => unauthorized("this route needs an API key or a token", None),
            Self::Invalid => unauthorized("the API key is not valid", Some("invalid_token")),
            Self::Token(reason) => unauthorized(reason, Some("invalid_token")),
        }
    }
}

/// A 401 with `WWW-Authenticate` (RFC 6750 §3).
fn unauthorized(detail: &str, error: Option<&str>) -> Response {
    let challenge = match error {
        Some(error) => format!("Bearer realm=\"rampart\", error=\"{error}\""),
        None => "Bearer realm=\"rampart\"".to_owned(),
    };
    let challenge = HeaderValue::try_from(challenge).unwrap_or_else(|_| HeaderValue::from_static("Bearer"));
    Problem::new(StatusCode::UNAUTHORIZED, ProblemCode::Unauthorized, detail)
        .header(header::WWW_AUTHENTICATE, challenge)
        .into_response()
}

/// Checks that `identity` (if any) may use jobs of `kind` in `family`: 403 `forbidden` if not.
pub fn permit(identity: Option<&Identity>, family: scopes::Family, kind: &str) -> Result<(), Problem> {
    match identity.and_then(|identity| identity.scopes.as_deref()) {
        Some(scopes) if !scopes.allows(family, kind) => Err(scopes::forbidden(format!("{}:{kind}", family.name()))),
        _ => Ok(()),
    }
}

/// A fresh API key (`rk_` and 64 hex digits from the operating system's random source) and the
/// digest to store for it.
pub fn new_key() -> std::io::Result<(String, String)> {
    let mut random = [0_u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut random)?;
    let key = format!("rk_{}", hex::encode(random));
    let digest = format!("{}{}", keys::SHA256, SecretDigest::of(key.as_bytes()).to_hex());
    Ok((key, digest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApiKeyConfig;

    fn config(hash: &str) -> AuthConfig {
        AuthConfig {
            default: AuthMode::Required,
            keys: vec![ApiKeyConfig {
                id: "ci".into(),
                tenant: "acme".into(),
                hash: hash.into(),
                scopes: None,
                rate: None,
                burst: None,
            }],
            keys_file: None,
            jwt: None,
            routes: Vec::new(),
        }
    }

    fn authenticator(digest: &str) -> Authenticator {
        Authenticator::new(&config(digest)).unwrap()
    }

    fn headers(name: HeaderName, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, value.parse().unwrap());
        headers
    }

    #[tokio::test]
    async fn a_key_is_known_by_its_digest_in_either_header() {
        let (key, digest) = new_key().unwrap();
        assert!(key.starts_with("rk_") && key.len() == 67, "{key}");
        let auth = authenticator(&digest);
        for presented in [headers(header::AUTHORIZATION, &format!("Bearer {key}")), headers(X_API_KEY, &key)] {
            let identity = auth.authenticate(&presented, AuthMode::Required).await.unwrap().unwrap();
            assert_eq!((&*identity.tenant, &*identity.subject), ("acme", "ci"));
        }
        let wrong = auth.authenticate(&headers(X_API_KEY, "rk_nope"), AuthMode::Optional).await.unwrap_err();
        assert_eq!(wrong, Refused::Invalid, "a wrong key is refused even where none is needed");
        let missing = auth.authenticate(&HeaderMap::new(), AuthMode::Required).await.unwrap_err().into_response();
        assert_eq!(missing.headers()[header::WWW_AUTHENTICATE], "Bearer realm=\"rampart\"");
        assert!(auth.authenticate(&HeaderMap::new(), AuthMode::Optional).await.unwrap().is_none());
        assert!(auth.authenticate(&headers(X_API_KEY, "rk_nope"), AuthMode::None).await.unwrap().is_none());
    }

    #[test]
    fn a_hash_that_is_not_a_sha256_digest_is_refused_naming_its_key() {
        let (key, _) = Authenticator::new(&config("plain-key")).unwrap_err();
        assert_eq!(key, "auth.keys[0].hash");
    }
}
