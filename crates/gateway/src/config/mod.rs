//! The gateway's configuration: defaults, then the TOML file, then `RAMPART_*` variables and
//! command-line flags, each layer over the one before.

pub mod layers;
mod sections;

pub use sections::{
    AdmissionConfig, ApiKeyConfig, AuthConfig, AuthMode, Balance, CorsConfig, CronConfig, FailMode, HeaderRules,
    HealthConfig, JobsConfig, JwtConfig, KeysFile, MirrorConfig, OutlierConfig, PoolConfig, RateLimitConfig,
    RetryConfig, RouteAdmission, RouteAuth, RouteConfig, RouteRateLimit, SniCertificate, TlsConfig, UpstreamEntry,
    WebSocketConfig, WeightedUpstream, WorkerTlsConfig,
};

use rampart_common::{breaker::BreakerConfig, rate_limit::Quota};
use serde::{Deserialize, Serialize};
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

/// Everything the gateway can be configured with. Every field has a default, so no file is
/// needed.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Public REST listener.
    pub listen: String,
    /// HTTPS on the public listener; plain HTTP/1.1 and h2c unless the `[tls]` section is present.
    pub tls: Option<TlsConfig>,
    /// Admin listener (health, backends, metrics, profiles). On a loopback address it is open to
    /// whoever can reach it; on any other address it needs `admin_token` or `admin_token_file`.
    pub admin_listen: String,
    /// The bearer token the admin listener asks for (`Authorization: Bearer TOKEN`); prefer
    /// `admin_token_file`, which keeps it out of the configuration.
    pub admin_token: Option<String>,
    /// A file holding the admin token (surrounding white space ignored).
    pub admin_token_file: Option<PathBuf>,
    /// TLS to the workers (with the gateway's client certificate); plain gRPC unless set.
    pub worker_tls: Option<WorkerTlsConfig>,
    /// Worker endpoints of the default pool: `http://HOST:PORT`, or `dns://NAME:PORT` for every
    /// address the name resolves to. It runs every job kind that no `[[pools]]` entry claims.
    pub workers: Vec<String>,
    /// How the default pool picks an endpoint.
    pub balance: Balance,
    /// Pools of workers for particular job kinds, such as a service crate's.
    pub pools: Vec<PoolConfig>,
    /// Path prefixes proxied to plain-HTTP upstreams.
    pub routes: Vec<RouteConfig>,
    /// Time budget of a request when the client sends no `Request-Timeout`.
    #[serde(with = "rampart_common::duration")]
    pub request_timeout: Duration,
    /// The longest budget a client may ask for with `Request-Timeout`.
    #[serde(with = "rampart_common::duration")]
    pub max_request_timeout: Duration,
    /// Largest request body accepted, in bytes; larger ones get 413.
    pub max_body_bytes: usize,
    /// Client connections open at once; more are closed as they arrive.
    pub max_connections: usize,
    /// Threads serving the public listener, each with its own socket and runtime (0: one per
    /// core the process may use).
    pub serving_threads: usize,
    /// Whether plain HTTP/1.1 requests without a body on `[[routes]]` take the lean forwarding
    /// path (parsed in place, forwarded on the serving thread's own upstream connections)
    /// rather than hyper's; both apply the same limits and protections.
    pub lean_proxy: bool,
    /// How long a client may take to send a request's headers, counted from the moment its
    /// connection is accepted or its previous request ended (slowloris and silent-socket guard).
    #[serde(with = "rampart_common::duration")]
    pub header_read_timeout: Duration,
    /// How long a connection with no request in flight stays open (HTTP/2; HTTP/1.1 keep-alive
    /// connections wait `header_read_timeout` for their next request).
    #[serde(with = "rampart_common::duration")]
    pub idle_timeout: Duration,
    /// Requests one connection may have in flight at once (HTTP/2 streams), so that no single
    /// connection takes more than its share of the admission budget.
    pub max_streams_per_connection: u32,
    /// The longest pause allowed between two pieces of a request body; past it, 408.
    #[serde(with = "rampart_common::duration")]
    pub body_read_timeout: Duration,
    /// Bytes per second a request body must average once `body_read_timeout` has passed since
    /// it started; a slower one gets 408 (trickled uploads cannot hold a slot for ever).
    pub min_body_rate: u64,
    /// Addresses (CIDR blocks, like `10.0.0.0/8`, or single addresses) of proxies in front of the
    /// gateway whose `X-Forwarded-For` is believed: behind them, the client is the last address
    /// in that header that is not itself a trusted proxy. Empty: the connection's peer is the
    /// client, whatever the header says.
    pub trusted_proxies: Vec<String>,
    /// On SIGTERM, how long requests in flight may take to finish.
    #[serde(with = "rampart_common::duration")]
    pub drain_timeout: Duration,
    /// How often `dns://` endpoints are resolved again.
    #[serde(with = "rampart_common::duration")]
    pub dns_refresh: Duration,
    /// Active health checks.
    pub health: HealthConfig,
    /// Passive ejection of failing endpoints.
    pub outlier: OutlierConfig,
    /// Retries and their budget.
    pub retry: RetryConfig,
    /// In-flight limits per route.
    pub admission: AdmissionConfig,
    /// Rate limits; none unless the `[rate_limit]` section is present.
    pub rate_limit: Option<RateLimitConfig>,
    /// Authentication; nobody is asked for a credential unless the `[auth]` section is present.
    pub auth: Option<AuthConfig>,
    /// Cross-origin policies by route; none by default (browsers then refuse other origins).
    pub cors: Vec<CorsConfig>,
    /// The circuit breaker each endpoint gets.
    pub breaker: BreakerConfig,
    /// Where durable jobs are kept: `sqlite://PATH` (embedded, one gateway) or
    /// `postgres://USER:PASS@HOST/DB` (shared by many gateways).
    pub store: String,
    /// Durable jobs: retries, leases, dispatch, retention.
    pub jobs: JobsConfig,
    /// Jobs enqueued on a schedule, once per tick across every gateway on the store.
    pub cron: Vec<CronConfig>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            tls: None,
            admin_listen: "127.0.0.1:9901".into(),
            admin_token: None,
            admin_token_file: None,
            worker_tls: None,
            workers: vec!["http://127.0.0.1:50051".into()],
            balance: Balance::default(),
            pools: Vec::new(),
            routes: Vec::new(),
            request_timeout: Duration::from_secs(30),
            max_request_timeout: Duration::from_secs(300),
            max_body_bytes: 1024 * 1024,
            max_connections: 10_000,
            serving_threads: 0,
            lean_proxy: true,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_streams_per_connection: 100,
            body_read_timeout: Duration::from_secs(10),
            min_body_rate: 1024,
            trusted_proxies: Vec::new(),
            drain_timeout: Duration::from_secs(30),
            dns_refresh: Duration::from_secs(5),
            health: HealthConfig::default(),
            outlier: OutlierConfig::default(),
            retry: RetryConfig::default(),
            admission: AdmissionConfig::default(),
            rate_limit: None,
            auth: None,
            cors: Vec::new(),
            breaker: BreakerConfig::default(),
            store: "sqlite://data/rampart.db".into(),
            jobs: JobsConfig::default(),
            cron: Vec::new(),
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
    /// How the public listener bounds its connections.
    pub fn connection_limits(&self) -> rampart_common::http::connection::ConnectionLimits {
        rampart_common::http::connection::ConnectionLimits {
            max_connections: self.max_connections,
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            max_streams_per_connection: self.max_streams_per_connection,
        }
    }

    /// Reads a config file; keys it leaves out keep their defaults.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        layers::load(Some(path), &[])
    }

    /// Checks what the types alone cannot: endpoint URLs, non-zero limits, no kind or prefix
    /// claimed twice. `origin` names where the values came from, for the error.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key: String, reason: String| ConfigError::Invalid { origin: origin.to_owned(), key, reason };
        check_endpoints("workers", &self.workers).map_err(|(key, reason)| invalid(key, reason))?;
        let mut names = std::collections::HashSet::from([rampart_jobs::workers::DEFAULT_POOL]);
        let mut claimed = std::collections::HashMap::new();
        for (index, pool) in self.pools.iter().enumerate() {
            let key = |field: &str| format!("pools[{index}].{field}");
            if pool.name.is_empty() || !names.insert(pool.name.as_str()) {
                return Err(invalid(key("name"), format!("{:?} is empty or already used", pool.name)));
            }
            check_endpoints(&key("workers"), &pool.workers).map_err(|(key, reason)| invalid(key, reason))?;
            for kind in &pool.kinds {
                if let Some(other) = claimed.insert(kind.as_str(), pool.name.as_str()) {
                    return Err(invalid(key("kinds"), format!("kind {kind:?} is already routed to pool {other:?}")));
                }
            }
        }
        let mut prefixes = std::collections::HashSet::new();
        for (index, route) in self.routes.iter().enumerate() {
            let key = |field: &str| format!("routes[{index}].{field}");
            if !route.prefix.starts_with('/') {
                return Err(invalid(key("prefix"), format!("{:?} must start with /", route.prefix)));
            }
            if route.prefix.starts_with("/api/") || route.prefix == "/api" {
                return Err(invalid(key("prefix"), "/api belongs to the job workers".into()));
            }
            let matched = (&route.prefix, &route.hosts, &route.methods, &route.match_headers);
            if !prefixes.insert(matched) {
                return Err(invalid(
                    key("prefix"),
                    format!("{:?} is used twice with the same hosts, methods and match_headers", route.prefix),
                ));
            }
            crate::proxy::matching::RouteMatch::new(route).map_err(|(field, reason)| invalid(key(field), reason))?;
            crate::proxy::rewrite::Rewrite::new(route).map_err(|(field, reason)| invalid(key(field), reason))?;
            if let Some(mirror) = &route.mirror {
                crate::proxy::mirror::Mirror::new(mirror, "", Duration::from_secs(1))
                    .map_err(|(field, reason)| invalid(key(field), reason))?;
            }
            let urls: Vec<String> = route.upstreams.iter().map(|entry| entry.url().to_owned()).collect();
            check_endpoints(&key("upstreams"), &urls).map_err(|(key, reason)| invalid(key, reason))?;
            for (at, entry) in route.upstreams.iter().enumerate() {
                if entry.weight().is_some() && entry.url().starts_with("dns:") {
                    return Err(invalid(
                        key(&format!("upstreams[{at}].url")),
                        "a dns:// name cannot be weighed: list its addresses with a weight each".into(),
                    ));
                }
            }
            if route.timeout.is_some_and(|timeout| timeout.is_zero()) {
                return Err(invalid(key("timeout"), "must be more than zero".into()));
            }
            if route.websocket.idle_timeout.is_zero() {
                return Err(invalid(key("websocket.idle_timeout"), "must be more than zero".into()));
            }
            if route.websocket.max_message_bytes == 0 {
                return Err(invalid(key("websocket.max_message_bytes"), "must be at least 1".into()));
            }
        }
        let positive = [
            ("request_timeout", self.request_timeout),
            ("max_request_timeout", self.max_request_timeout),
            ("header_read_timeout", self.header_read_timeout),
            ("idle_timeout", self.idle_timeout),
            ("body_read_timeout", self.body_read_timeout),
            ("dns_refresh", self.dns_refresh),
            ("health.interval", self.health.interval),
            ("health.timeout", self.health.timeout),
            ("outlier.base_ejection", self.outlier.base_ejection),
        ];
        for (key, value) in positive {
            if value.is_zero() {
                return Err(invalid(key.into(), "must be more than zero".into()));
            }
        }
        let at_least_one = [
            ("max_body_bytes", self.max_body_bytes),
            ("max_connections", self.max_connections),
            ("max_streams_per_connection", self.max_streams_per_connection as usize),
            ("admission.max_in_flight", self.admission.max_in_flight),
            ("health.rise", self.health.rise as usize),
            ("health.fall", self.health.fall as usize),
            ("retry.max_attempts", self.retry.max_attempts as usize),
        ];
        for (key, value) in at_least_one {
            if value == 0 {
                return Err(invalid(key.into(), "must be at least 1".into()));
            }
        }
        if self.outlier.max_ejected_percent > 100 {
            return Err(invalid("outlier.max_ejected_percent".into(), "must be at most 100".into()));
        }
        if !(0.0..=1.0).contains(&self.retry.budget_ratio) || self.retry.budget_min_per_second < 0.0 {
            return Err(invalid("retry".into(), "budget_ratio must be in 0..=1 and budget_min_per_second ≥ 0".into()));
        }
        for (index, route) in self.admission.routes.iter().enumerate() {
            if route.max_in_flight == 0 {
                return Err(invalid(format!("admission.routes[{index}].max_in_flight"), "must be at least 1".into()));
            }
        }
        if !["sqlite:", "postgres:", "postgresql:"].iter().any(|scheme| self.store.starts_with(scheme)) {
            return Err(invalid(
                "store".into(),
                format!("{:?} must be sqlite://PATH or postgres://USER:PASS@HOST/DB", self.store),
            ));
        }
        for (index, proxy) in self.trusted_proxies.iter().enumerate() {
            rampart_common::net::Cidr::parse(proxy)
                .map_err(|reason| invalid(format!("trusted_proxies[{index}]"), reason))?;
        }
        self.jobs.check().map_err(|(key, reason)| invalid(key, reason))?;
        let mut cron_names = std::collections::HashSet::new();
        for (index, entry) in self.cron.iter().enumerate() {
            let key = |field: &str| format!("cron[{index}].{field}");
            if entry.name.is_empty() || !cron_names.insert(entry.name.as_str()) {
                return Err(invalid(key("name"), format!("{:?} is empty or already used", entry.name)));
            }
            crate::api::job_spec::check_kind(&entry.kind)
                .map_err(|problem| invalid(key("kind"), problem.detail().to_owned()))?;
            rampart_jobs::durable::cron::Schedule::parse(entry)
                .map_err(|(field, reason)| invalid(key(field), reason))?;
        }
        self.breaker.validate().map_err(|error| invalid(format!("breaker.{}", error.key), error.reason.into()))?;
        for (index, cors) in self.cors.iter().enumerate() {
            crate::cors::Cors::new(cors)
                .map_err(|(field, reason)| invalid(format!("cors[{index}].{field}"), reason))?;
        }
        if let Some(tls) = &self.worker_tls {
            tls.client().map_err(|(key, reason)| invalid(key, reason))?;
        }
        if let Some(auth) = &self.auth {
            for (index, entry) in auth.routes.iter().enumerate() {
                if !crate::API_ROUTES.contains(&entry.route.as_str()) {
                    return Err(invalid(
                        format!("auth.routes[{index}].route"),
                        format!("{:?} is no API route: use one of {}", entry.route, crate::API_ROUTES.join(", ")),
                    ));
                }
            }
            crate::auth::Authenticator::new(auth).map_err(|(key, reason)| invalid(key, reason))?;
        }
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

/// Checks a non-empty list of endpoint URLs; on error, the key of the bad entry and why.
fn check_endpoints(key: &str, urls: &[String]) -> Result<(), (String, String)> {
    if urls.is_empty() {
        return Err((key.to_owned(), "at least one endpoint URL is needed".into()));
    }
    for (index, url) in urls.iter().enumerate() {
        check_endpoint_url(url).map_err(|reason| (format!("{key}[{index}]"), reason))?;
    }
    Ok(())
}

/// Accepts `http://HOST:PORT` or `dns://NAME:PORT` with nothing after the authority.
fn check_endpoint_url(url: &str) -> Result<(), String> {
    let hint = "write it like http://127.0.0.1:50051 or dns://worker:50051";
    let uri: http::Uri = url.parse().map_err(|error| format!("{url:?} is not a URL ({error}); {hint}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "dns")) {
        return Err(format!("{url:?} must start with http:// or dns://; {hint}"));
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
             request_timeout = \"2s\"\nmax_body_bytes = 10\n[health]\ninterval = \"250ms\"\n",
        );
        let config = GatewayConfig::from_file(&path).unwrap();
        assert_eq!(config.workers, ["http://a:1", "http://b:2"]);
        assert_eq!(config.request_timeout, Duration::from_secs(2));
        assert_eq!(config.max_body_bytes, 10);
        assert_eq!(config.health.interval, Duration::from_millis(250));
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
        let (_guard, path) = write("[[pools]]\nname = \"text\"\nworkers = [\"http://127.0.0.1:50061\"]\n");
        assert!(GatewayConfig::from_file(&path).unwrap().pools[0].kinds.is_empty(), "kinds are optional");
        for (text, key) in [
            ("[[pools]]\nname = \"default\"\nworkers = [\"http://a:1\"]\nkinds = [\"x\"]\n", "pools[0].name"),
            ("[[pools]]\nname = \"p\"\nworkers = []\nkinds = [\"x\"]\n", "pools[0].workers"),
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
    fn reads_and_checks_cron_entries() {
        let entry = |name: &str, schedule: &str, zone: &str| {
            format!("[[cron]]\nname = \"{name}\"\nschedule = \"{schedule}\"\ntime_zone = \"{zone}\"\nkind = \"echo\"\n")
        };
        let (_guard, path) =
            write(&format!("{}catch_up = \"all\"\nmax_catch_up = \"10m\"\n", entry("a", "*/5 * * * *", "UTC")));
        let config = GatewayConfig::from_file(&path).unwrap();
        assert_eq!(config.cron[0].catch_up, rampart_jobs::config::CatchUp::All);
        assert_eq!(config.cron[0].max_catch_up, Duration::from_secs(600));
        for (text, key) in [
            (entry("a", "every minute", "UTC"), "cron[0].schedule"),
            (entry("a", "* * * * *", "Nowhere/City"), "cron[0].time_zone"),
            (entry("a", "* * * * *", "UTC") + &entry("a", "0 * * * *", "UTC"), "cron[1].name"),
            (entry("a", "* * * * *", "UTC").replace("\"echo\"", "\"bad kind\""), "cron[0].kind"),
            (entry("a", "* * * * *", "UTC") + "catch_up = \"some\"\n", "catch_up"),
        ] {
            let (_guard, path) = write(&text);
            let error = GatewayConfig::from_file(&path).unwrap_err().to_string();
            assert!(error.contains(key), "{key}: {error}");
        }
    }

    #[test]
    fn reads_and_checks_the_jobs_section_and_store() {
        let (_guard, path) = write(
            "store = \"postgres://app@db/jobs\"\n[jobs]\nmax_attempts = 3\nlease = \"5s\"\nretention = \"7days\"\n\
             [jobs.kind_limits]\nresize = 8\n",
        );
        let config = GatewayConfig::from_file(&path).unwrap();
        assert_eq!(config.store, "postgres://app@db/jobs");
        assert_eq!(config.jobs.max_attempts, 3);
        assert_eq!(config.jobs.retention, Duration::from_secs(7 * 86_400));
        assert_eq!(config.jobs.kind_limits["resize"], 8);
        for (text, key) in [
            ("store = \"mysql://db\"\n", "store"),
            ("[jobs]\nmax_attempts = 0\n", "jobs.max_attempts"),
            ("[jobs]\nlease = \"100ms\"\n", "jobs.lease"),
            ("[jobs.kind_limits]\nresize = 0\n", "jobs.kind_limits.resize"),
        ] {
            let (_guard, path) = write(text);
            let error = GatewayConfig::from_file(&path).unwrap_err().to_string();
            assert!(error.contains(key), "{key}: {error}");
        }
    }

    #[test]
    fn the_readme_configuration_example_is_valid() {
        let readme = include_str!("../../../../README.md");
        let section = readme.split("## Configuration").nth(1).expect("a configuration section");
        let example =
            section.split("```toml\n").nth(1).and_then(|rest| rest.split("```").next()).expect("a toml block");
        let (_guard, path) = write(example);
        let config = GatewayConfig::from_file(&path).unwrap();
        assert_eq!(config.jobs, JobsConfig::default(), "the README shows the [jobs] defaults");
        assert_eq!(config.store, GatewayConfig::default().store);
    }

    #[test]
    fn the_kubernetes_gateway_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/k8s/gateway.toml");
        let config = GatewayConfig::from_file(&path).unwrap();
        assert_eq!(config.workers, ["dns://worker:50051"], "the headless worker Service");
        assert_eq!(config.listen, "0.0.0.0:8080");
        assert!(config.drain_timeout < Duration::from_secs(45), "below terminationGracePeriodSeconds");
    }

    #[test]
    fn a_missing_file_says_so() {
        let error = GatewayConfig::from_file(Path::new("/nonexistent/rampart.toml")).unwrap_err().to_string();
        assert!(error.contains("cannot read config file /nonexistent/rampart.toml"), "{error}");
    }

    #[test]
    fn urls_need_a_port_and_no_path() {
        assert!(check_endpoint_url("http://127.0.0.1:50051").is_ok());
        assert!(check_endpoint_url("http://worker:50051/").is_ok());
        assert!(check_endpoint_url("dns://worker:50051").is_ok());
        assert!(check_endpoint_url("http://worker").is_err());
        assert!(check_endpoint_url("http://worker:1/x").is_err());
        assert!(check_endpoint_url("worker:1").is_err());
        assert!(check_endpoint_url("https://worker:1").is_err());
    }

    #[test]
    fn the_proxy_benchmark_config_is_valid() {
        let (_guard, path) = write(
            "listen = \"127.0.0.1:19140\"\n\n[[routes]]\nprefix = \"/\"\n\
             upstreams = [\"http://127.0.0.1:19101\", \"http://127.0.0.1:19102\"]\nbalance = \"round_robin\"\n",
        );
        let config = GatewayConfig::from_file(&path).unwrap();
        assert_eq!(config.routes[0].balance, Balance::RoundRobin);
        assert_eq!(config.routes[0].upstreams.len(), 2);
    }

    #[test]
    fn routes_may_not_take_api_or_repeat_a_prefix() {
        for (text, key) in [
            ("[[routes]]\nprefix = \"/api/x\"\nupstreams = [\"http://a:1\"]\n", "routes[0].prefix"),
            ("[[routes]]\nprefix = \"x\"\nupstreams = [\"http://a:1\"]\n", "routes[0].prefix"),
            ("[[routes]]\nprefix = \"/x\"\nupstreams = []\n", "routes[0].upstreams"),
            (
                "[[routes]]\nprefix = \"/x\"\nupstreams = [\"http://a:1\"]\n[[routes]]\nprefix = \"/x\"\nupstreams = [\"http://a:1\"]\n",
                "routes[1].prefix",
            ),
        ] {
            let (_guard, path) = write(text);
            let error = GatewayConfig::from_file(&path).unwrap_err().to_string();
            assert!(error.contains(key), "{key}: {error}");
        }
    }
}
