//! One way to set every key: the defaults, then the TOML file, then `RAMPART_*` environment
//! variables, then `--set KEY=VALUE` flags, each over the one before, merged as TOML and read
//! once, so every key of the file can be set the other two ways.
//!
//! A variable names a key by its path in capitals, levels joined by a double underscore:
//! `RAMPART_REQUEST_TIMEOUT=5s`, `RAMPART_JOBS__LEASE=30s`, `RAMPART_HEALTH__INTERVAL=2s`. A flag
//! names it with dots: `--set jobs.lease=30s`. A value is read as TOML (`5`, `true`,
//! `["a", "b"]`, `{ rate = 10.0, burst = 20 }`), except where the key holds text, which takes the
//! value as written; a list of text also takes comma-separated values
//! (`RAMPART_WORKERS=http://a:50051,http://b:50051`). Variables whose first level is not a key
//! of the file (`RAMPART_LOG`, the worker's `RAMPART_WORKER_*`) are not the gateway's and are
//! left alone.

use super::{ConfigError, GatewayConfig};
use std::path::Path;
use toml::{Table, Value};

/// Where an override came from, for errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A `RAMPART_*` environment variable.
    Environment,
    /// A command-line flag.
    Flag,
}

/// One key set outside the file: its dotted path and its value as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// Where it came from.
    pub source: Source,
    /// The key's path, `jobs.lease`.
    pub key: String,
    /// The value as written.
    pub value: String,
}

/// The prefix of the gateway's variables.
const PREFIX: &str = "RAMPART_";

/// The variables that are not configuration keys.
const NOT_KEYS: [&str; 1] = ["RAMPART_CONFIG"];

/// The overrides among `variables` (`std::env::vars()`), sorted by name.
pub fn from_environment(variables: impl IntoIterator<Item = (String, String)>) -> Vec<Override> {
    let top_level = top_level_keys();
    let mut overrides: Vec<Override> = variables
        .into_iter()
        .filter(|(name, _)| !NOT_KEYS.contains(&name.as_str()))
        .filter_map(|(name, value)| {
            let path = name.strip_prefix(PREFIX)?.to_ascii_lowercase().replace("__", ".");
            let first = path.split('.').next()?;
            top_level.iter().any(|key| key == first).then_some(Override {
                source: Source::Environment,
                key: path,
                value,
            })
        })
        .collect();
    overrides.sort_by(|a, b| a.key.cmp(&b.key));
    overrides
}

/// A `--set KEY=VALUE` flag's value read as an override.
pub fn parse_set(text: &str) -> Result<Override, String> {
    let (key, value) =
        text.split_once('=').ok_or_else(|| format!("--set takes KEY=VALUE, like jobs.lease=30s (got {text:?})"))?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(format!("--set needs a key path like jobs.lease (got {key:?})"));
    }
    Ok(Override { source: Source::Flag, key: key.to_owned(), value: value.to_owned() })
}

/// The top-level keys that are absent by default, so the defaults do not show them.
const OPTIONAL_KEYS: [&str; 6] = ["rate_limit", "auth", "tls", "worker_tls", "admin_token", "admin_token_file"];

/// Every key the file may have at its top level, optional sections included.
fn top_level_keys() -> Vec<String> {
    let mut keys: Vec<String> = defaults().keys().cloned().collect();
    keys.extend(OPTIONAL_KEYS.map(str::to_owned));
    keys
}

/// The defaults as TOML, to learn each key's type.
fn defaults() -> Table {
    Table::try_from(GatewayConfig::default()).unwrap_or_default()
}

/// The configuration: defaults, then `file`, then `overrides` in order; validated.
pub fn load(file: Option<&Path>, overrides: &[Override]) -> Result<GatewayConfig, ConfigError> {
    let mut table = match file {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
            // Read alone first, so a mistake in the file is reported with its line.
            let from_file: GatewayConfig = toml::from_str(&text)
                .map_err(|source| ConfigError::Parse { path: path.to_owned(), source: Box::new(source) })?;
            if overrides.is_empty() {
                from_file.validate(&path.display().to_string())?;
                return Ok(from_file);
            }
            toml::from_str::<Table>(&text)
                .map_err(|source| ConfigError::Parse { path: path.to_owned(), source: Box::new(source) })?
        }
        None => Table::new(),
    };
    let mut typed = defaults();
    merge(&mut typed, table.clone());
    for entry in overrides {
        let path: Vec<&str> = entry.key.split('.').collect();
        let value = typed_value(&entry.value, lookup(&typed, &path));
        set(&mut table, &path, value.clone()).map_err(|reason| invalid(entry, reason))?;
        // Later overrides of keys inside this one see its type.
        let _ = set(&mut typed, &path, value);
    }
    let origin = origin(file, overrides);
    let config: GatewayConfig = Value::Table(table).try_into().map_err(|error: toml::de::Error| {
        ConfigError::Invalid { origin: origin.clone(), key: culprit(overrides), reason: error.message().to_owned() }
    })?;
    config.validate(&origin)?;
    Ok(config)
}

fn invalid(entry: &Override, reason: String) -> ConfigError {
    ConfigError::Invalid { origin: describe(entry.source).to_owned(), key: entry.key.clone(), reason }
}

fn describe(source: Source) -> &'static str {
    match source {
        Source::Environment => "RAMPART_* variables",
        Source::Flag => "flags",
    }
}

/// Where the values came from, for errors.
fn origin(file: Option<&Path>, overrides: &[Override]) -> String {
    let mut parts: Vec<String> = file.map(|path| path.display().to_string()).into_iter().collect();
    for source in [Source::Environment, Source::Flag] {
        if overrides.iter().any(|entry| entry.source == source) {
            parts.push(describe(source).to_owned());
        }
    }
    if parts.is_empty() { "defaults".to_owned() } else { parts.join(", ") }
}

/// The keys set outside the file, for an error that cannot say which one is wrong.
fn culprit(overrides: &[Override]) -> String {
    let keys: Vec<&str> = overrides.iter().map(|entry| entry.key.as_str()).collect();
    if keys.is_empty() { "(file)".to_owned() } else { keys.join(", ") }
}

/// The value at `path`, if there is one.
fn lookup<'a>(table: &'a Table, path: &[&str]) -> Option<&'a Value> {
    let (last, parents) = path.split_last()?;
    let mut current = table;
    for key in parents {
        current = current.get(*key)?.as_table()?;
    }
    current.get(*last)
}

/// Sets `path` to `value`, making the tables on the way.
fn set(table: &mut Table, path: &[&str], value: Value) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else { return Err("an empty key".to_owned()) };
    let mut current = table;
    for key in parents {
        let next = current.entry((*key).to_owned()).or_insert_with(|| Value::Table(Table::new()));
        current = next.as_table_mut().ok_or_else(|| format!("{key} is not a section, so it has no keys"))?;
    }
    current.insert((*last).to_owned(), value);
    Ok(())
}

/// `raw` read for a key whose current value is `current`.
fn typed_value(raw: &str, current: Option<&Value>) -> Value {
    match current {
        Some(Value::String(_)) => Value::String(raw.to_owned()),
        Some(Value::Array(_)) if !raw.trim_start().starts_with('[') => Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| Value::String(item.into()))
                .collect(),
        ),
        _ => parse_value(raw).unwrap_or_else(|| Value::String(raw.to_owned())),
    }
}

/// `raw` as a TOML value, if it is one.
fn parse_value(raw: &str) -> Option<Value> {
    let mut document: Table = toml::from_str(&format!("value = {raw}")).ok()?;
    document.remove("value")
}

/// Merges `over` into `base`, table by table.
fn merge(base: &mut Table, over: Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(inner)), Value::Table(over)) => merge(inner, over),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn every_top_level_key_can_be_set_from_the_environment() {
        let everything = GatewayConfig {
            tls: Some(crate::config::TlsConfig {
                cert: "c".into(),
                key: "k".into(),
                client_ca: None,
                sni: Vec::new(),
                plain_listen: None,
            }),
            worker_tls: Some(crate::config::WorkerTlsConfig {
                ca: "a".into(),
                cert: None,
                key: None,
                server_name: None,
            }),
            admin_token: Some("t".into()),
            admin_token_file: Some("f".into()),
            auth: Some(crate::config::AuthConfig::default()),
            rate_limit: Some(crate::config::RateLimitConfig::default()),
            ..GatewayConfig::default()
        };
        let known = top_level_keys();
        for key in Table::try_from(everything).unwrap().keys() {
            assert!(known.contains(key), "RAMPART_{} would be ignored", key.to_ascii_uppercase());
        }
        let set = env(&[("RAMPART_ADMIN_TOKEN_FILE", "/run/secrets/admin-token")]);
        assert_eq!(load(None, &set).unwrap().admin_token_file, Some("/run/secrets/admin-token".into()));
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<Override> {
        from_environment(pairs.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())))
    }

    #[test]
    fn every_kind_of_key_can_be_set_by_variable() {
        let overrides = env(&[
            ("RAMPART_REQUEST_TIMEOUT", "5s"),
            ("RAMPART_MAX_BODY_BYTES", "2048"),
            ("RAMPART_JOBS__LEASE", "45s"),
            ("RAMPART_WORKERS", "http://a:1, http://b:2"),
            ("RAMPART_TRUSTED_PROXIES", "10.0.0.0/8"),
            ("RAMPART_RATE_LIMIT__RATE", "50"),
            ("RAMPART_RATE_LIMIT__BURST", "100"),
            ("RAMPART_JOBS__KIND_LIMITS", "{ resize = 4 }"),
            ("RAMPART_LOG", "debug"),
            ("RAMPART_WORKER_LISTEN", "127.0.0.1:1"),
            ("RAMPART_CONFIG", "ignored.toml"),
        ]);
        assert_eq!(overrides.len(), 8, "RAMPART_LOG, RAMPART_WORKER_* and RAMPART_CONFIG are not keys: {overrides:?}");
        let config = load(None, &overrides).unwrap();
        assert_eq!(config.request_timeout, Duration::from_secs(5));
        assert_eq!(config.max_body_bytes, 2048);
        assert_eq!(config.jobs.lease, Duration::from_secs(45));
        assert_eq!(config.workers, ["http://a:1", "http://b:2"]);
        assert_eq!(config.trusted_proxies, ["10.0.0.0/8"]);
        let limits = config.rate_limit.unwrap();
        assert_eq!((limits.rate, limits.burst), (50.0, 100));
        assert_eq!(config.jobs.kind_limits["resize"], 4);
    }

    #[test]
    fn flags_win_over_variables_which_win_over_the_file() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, b"request_timeout = \"7s\"\n[jobs]\nlease = \"20s\"\nmax_attempts = 4\n")
            .unwrap();
        let mut overrides = env(&[("RAMPART_JOBS__LEASE", "40s"), ("RAMPART_REQUEST_TIMEOUT", "8s")]);
        overrides.push(parse_set("request_timeout=9s").unwrap());
        let config = load(Some(file.path()), &overrides).unwrap();
        assert_eq!(config.request_timeout, Duration::from_secs(9));
        assert_eq!(config.jobs.lease, Duration::from_secs(40));
        assert_eq!(config.jobs.max_attempts, 4, "the file's other keys stay");
    }

    #[test]
    fn a_wrong_key_or_value_is_refused_naming_it() {
        let error = load(None, &[parse_set("jobs.leese=30s").unwrap()]).unwrap_err().to_string();
        assert!(error.contains("leese") && error.contains("flags"), "{error}");
        let error = load(None, &env(&[("RAMPART_MAX_BODY_BYTES", "lots")])).unwrap_err().to_string();
        assert!(error.contains("RAMPART_* variables") && error.contains("max_body_bytes"), "{error}");
        let error = load(None, &env(&[("RAMPART_JOBS__LEASE", "100ms")])).unwrap_err().to_string();
        assert!(error.contains("jobs.lease"), "validated like the file: {error}");
        assert!(parse_set("novalue").is_err() && parse_set("a..b=1").is_err());
    }
}
