//! The gateway's configuration: defaults, then the TOML file, then `RAMPART_*` variables and
//! command-line flags, each layer over the one before.

use rampart_common::{breaker::BreakerConfig, rate_limit::Quota};
use serde::Deserialize;
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

/// Everything the gateway can be configured with. Every field has a default, so no file is
/// needed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Public REST listener.
    pub listen: String,
    /// Admin listener (health, backends; later metrics and profiles).
    pub admin_listen: String,
    /// Worker endpoints of the default pool, as `http://HOST:PORT` URLs. It runs every job kind
    /// that no `[[pools]]` entry claims.
    pub workers: Vec<String>,
    /// Pools of workers for particular job kinds, such as a service crate's.
    pub pools: Vec<PoolConfig>,
    /// Time budget of a request when the client sets none.
    #[serde(with = "rampart_common::duration")]
    pub request_timeout: Duration,
    /// Largest request body accepted, in bytes; larger ones get 413.
    pub max_body_bytes: usize,
    /// How often each worker's `grpc.health.v1` status is checked.
    #[serde(with = "rampart_common::duration")]
    pub health_check_interval: Duration,
    /// Rate limits; none unless the `[rate_limit]` section is present.
    pub rate_limit: Option<RateLimitConfig>,
    /// The circuit breaker each worker endpoint gets.
    pub breaker: BreakerConfig,
}

/// `[[pools]]`: workers that run the listed job kinds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// The pool's name, shown at `/admin/backends` and in logs.
    pub name: String,
    /// Its worker endpoints, as `http://HOST:PORT` URLs.
    pub workers: Vec<String>,
    /// The job kinds routed to it.
    pub kinds: Vec<String>,
}

/// `[rate_limit]`: per-client limits (by `X-Api-Key`, else client IP), an optional global limit
/// and per-route overrides of the client limit.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Requests per second each client may make, sustained.
    pub rate: f64,
    /// Requests each client may make at once.
    pub burst: u32,
    /// Requests per second across all clients; no global limit when absent.
    pub global_rate: Option<f64>,
    /// Global burst [default: one second at `global_rate`].
    pub global_burst: Option<u32>,
    /// Most clients tracked at once; past it, new clients share one bucket.
    pub max_keys: usize,
    /// Client limits that differ by route.
    pub routes: Vec<RouteRateLimit>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            rate: 1000.0,
            burst: 200,
            global_rate: None,
            global_burst: None,
            max_keys: 1_000_000,
            routes: Vec::new(),
        }
    }
}

/// `[[rate_limit.routes]]`: a per-client limit for one route, replacing the default one there.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRateLimit {
    /// The route template, for example `/api/process`.
    pub route: String,
    /// Requests per second each client may make on this route.
    pub rate: f64,
    /// Requests each client may make at once on this route.
    pub burst: u32,
}

impl RateLimitConfig {
    /// The per-client quota.
    pub fn client_quota(&self) -> Result<Quota, rampart_common::rate_limit::QuotaError> {
        Quota::new(self.rate, self.burst)
    }

    /// The global quota, if any.
    pub fn global_quota(&self) -> Result<Option<Quota>, rampart_common::rate_limit::QuotaError> {
        self.global_rate
            .map(|rate| {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // clamped to u32
                let default_burst = rate.ceil().clamp(1.0, f64::from(u32::MAX)) as u32;
                Quota::new(rate, self.global_burst.unwrap_or(default_burst))
            })
            .transpose()
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            admin_listen: "127.0.0.1:9901".into(),
            workers: vec!["http://127.0.0.1:50051".into()],
            pools: Vec::new(),
            request_timeout: Duration::from_secs(30),
            max_body_bytes: 1024 * 1024,
            health_check_interval: Duration::from_secs(1),
            rate_limit: None,
            breaker: BreakerConfig::default(),
        }
    }
}

/// A configuration that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has a wrong key or value.
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the key and line.
        source: Box<toml::de::Error>,
    },
    /// A value is of the right type but cannot be used.
    #[error("invalid config ({origin}): {key}: {reason}")]
    Invalid {
        /// The file, or "flags" for command-line values.
        origin: String,
        /// The key at fault.
        key: String,
        /// What is wrong and how to write it.
        reason: String,
    },
}

impl GatewayConfig {
    /// Reads a config file; keys it leaves out keep their defaults.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let config: Self = toml::from_str(&text)
            .map_err(|source| ConfigError::Parse { path: path.to_owned(), source: Box::new(source) })?;
        config.validate(&path.display().to_string())?;
        Ok(config)
    }

    /// Checks what the types alone cannot: worker URLs, non-zero limits. `origin` names where the
    /// values came from, for the error.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key: String, reason: String| ConfigError::Invalid { origin: origin.to_owned(), key, reason };
        if self.workers.is_empty() {
            return Err(invalid("workers".into(), "at least one worker URL is needed".into()));
        }
        for (index, url) in self.workers.iter().enumerate() {
            check_worker_url(url).map_err(|reason| invalid(format!("workers[{index}]"), reason))?;
        }
        let mut names = std::collections::HashSet::from([crate::pools::DEFAULT_POOL]);
        let mut claimed = std::collections::HashMap::new();
        for (index, pool) in self.pools.iter().enumerate() {
            let key = |field: &str| format!("pools[{index}].{field}");
            if pool.name.is_empty() || !names.insert(pool.name.as_str()) {
                return Err(invalid(key("name"), format!("{:?} is empty or already used", pool.name)));
            }
            if pool.workers.is_empty() {
                return Err(invalid(key("workers"), "at least one worker URL is needed".into()));
            }
            for (at, url) in pool.workers.iter().enumerate() {
                check_worker_url(url).map_err(|reason| invalid(format!("pools[{index}].workers[{at}]"), reason))?;
            }
            if pool.kinds.is_empty() {
                return Err(invalid(key("kinds"), "list the job kinds this pool runs".into()));
            }
            for kind in &pool.kinds {
                if let Some(other) = claimed.insert(kind.as_str(), pool.name.as_str()) {
                    return Err(invalid(key("kinds"), format!("kind {kind:?} is already routed to pool {other:?}")));
                }
            }
        }
        if self.request_timeout.is_zero() {
            return Err(invalid("request_timeout".into(), "must be more than zero".into()));
        }
        if self.max_body_bytes == 0 {
            return Err(invalid("max_body_bytes".into(), "must be more than zero".into()));
        }
        if self.health_check_interval.is_zero() {
            return Err(invalid("health_check_interval".into(), "must be more than zero".into()));
        }
        self.breaker.validate().map_err(|error| invalid(format!("breaker.{}", error.key), error.reason.into()))?;
        if let Some(limits) = &self.rate_limit {
            limits.client_quota().map_err(|error| invalid("rate_limit".into(), error.to_string()))?;
            limits.global_quota().map_err(|error| invalid("rate_limit.global_rate".into(), error.to_string()))?;
            if limits.max_keys == 0 {
                return Err(invalid("rate_limit.max_keys".into(), "must be at least 1".into()));
            }
            for (index, route) in limits.routes.iter().enumerate() {
                let key = format!("rate_limit.routes[{index}]");
                if !route.route.starts_with('/') {
                    return Err(invalid(key, format!("route {:?} must start with /", route.route)));
                }
                Quota::new(route.rate, route.burst).map_err(|error| invalid(key, error.to_string()))?;
            }
        }
        Ok(())
    }
}

/// Accepts `http://HOST:PORT` with nothing after the authority.
fn check_worker_url(url: &str) -> Result<(), String> {
    let hint = "write it like http://127.0.0.1:50051";
    let uri: http::Uri = url.parse().map_err(|error| format!("{url:?} is not a URL ({error}); {hint}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("{url:?} must start with http://; {hint}"));
    }
    match uri.authority() {
        Some(authority) if authority.port_u16().is_some() => {}
        _ => return Err(format!("{url:?} has no port; {hint}")),
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!("{url:?} must not have a path; {hint}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config file holding `text`, removed when the guard drops.
    fn write(text: &str) -> (tempfile::NamedTempFile, PathBuf) {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
        let path = file.path().to_owned();
        (file, path)
    }

    #[test]
    fn a_missing_key_keeps_its_default() {
        let (_guard, path) = write("listen = \"0.0.0.0:80\"\n");
        let config = GatewayConfig::from_file(&path).unwrap();
        assert_eq!(config.listen, "0.0.0.0:80");
        assert_eq!(config.admin_listen, GatewayConfig::default().admin_listen);
    }

    #[test]
    fn reads_every_key() {
        let (_guard, path) = write(
            "listen = \"127.0.0.1:1\"\nadmin_listen = \"127.0.0.1:2\"\nworkers = [\"http://a:1\", \"http://b:2\"]\n\
             request_timeout = \"2s\"\nmax_body_bytes = 10\nhealth_check_interval = \"250ms\"\n",
        );
        let config = GatewayConfig::from_file(&path).unwrap();
        assert_eq!(config.workers, ["http://a:1", "http://b:2"]);
        assert_eq!(config.request_timeout, Duration::from_secs(2));
        assert_eq!(config.max_body_bytes, 10);
        assert_eq!(config.health_check_interval, Duration::from_millis(250));
    }

    #[test]
    fn an_unknown_key_names_the_file_and_key() {
        let (_guard, path) = write("lissen = \"x\"\n");
        let error = GatewayConfig::from_file(&path).unwrap_err().to_string();
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(error.contains("lissen"), "{error}");
    }

    #[test]
    fn a_wrong_type_or_bad_url_is_refused_with_the_key() {
        let (_guard, path) = write("max_body_bytes = \"big\"\n");
        let error = GatewayConfig::from_file(&path).unwrap_err().to_string();
        assert!(error.contains("max_body_bytes"), "{error}");

        let (_guard, path) = write("workers = [\"http://ok:1\", \"ftp://x:2\"]\n");
        let error = GatewayConfig::from_file(&path).unwrap_err().to_string();
        assert!(error.contains("workers[1]") && error.contains("http://"), "{error}");
    }

    #[test]
    fn reads_the_design_example_sections() {
        let (_guard, path) = write(
            "[rate_limit]\nrate = 1000\nburst = 200\nglobal_rate = 100000\n\n\
             [[rate_limit.routes]]\nroute = \"/api/process\"\nrate = 5\nburst = 2\n\n\
             [breaker]\nconsecutive_failures = 5\nfailure_ratio = 0.5\nmin_requests = 20\nwindow = \"10s\"\n\
             open_timeout = \"5s\"\nhalf_open_probes = 3\n",
        );
        let config = GatewayConfig::from_file(&path).unwrap();
        let limits = config.rate_limit.unwrap();
        assert_eq!(limits.client_quota().unwrap().burst(), 200);
        assert_eq!(limits.global_quota().unwrap().unwrap().burst(), 100_000);
        assert_eq!(limits.routes[0].route, "/api/process");
        assert_eq!(config.breaker.open_timeout, Duration::from_secs(5));
        assert_eq!(config.breaker.slow_call, BreakerConfig::default().slow_call);
    }

    #[test]
    fn bad_limits_and_breaker_settings_name_their_key() {
        let (_guard, path) = write("[rate_limit]\nrate = 0\n");
        let error = GatewayConfig::from_file(&path).unwrap_err().to_string();
        assert!(error.contains("rate_limit") && error.contains("rate must be"), "{error}");
        let (_guard, path) = write("[breaker]\nhalf_open_probes = 0\n");
        let error = GatewayConfig::from_file(&path).unwrap_err().to_string();
        assert!(error.contains("breaker.half_open_probes"), "{error}");
        let (_guard, path) = write("[[rate_limit.routes]]\nroute = \"api\"\nrate = 1\nburst = 1\n");
        let error = GatewayConfig::from_file(&path).unwrap_err().to_string();
        assert!(error.contains("rate_limit.routes[0]"), "{error}");
    }

    #[test]
    fn pools_are_read_and_checked() {
        let (_guard, path) =
            write("[[pools]]\nname = \"text\"\nworkers = [\"http://127.0.0.1:50061\"]\nkinds = [\"wordcount\"]\n");
        let config = GatewayConfig::from_file(&path).unwrap();
        assert_eq!(config.pools[0].kinds, ["wordcount"]);
        for (text, key) in [
            ("[[pools]]\nname = \"default\"\nworkers = [\"http://a:1\"]\nkinds = [\"x\"]\n", "pools[0].name"),
            ("[[pools]]\nname = \"p\"\nworkers = []\nkinds = [\"x\"]\n", "pools[0].workers"),
            ("[[pools]]\nname = \"p\"\nworkers = [\"http://a:1\"]\nkinds = []\n", "pools[0].kinds"),
            (
                "[[pools]]\nname = \"p\"\nworkers = [\"http://a:1\"]\nkinds = [\"x\"]\n\
                 [[pools]]\nname = \"q\"\nworkers = [\"http://a:1\"]\nkinds = [\"x\"]\n",
                "pools[1].kinds",
            ),
        ] {
            let (_guard, path) = write(text);
            let error = GatewayConfig::from_file(&path).unwrap_err().to_string();
            assert!(error.contains(key), "{key}: {error}");
        }
    }

    #[test]
    fn a_missing_file_says_so() {
        let error = GatewayConfig::from_file(Path::new("/nonexistent/rampart.toml")).unwrap_err().to_string();
        assert!(error.contains("cannot read config file /nonexistent/rampart.toml"), "{error}");
    }

    #[test]
    fn urls_need_a_port_and_no_path() {
        assert!(check_worker_url("http://127.0.0.1:50051").is_ok());
        assert!(check_worker_url("http://worker:50051/").is_ok());
        assert!(check_worker_url("http://worker").is_err());
        assert!(check_worker_url("http://worker:1/x").is_err());
        assert!(check_worker_url("worker:1").is_err());
    }
}
