//! JSON Web Tokens (RFC 7519) signed with RS256, ES256 or EdDSA, verified against the identity
//! provider's key set (JWKS, RFC 7517) from a file or an `https://` URL. The set is cached and
//! fetched again every `refresh`, and at once when a token names a key it does not hold — but
//! never twice within `min_refresh`, so a flood of forged key ids costs the provider nothing.
//! `alg: none` and HMAC tokens are refused whatever the key set says.
//!
//! A token verified once is remembered (by its SHA-256 digest, until it expires, forgotten when
//! the key set changes): checking an RS256 signature costs far more than the rest of a proxied
//! request, and a client sends the same token with every request of its session.

use super::{Identity, Refused, scopes::Scopes};
use crate::config::JwtConfig;
use arc_swap::ArcSwap;
use jsonwebtoken::{
    Algorithm, DecodingKey, Validation,
    errors::ErrorKind,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm},
};
use rampart_common::{
    files::Stamp,
    secret::SecretDigest,
    shutdown::{Every, FirstTick},
};
use serde_json::{Map, Value};
use std::{collections::HashMap, path::PathBuf, sync::Arc, time::Duration};
use tokio::{sync::Mutex, time::Instant};
use tokio_util::sync::CancellationToken;

/// How often a key-set file is looked at for a change.
const FILE_POLL: Duration = Duration::from_millis(250);

/// Verified tokens remembered at most; past it the memory starts over.
const VERIFIED_CAPACITY: usize = 10_000;

/// Where the key set comes from.
#[derive(Debug)]
enum Source {
    File(PathBuf),
    Url { url: String, http: reqwest::Client },
}

/// One verification key and the algorithm it verifies.
struct VerifyingKey {
    key: DecodingKey,
    algorithm: Algorithm,
}

/// Why a key set cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// It could not be read or fetched.
    #[error("cannot get the key set from {0}: {1}")]
    Fetch(String, String),
    /// It is not a key set, or holds no usable key.
    #[error("the key set from {0} is not usable: {1}")]
    Invalid(String, String),
}

/// Verifies bearer tokens for `[auth.jwt]`.
pub struct JwtVerifier {
    config: JwtConfig,
    source: Source,
    keys: ArcSwap<HashMap<String, Arc<VerifyingKey>>>,
    /// When the set was last fetched; held while fetching, so concurrent unknown-`kid` tokens
    /// wait for one fetch instead of making their own.
    fetched: Mutex<Instant>,
    /// Tokens verified before: their identity and `exp` (seconds since the epoch).
    verified: std::sync::Mutex<HashMap<SecretDigest, (Identity, u64)>>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("JwtVerifier").field("jwks", &self.config.jwks).finish_non_exhaustive()
    }
}

/// The algorithm a key verifies: its `alg`, or what its type implies.
fn algorithm_of(jwk: &Jwk) -> Option<Algorithm> {
    let implied = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => Algorithm::EdDSA,
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(implied),
        Some(KeyAlgorithm::RS256) if implied == Algorithm::RS256 => Some(implied),
        Some(KeyAlgorithm::ES256) if implied == Algorithm::ES256 => Some(implied),
        Some(KeyAlgorithm::EdDSA) if implied == Algorithm::EdDSA => Some(implied),
        Some(_) => None,
    }
}

/// The usable keys of a key set document, by `kid` (a key without one is filed under "").
fn parse_set(origin: &str, text: &[u8]) -> Result<HashMap<String, Arc<VerifyingKey>>, JwksError> {
    let set: JwkSet =
        serde_json::from_slice(text).map_err(|error| JwksError::Invalid(origin.into(), error.to_string()))?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let Some(algorithm) = algorithm_of(jwk) else { continue };
        let Ok(key) = DecodingKey::from_jwk(jwk) else { continue };
        keys.insert(jwk.common.key_id.clone().unwrap_or_default(), Arc::new(VerifyingKey { key, algorithm }));
    }
    if keys.is_empty() {
        return Err(JwksError::Invalid(origin.into(), "no RS256, ES256 or EdDSA key in it".into()));
    }
    Ok(keys)
}

impl JwtVerifier {
    /// A verifier for `config`, with its key set fetched once.
    pub async fn new(config: &JwtConfig) -> anyhow::Result<Self> {
        // Keys fetched in the clear could be anyone's: the key set comes over HTTPS or from a file.
        anyhow::ensure!(
            !config.jwks.starts_with("http://"),
            "auth.jwt.jwks: {} is plain HTTP; use an https:// URL or a file",
            config.jwks
        );
        let source = if config.jwks.starts_with("https://") {
            let mut http = reqwest::Client::builder().timeout(Duration::from_secs(5));
            if let Some(ca) = &config.jwks_ca {
                let pem =
                    std::fs::read(ca).map_err(|error| anyhow::anyhow!("auth.jwt.jwks_ca {}: {error}", ca.display()))?;
                http = http.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
            }
            Source::Url { url: config.jwks.clone(), http: http.build()? }
        } else {
            Source::File(PathBuf::from(&config.jwks))
        };
        let verifier = Self {
            config: config.clone(),
            source,
            keys: ArcSwap::from_pointee(HashMap::new()),
            fetched: Mutex::new(Instant::now()),
            verified: std::sync::Mutex::new(HashMap::new()),
        };
        verifier.keys.store(Arc::new(verifier.fetch().await?));
        Ok(verifier)
    }

    async fn fetch(&self) -> Result<HashMap<String, Arc<VerifyingKey>>, JwksError> {
        metrics::counter!("rampart_auth_jwks_fetches_total").increment(1);
        match &self.source {
            Source::File(path) => {
                let origin = path.display().to_string();
                let text = std::fs::read(path).map_err(|error| JwksError::Fetch(origin.clone(), error.to_string()))?;
                parse_set(&origin, &text)
            }
            Source::Url { url, http } => {
                let failed = |error: reqwest::Error| JwksError::Fetch(url.clone(), error.to_string());
                let answer = http.get(url).send().await.map_err(failed)?.error_for_status().map_err(failed)?;
                parse_set(url, &answer.bytes().await.map_err(failed)?)
            }
        }
    }

    /// Fetches the set again unless that was done within `min_refresh`; whether it was.
    async fn refresh(&self, forced: bool) -> bool {
        let mut fetched = self.fetched.lock().await;
        if !forced && fetched.elapsed() < self.config.min_refresh {
            return false;
        }
        *fetched = Instant::now();
        match self.fetch().await {
            Ok(keys) => {
                tracing::info!(keys = keys.len(), jwks = %self.config.jwks, "JWT key set read");
                self.keys.store(Arc::new(keys));
                // A key gone from the set must stop vouching for its tokens at once.
                self.remembered().clear();
                true
            }
            Err(error) => {
                metrics::counter!("rampart_auth_jwks_errors_total").increment(1);
                tracing::error!(%error, "cannot refresh the JWT key set; the keys read before stay");
                false
            }
        }
    }

    /// Refreshes the key set every `refresh` (a file: whenever it changes), until `stop`.
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        match &self.source {
            Source::File(path) => {
                let mut seen = Stamp::of(path);
                let mut every = Every::new(FILE_POLL, FirstTick::AfterOnePeriod, stop);
                while every.tick().await {
                    let now = Stamp::of(path);
                    if now != seen {
                        seen = now;
                        self.refresh(true).await;
                    }
                }
            }
            Source::Url { .. } => {
                let mut every = Every::new(self.config.refresh, FirstTick::AfterOnePeriod, stop);
                while every.tick().await {
                    self.refresh(true).await;
                }
            }
        }
    }

    fn remembered(&self) -> std::sync::MutexGuard<'_, HashMap<SecretDigest, (Identity, u64)>> {
        self.verified.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The identity a token proves, or why it proves none.
    pub async fn verify(&self, token: &str) -> Result<Identity, Refused> {
        let digest = SecretDigest::of(token.as_bytes());
        let now = jsonwebtoken::get_current_timestamp();
        let known = self.remembered().get(&digest).cloned();
        if let Some((identity, expires)) = known
            && now <= expires.saturating_add(self.config.leeway.as_secs())
        {
            return Ok(identity);
        }
        let (identity, expires) = self.verify_signed(token).await?;
        let mut remembered = self.remembered();
        if remembered.len() >= VERIFIED_CAPACITY {
            remembered.clear();
        }
        remembered.insert(digest, (identity.clone(), expires));
        Ok(identity)
    }

    /// Checks a token's signature and claims: its identity and `exp`.
    async fn verify_signed(&self, token: &str) -> Result<(Identity, u64), Refused> {
        // `alg: none` and unknown algorithms fail to parse here.
        let header = jsonwebtoken::decode_header(token).map_err(|_| Refused::Token("the token is not a valid JWT"))?;
        let kid = header.kid.unwrap_or_default();
        let key = match self.keys.load().get(&kid) {
            Some(key) => Arc::clone(key),
            None => {
                if !self.refresh(false).await {
                    return Err(Refused::Token("the token is signed with a key the gateway does not know"));
                }
                let keys = self.keys.load();
                Arc::clone(
                    keys.get(&kid).ok_or(Refused::Token("the token is signed with a key the gateway does not know"))?,
                )
            }
        };
        if header.alg != key.algorithm {
            return Err(Refused::Token("the token's algorithm is not its key's"));
        }
        let mut validation = Validation::new(key.algorithm);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = self.config.leeway.as_secs();
        validation.validate_nbf = true;
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
            .map_err(|error| {
                Refused::Token(match error.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired",
                    ErrorKind::ImmatureSignature => "the token is not valid yet",
                    ErrorKind::InvalidAudience => "the token is for another audience",
                    ErrorKind::InvalidIssuer => "the token is from another issuer",
                    ErrorKind::MissingRequiredClaim(_) => "the token lacks exp, iss or aud",
                    _ => "the token's signature or claims are not valid",
                })
            })?
            .claims;
        let tenant = claims
            .get(&self.config.tenant_claim)
            .and_then(Value::as_str)
            .filter(|tenant| !tenant.is_empty())
            .ok_or(Refused::Token("the token names no tenant"))?;
        let scopes = match claims.get(&self.config.scopes_claim) {
            Some(Value::String(spaced)) => Some(Scopes::parse(spaced.split_whitespace())),
            Some(Value::Array(items)) => Some(Scopes::parse(items.iter().filter_map(Value::as_str))),
            _ => None,
        };
        let subject = claims.get("sub").and_then(Value::as_str).unwrap_or("jwt");
        // Required and checked above, so present and a number.
        let expires = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        let identity = Identity {
            tenant: Arc::from(tenant),
            label: super::tenant_label(tenant),
            subject: Arc::from(subject),
            scopes: scopes.map(Arc::new),
            limit: None,
        };
        Ok((identity, expires))
    }
}
