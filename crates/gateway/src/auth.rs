//! Authentication at the front door: API keys, checked before rate limits and before any work.
//!
//! A key is presented as `Authorization: Bearer KEY` or `X-Api-Key: KEY` and stored only as its
//! SHA-256 digest. Keys are 256 random bits (`rampart keys new`), so an unsalted fast digest is
//! the right store: nobody can guess such a key, so the slow, salted hashes built for passwords
//! would buy nothing and cost a millisecond per request. The presented key's digest is compared
//! with every stored one in constant time, so how long a check takes says nothing about any key.

use crate::{
    config::{ApiKeyConfig, AuthConfig, AuthMode, KeysFile},
    problem::{Problem, ProblemCode},
};
use arc_swap::ArcSwap;
use axum::response::{IntoResponse as _, Response};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use rampart_common::shutdown::{Every, FirstTick};
use rampart_common::{files::Stamp, secret::SecretDigest};
use std::{
    io::Read as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};
use tokio_util::sync::CancellationToken;

/// How often the keys file is looked at: a revoked key stops working within this (and a read).
const KEYS_FILE_POLL: Duration = Duration::from_millis(250);

/// The header an API key may come in instead of `Authorization`.
pub const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// The prefix of a stored digest.
const SHA256: &str = "sha256:";

/// The tenant an authenticated request speaks for, in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant(pub Arc<str>);

/// One stored key.
#[derive(Debug)]
struct Key {
    id: Arc<str>,
    tenant: Arc<str>,
    digest: SecretDigest,
}

/// The gateway's keys: those of the config and those of the keys file, swapped whole when the
/// file changes.
#[derive(Debug)]
pub struct Authenticator {
    inline: Vec<Arc<Key>>,
    file: Option<PathBuf>,
    keys: ArcSwap<Vec<Arc<Key>>>,
}

/// The keys of `entries`; the error names the entry (under `section`) whose hash is not one.
fn keys_of(entries: &[ApiKeyConfig], section: &str) -> Result<Vec<Arc<Key>>, (String, String)> {
    entries
        .iter()
        .enumerate()
        .map(|(index, key)| {
            let digest = parse_digest(&key.hash).ok_or_else(|| {
                (format!("{section}[{index}].hash"), format!("write it as {SHA256}HEX (64 hex digits)"))
            })?;
            Ok(Arc::new(Key { id: Arc::from(key.id.as_str()), tenant: Arc::from(key.tenant.as_str()), digest }))
        })
        .collect()
}

/// The keys of a keys file.
fn read_keys_file(path: &Path) -> Result<Vec<Arc<Key>>, (String, String)> {
    let origin = || format!("auth.keys_file ({})", path.display());
    let text = std::fs::read_to_string(path).map_err(|error| (origin(), error.to_string()))?;
    let file: KeysFile = toml::from_str(&text).map_err(|error| (origin(), error.to_string()))?;
    keys_of(&file.keys, &format!("{}: keys", path.display()))
}

impl Authenticator {
    /// The keys of `config` and of its keys file; the error names the key or file at fault.
    pub fn new(config: &AuthConfig) -> Result<Self, (String, String)> {
        let inline = keys_of(&config.keys, "auth.keys")?;
        let mut keys = inline.clone();
        if let Some(path) = &config.keys_file {
            keys.extend(read_keys_file(path)?);
        }
        Ok(Self { inline, file: config.keys_file.clone(), keys: ArcSwap::from_pointee(keys) })
    }

    /// Reads the keys file again whenever it changes, until `stop`; a file that cannot be read
    /// keeps the keys read before.
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let Some(path) = self.file.clone() else { return };
        let mut seen = Stamp::of(&path);
        let mut every = Every::new(KEYS_FILE_POLL, FirstTick::AfterOnePeriod, stop);
        while every.tick().await {
            let now = Stamp::of(&path);
            if now == seen {
                continue;
            }
            seen = now;
            match read_keys_file(&path) {
                Ok(from_file) => {
                    let mut keys = self.inline.clone();
                    keys.extend(from_file);
                    tracing::info!(keys = keys.len(), file = %path.display(), "API keys read again");
                    #[allow(clippy::cast_precision_loss)] // a few keys
                    metrics::gauge!("rampart_auth_keys").set(keys.len() as f64);
                    self.keys.store(Arc::new(keys));
                }
                Err((origin, reason)) => {
                    metrics::counter!("rampart_auth_keys_file_errors_total").increment(1);
                    tracing::error!(%origin, %reason, "cannot read the keys file; the keys read before stay");
                }
            }
        }
    }

    /// Who sent a request with `headers` on a route that asks for `mode`: a tenant, nobody
    /// (`Ok(None)`, where no credential is needed), or why it is refused.
    pub fn authenticate(&self, headers: &HeaderMap, mode: AuthMode) -> Result<Option<Tenant>, Refused> {
        if mode == AuthMode::None {
            return Ok(None);
        }
        let Some(presented) = presented_key(headers) else {
            return match mode {
                AuthMode::Required => Err(Refused::Missing),
                AuthMode::Optional | AuthMode::None => Ok(None),
            };
        };
        let digest = SecretDigest::of(presented.as_bytes());
        // Every stored digest is compared, each in constant time.
        let keys = self.keys.load();
        let found = keys.iter().fold(None, |found, key| if key.digest.matches(&digest) { Some(key) } else { found });
        match found {
            Some(key) => {
                tracing::debug!(key = %key.id, tenant = %key.tenant, "authenticated");
                Ok(Some(Tenant(Arc::clone(&key.tenant))))
            }
            None => Err(Refused::Invalid),
        }
    }
}

/// The key a request presents, if any.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok()) {
        let (scheme, token) = value.trim().split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|token| !token.is_empty());
    }
    headers.get(X_API_KEY).and_then(|value| value.to_str().ok()).map(str::trim).filter(|key| !key.is_empty())
}

fn parse_digest(text: &str) -> Option<SecretDigest> {
    SecretDigest::from_hex(text.strip_prefix(SHA256)?)
}

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// It carries no credential where one is required.
    Missing,
    /// Its credential is no key of the gateway's.
    Invalid,
}

impl axum::response::IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Self::Missing => unauthorized("this route needs an API key", None),
            Self::Invalid => unauthorized("the API key is not valid", Some("invalid_token")),
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

/// A fresh API key (`rk_` and 64 hex digits from the operating system's random source) and the
/// digest to store for it.
pub fn new_key() -> std::io::Result<(String, String)> {
    let mut random = [0_u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut random)?;
    let key = format!("rk_{}", hex::encode(random));
    let digest = format!("{SHA256}{}", SecretDigest::of(key.as_bytes()).to_hex());
    Ok((key, digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authenticator(digest: &str) -> Authenticator {
        let config = AuthConfig {
            default: AuthMode::Required,
            keys: vec![ApiKeyConfig { id: "ci".into(), tenant: "acme".into(), hash: digest.into() }],
            keys_file: None,
        };
        Authenticator::new(&config).unwrap()
    }

    fn headers(name: HeaderName, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, value.parse().unwrap());
        headers
    }

    #[test]
    fn a_key_is_known_by_its_digest_in_either_header() {
        let (key, digest) = new_key().unwrap();
        assert!(key.starts_with("rk_") && key.len() == 67, "{key}");
        let auth = authenticator(&digest);
        for presented in [headers(header::AUTHORIZATION, &format!("Bearer {key}")), headers(X_API_KEY, &key)] {
            let tenant = auth.authenticate(&presented, AuthMode::Required).unwrap();
            assert_eq!(tenant, Some(Tenant(Arc::from("acme"))));
        }
        let wrong = auth.authenticate(&headers(X_API_KEY, "rk_nope"), AuthMode::Optional).unwrap_err();
        assert_eq!(wrong, Refused::Invalid, "a wrong key is refused even where none is needed");
        let missing = auth.authenticate(&HeaderMap::new(), AuthMode::Required).unwrap_err().into_response();
        assert_eq!(missing.headers()[header::WWW_AUTHENTICATE], "Bearer realm=\"rampart\"");
        assert_eq!(auth.authenticate(&HeaderMap::new(), AuthMode::Optional).unwrap(), None);
        assert_eq!(auth.authenticate(&headers(X_API_KEY, "rk_nope"), AuthMode::None).unwrap(), None);
    }

    #[test]
    fn a_hash_that_is_not_a_sha256_digest_is_refused_naming_its_key() {
        let config = AuthConfig {
            default: AuthMode::Required,
            keys: vec![ApiKeyConfig { id: "ci".into(), tenant: "acme".into(), hash: "plain-key".into() }],
            keys_file: None,
        };
        let (key, _) = Authenticator::new(&config).unwrap_err();
        assert_eq!(key, "auth.keys[0].hash");
    }
}
