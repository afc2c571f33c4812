//! API keys: those of the config and those of a keys file read again when it changes. A key is
//! kept only as its SHA-256 digest (see the module above for why that is the right store).

use super::{Identity, scopes::Scopes};
use crate::config::{ApiKeyConfig, AuthConfig, KeysFile};
use arc_swap::ArcSwap;
use rampart_common::{
    files::Stamp,
    rate_limit::{DirectRateLimiter, Quota},
    secret::SecretDigest,
    shutdown::{Every, FirstTick},
};
use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};
use tokio_util::sync::CancellationToken;

/// How often the keys file is looked at: a revoked key stops working within this (and a read).
const KEYS_FILE_POLL: Duration = Duration::from_millis(250);

/// The prefix of a stored digest.
pub(super) const SHA256: &str = "sha256:";

/// One stored key.
#[derive(Debug)]
struct Key {
    digest: SecretDigest,
    quota: Option<(f64, u32)>,
    identity: Identity,
}

/// The keys of `entries`; the error names the entry (under `section`) at fault. A key that is
/// also in `before` (same id, digest and limit) keeps its limiter, so rereading the file does
/// not refill anyone's bucket.
fn keys_of(entries: &[ApiKeyConfig], section: &str, before: &[Arc<Key>]) -> Result<Vec<Arc<Key>>, (String, String)> {
    entries
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            let at = |field: &str| format!("{section}[{index}].{field}");
            let digest = parse_digest(&entry.hash)
                .ok_or_else(|| (at("hash"), format!("write it as {SHA256}HEX (64 hex digits)")))?;
            let quota = match (entry.rate, entry.burst) {
                (None, None) => None,
                (None, Some(_)) => return Err((at("burst"), "a burst needs a rate".into())),
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // a small positive rate
                (Some(rate), burst) => Some((rate, burst.unwrap_or_else(|| rate.ceil().max(1.0) as u32))),
            };
            let kept = before
                .iter()
                .find(|key| key.digest == digest && key.quota == quota && *key.identity.subject == *entry.id);
            let limit = match (kept, quota) {
                (Some(kept), _) => kept.identity.limit.clone(),
                (None, Some((rate, burst))) => Some(Arc::new(DirectRateLimiter::new(
                    Quota::new(rate, burst).map_err(|error| (at("rate"), error.to_string()))?,
                ))),
                (None, None) => None,
            };
            let identity = Identity {
                tenant: Arc::from(entry.tenant.as_str()),
                label: super::tenant_label(&entry.tenant),
                subject: Arc::from(entry.id.as_str()),
                scopes: entry.scopes.as_ref().map(|scopes| Arc::new(Scopes::parse(scopes.iter().map(String::as_str)))),
                limit,
            };
            Ok(Arc::new(Key { digest, quota, identity }))
        })
        .collect()
}

fn parse_digest(text: &str) -> Option<SecretDigest> {
    SecretDigest::from_hex(text.strip_prefix(SHA256)?)
}

/// The keys of a keys file.
fn read_keys_file(path: &Path, before: &[Arc<Key>]) -> Result<Vec<Arc<Key>>, (String, String)> {
    let origin = || format!("auth.keys_file ({})", path.display());
    let text = std::fs::read_to_string(path).map_err(|error| (origin(), error.to_string()))?;
    let file: KeysFile = toml::from_str(&text).map_err(|error| (origin(), error.to_string()))?;
    keys_of(&file.keys, &format!("{}: keys", path.display()), before)
}

/// The gateway's API keys, swapped whole when the keys file changes.
#[derive(Debug)]
pub struct Keys {
    inline: Vec<Arc<Key>>,
    file: Option<PathBuf>,
    keys: ArcSwap<Vec<Arc<Key>>>,
}

impl Keys {
    /// The keys of `config` and of its keys file; the error names the key or file at fault.
    pub fn new(config: &AuthConfig) -> Result<Self, (String, String)> {
        Self::after(config, None)
    }

    /// [`Keys::new`], where a key also held by `previous` (same id, digest and limit) keeps its
    /// limiter, so a reload refills nobody's bucket.
    pub fn after(config: &AuthConfig, previous: Option<&Self>) -> Result<Self, (String, String)> {
        let before = previous.map(|previous| previous.keys.load_full()).unwrap_or_default();
        let inline = keys_of(&config.keys, "auth.keys", &before)?;
        let mut keys = inline.clone();
        if let Some(path) = &config.keys_file {
            keys.extend(read_keys_file(path, &before)?);
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
            match read_keys_file(&path, &self.keys.load()) {
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

    /// The identity of the key `presented`, if it is one. Every stored digest is compared, each
    /// in constant time, so how long a check takes says nothing about any key.
    pub fn identify(&self, presented: &str) -> Option<Identity> {
        let digest = SecretDigest::of(presented.as_bytes());
        let keys = self.keys.load();
        let found = keys.iter().fold(None, |found, key| if key.digest.matches(&digest) { Some(key) } else { found });
        found.map(|key| key.identity.clone())
    }
}
