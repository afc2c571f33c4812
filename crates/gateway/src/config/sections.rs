//! The sections of the gateway's configuration file.

use rampart_common::rate_limit::{Quota, QuotaError};
use serde::{Deserialize, Serialize};
use std::{path::PathBuf, time::Duration};

pub use rampart_balance::config::{Balance, HealthConfig, OutlierConfig, RetryConfig};
pub use rampart_jobs::config::{CronConfig, JobsConfig, PoolConfig};

/// `[[routes]]`: a path prefix proxied to plain-HTTP upstreams (the article's load balancer).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Requests whose path starts with this are proxied; the longest matching prefix wins.
    pub prefix: String,
    /// Upstreams: a base URL (`http://HOST:PORT` or `dns://NAME:PORT`), or `{ url = "...",
    /// weight = 10 }` for a share of the traffic in proportion to its weight (canaries).
    pub upstreams: Vec<UpstreamEntry>,
    /// How it picks an upstream.
    #[serde(default)]
    pub balance: Balance,
    /// Time budget of a proxied request [default: `request_timeout`].
    #[serde(default, with = "rampart_common::duration::optional")]
    pub timeout: Option<Duration>,
    /// Whether it asks for a credential [default: `[auth] default`].
    #[serde(default)]
    pub auth: Option<AuthMode>,
    /// WebSocket (and other `Upgrade`) connections proxied on this route.
    #[serde(default)]
    pub websocket: WebSocketConfig,
    /// Host names it serves (the `Host` field without its port, any case; `*.example.com` for
    /// every name under one); empty: any.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Methods it serves (`GET`, `POST`...); empty: any.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Fields a request must carry with these values to be served (name → exact value, or `*`
    /// for any value).
    #[serde(default)]
    pub match_headers: std::collections::BTreeMap<String, String>,
    /// What the matched prefix becomes upstream: `""` strips it (`/shop/cart` → `/cart`),
    /// `"/v2"` replaces it (`/v2/cart`); unset: the path goes as it came.
    #[serde(default)]
    pub rewrite_prefix: Option<String>,
    /// Fields changed on the request sent upstream.
    #[serde(default)]
    pub request_headers: HeaderRules,
    /// Fields changed on the answer sent back.
    #[serde(default)]
    pub response_headers: HeaderRules,
    /// A shadow upstream that gets a copy of a share of the requests without a body.
    #[serde(default)]
    pub mirror: Option<MirrorConfig>,
}

/// `[routes.mirror]`: copies of requests for a shadow upstream, whose answers are thrown away.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorConfig {
    /// The shadow: `http://HOST:PORT`.
    pub upstream: String,
    /// The share of the route's requests (without a body) copied, in percent.
    #[serde(default = "MirrorConfig::all")]
    pub percent: f64,
    /// Copies in flight at once; past it, copies are dropped (the main path never waits).
    #[serde(default = "MirrorConfig::default_in_flight")]
    pub max_in_flight: usize,
}

impl MirrorConfig {
    fn all() -> f64 {
        100.0
    }

    fn default_in_flight() -> usize {
        100
    }
}

/// Fields to set and to remove on a message: `set = { "x-from" = "rampart" }` replaces any
/// field of that name, `remove = ["x-debug"]` drops every one.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeaderRules {
    /// Name → value, replacing what the message had.
    pub set: std::collections::BTreeMap<String, String>,
    /// Names removed.
    pub remove: Vec<String>,
}

impl HeaderRules {
    /// Whether the rules change nothing.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }
}

/// One upstream of a route: its URL, and its weight when the route's traffic is shared out.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum UpstreamEntry {
    /// A base URL, weighing 1 where other entries have weights.
    Url(String),
    /// A base URL with a weight.
    Weighted(WeightedUpstream),
}

/// `{ url = "http://canary:8080", weight = 10 }`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedUpstream {
    /// The base URL (`http://HOST:PORT`; a `dns://` name cannot be weighed).
    pub url: String,
    /// Its share of the route's requests: weight / the sum of the weights of the upstreams that
    /// can take a request (0: only when no other can).
    pub weight: u32,
}

impl UpstreamEntry {
    /// The base URL.
    pub fn url(&self) -> &str {
        match self {
            Self::Url(url) | Self::Weighted(WeightedUpstream { url, .. }) => url,
        }
    }

    /// The weight it was given, if any.
    pub fn weight(&self) -> Option<u32> {
        match self {
            Self::Url(_) => None,
            Self::Weighted(weighted) => Some(weighted.weight),
        }
    }
}

impl From<&str> for UpstreamEntry {
    fn from(url: &str) -> Self {
        Self::Url(url.to_owned())
    }
}

/// `[routes.websocket]`: how upgraded connections on a route are bounded.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocketConfig {
    /// A connection with no byte either way for this long is closed (WebSocket close 1001).
    #[serde(with = "rampart_common::duration")]
    pub idle_timeout: Duration,
    /// The largest WebSocket message either side may send, in bytes (its frames summed); a larger
    /// one closes the connection (close 1009 to the client).
    pub max_message_bytes: u64,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        Self { idle_timeout: Duration::from_secs(300), max_message_bytes: 1024 * 1024 }
    }
}

/// `[admission]`: requests in flight allowed per route before the gateway sheds load.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdmissionConfig {
    /// Requests in flight per route; past it, `503 overloaded` at once.
    pub max_in_flight: usize,
    /// Routes with a different limit.
    pub routes: Vec<RouteAdmission>,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self { max_in_flight: 10_000, routes: Vec::new() }
    }
}

/// Whether a route asks for a credential: `auth = "required" | "optional" | "none"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// A request without a valid credential gets 401.
    #[default]
    Required,
    /// A request may come without a credential (anonymous); a wrong one still gets 401.
    Optional,
    /// Credentials are not looked at.
    None,
}

/// `[auth]`: who may call the gateway. Without the section nobody is asked for anything.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// What every route asks for unless it says otherwise (`[[routes]] auth`); `/health` and
    /// `/ready` are always open.
    pub default: AuthMode,
    /// The API keys, by their SHA-256 digests.
    pub keys: Vec<ApiKeyConfig>,
    /// A TOML file of more keys (`[[keys]]` entries like `[[auth.keys]]`), read again within a
    /// second of a change: add or revoke a key without a restart. A broken file keeps the keys
    /// read before, and says why in the log.
    pub keys_file: Option<std::path::PathBuf>,
    /// JSON Web Tokens, verified against a key set; none unless `[auth.jwt]` is present.
    pub jwt: Option<JwtConfig>,
    /// API routes that ask for something other than `default` (proxied prefixes say it on their
    /// `[[routes]]` entry).
    pub routes: Vec<RouteAuth>,
}

/// `[[auth.routes]]`: what one API route asks for.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteAuth {
    /// The route template: `/api/process`, `/api/jobs`, `/api/jobs/{id}`, `/api/jobs/{id}/events`
    /// or `/api/batch`.
    pub route: String,
    /// What it asks for.
    pub auth: AuthMode,
}

impl AuthConfig {
    /// What the API route `route` (a template) asks for.
    pub fn mode_for(&self, route: &str) -> AuthMode {
        self.routes.iter().find(|entry| entry.route == route).map_or(self.default, |entry| entry.auth)
    }
}

/// `[auth.jwt]`: bearer tokens signed by an identity provider (RS256, ES256 or EdDSA), checked
/// against its JSON Web Key Set.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// The key set: an `https://` URL (fetched at start, again every `refresh`, and when a
    /// token names a key it does not hold) or a file path (read again when it changes).
    pub jwks: String,
    /// A CA bundle, PEM, trusted for the JWKS URL besides the usual roots (a private
    /// identity provider).
    #[serde(default)]
    pub jwks_ca: Option<PathBuf>,
    /// The `iss` every token must carry.
    pub issuer: String,
    /// The `aud` every token must carry (one of its values).
    pub audience: String,
    /// The claim naming the caller's tenant.
    #[serde(default = "default_tenant_claim")]
    pub tenant_claim: String,
    /// The claim holding the caller's scopes: a space-separated string (OAuth 2.0) or an array.
    /// A token without it may use every route.
    #[serde(default = "default_scopes_claim")]
    pub scopes_claim: String,
    /// Clock difference tolerated on `exp` and `nbf`.
    #[serde(default = "default_leeway", with = "rampart_common::duration")]
    pub leeway: Duration,
    /// How often the key set is fetched again.
    #[serde(default = "default_jwks_refresh", with = "rampart_common::duration")]
    pub refresh: Duration,
    /// The least time between two fetches, however many tokens name unknown keys (so forged
    /// `kid`s cannot turn the gateway against the identity provider).
    #[serde(default = "default_jwks_min_refresh", with = "rampart_common::duration")]
    pub min_refresh: Duration,
}

fn default_tenant_claim() -> String {
    "tenant".into()
}

fn default_scopes_claim() -> String {
    "scope".into()
}

fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

fn default_jwks_refresh() -> Duration {
    Duration::from_secs(300)
}

fn default_jwks_min_refresh() -> Duration {
    Duration::from_secs(10)
}

/// A keys file: its `[[keys]]`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeysFile {
    /// The keys.
    pub keys: Vec<ApiKeyConfig>,
}

/// `[[auth.keys]]`: one API key, presented as `Authorization: Bearer KEY` or `X-Api-Key: KEY`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// The key's name, for logs (never the key).
    pub id: String,
    /// Who the key speaks for: its rate-limit bucket and its idempotency-key scope.
    pub tenant: String,
    /// `sha256:HEX` of the key; `rampart keys new` prints a key and this line.
    pub hash: String,
    /// What the key may use: `process:KIND`, `jobs:KIND` (submitting, batches, reading and
    /// cancelling), `route:/PREFIX` for a proxied route, with `*` for any kind, or `*` for
    /// everything. None: every route.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// Requests per second this key may make, on top of its tenant's limits.
    #[serde(default)]
    pub rate: Option<f64>,
    /// The burst of its own limit [default: its rate, at least 1].
    #[serde(default)]
    pub burst: Option<u32>,
}

/// `[[cors]]`: which browser origins may call some routes, answered by the gateway itself for
/// preflights (no worker or upstream sees them).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Route templates (`/api/jobs`, `/api/jobs/{id}`) and `[[routes]]` prefixes it covers.
    pub routes: Vec<String>,
    /// Origins allowed, as browsers send them (`https://app.example.com`), or `"*"` for any.
    pub allowed_origins: Vec<String>,
    /// Methods a preflight may ask for.
    #[serde(default = "default_cors_methods")]
    pub allowed_methods: Vec<String>,
    /// Request headers a preflight may ask for (any case).
    #[serde(default = "default_cors_headers")]
    pub allowed_headers: Vec<String>,
    /// Answer headers scripts may read.
    #[serde(default = "default_cors_exposed")]
    pub expose_headers: Vec<String>,
    /// How long a browser may keep a preflight's answer.
    #[serde(default = "default_cors_max_age", with = "rampart_common::duration")]
    pub max_age: Duration,
    /// Whether requests may carry cookies or credentials (then `"*"` is not allowed).
    #[serde(default)]
    pub allow_credentials: bool,
}

fn default_cors_methods() -> Vec<String> {
    ["GET", "POST", "DELETE"].map(String::from).to_vec()
}

fn default_cors_headers() -> Vec<String> {
    ["content-type", "authorization", "x-api-key", "idempotency-key", "request-timeout"].map(String::from).to_vec()
}

fn default_cors_exposed() -> Vec<String> {
    ["location", "retry-after", "ratelimit", "ratelimit-policy", "x-trace-id"].map(String::from).to_vec()
}

fn default_cors_max_age() -> Duration {
    Duration::from_secs(600)
}

/// `[[admission.routes]]`: the in-flight limit of one route.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteAdmission {
    /// The route template (`/api/process`) or a `[[routes]]` prefix.
    pub route: String,
    /// Requests in flight allowed on it.
    pub max_in_flight: usize,
}

/// `[rate_limit]`: per-client limits (a client is its address, the /64 of an IPv6 one, or behind
/// `trusted_proxies` the address they report), an optional global limit and per-route overrides
/// of the client limit.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
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
    /// Most clients tracked at once; past it, the clients nearest a full bucket are forgotten
    /// (they lose at most what they still owed) to make room for new ones.
    pub max_keys: usize,
    /// Client limits that differ by route.
    pub routes: Vec<RouteRateLimit>,
    /// The limits are the cluster's, not each gateway's: every gateway on the job store
    /// enforces its share (the limit divided by the live gateways its heartbeats see), exact
    /// when the load balancer spreads each client's requests evenly. False: each gateway
    /// enforces the whole limit on its own.
    pub share_across_gateways: bool,
    /// Redis holding the cluster's buckets (`redis://HOST:PORT[/DB]`): every gateway decides
    /// against the same buckets, one atomic script per decision. Absent: each gateway enforces
    /// its share locally.
    pub redis: Option<String>,
    /// What happens while Redis cannot be reached: `open` falls back to this gateway's share of
    /// each limit, `closed` refuses the requests the limits cover (503 `rate_limit_unavailable`).
    pub fail: FailMode,
    /// How long a decision waits for Redis before the fallback decides it.
    #[serde(with = "rampart_common::duration")]
    pub redis_timeout: Duration,
}

/// What rate limiting does while Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// Fall back to this gateway's share of each limit.
    #[default]
    Open,
    /// Refuse the requests the limits cover.
    Closed,
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
            share_across_gateways: true,
            redis: None,
            fail: FailMode::Open,
            redis_timeout: Duration::from_millis(50),
        }
    }
}

/// `[[rate_limit.routes]]`: a per-client limit for one route, replacing the default one there.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
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
    pub fn client_quota(&self) -> Result<Quota, QuotaError> {
        Quota::new(self.rate, self.burst)
    }

    /// The global quota, if any.
    pub fn global_quota(&self) -> Result<Option<Quota>, QuotaError> {
        self.global_rate
            .map(|rate| {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // clamped to u32
                let default_burst = rate.ceil().clamp(1.0, f64::from(u32::MAX)) as u32;
                Quota::new(rate, self.global_burst.unwrap_or(default_burst))
            })
            .transpose()
    }
}

/// `[tls]`: HTTPS on the public listener (TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`). The files
/// are read again when they change or on SIGHUP; connections already open keep the
/// certificate they began with, and files that do not load leave the old certificate in use.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, PEM, leaf first: presented to clients that ask for no host, or a
    /// host no `[[tls.sni]]` entry names.
    pub cert: PathBuf,
    /// Its private key, PEM.
    pub key: PathBuf,
    /// A CA bundle, PEM: when set, clients must present a certificate it signed (mTLS).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// More certificates, chosen by the host name a client asks for (SNI).
    #[serde(default)]
    pub sni: Vec<SniCertificate>,
    /// Also serve plain HTTP on this address (for callers inside the network, and load
    /// balancers' health checks); none by default.
    #[serde(default)]
    pub plain_listen: Option<String>,
}

/// `[worker_tls]`: TLS to the workers, with a client certificate, for workers started with
/// `--tls-cert` (and `--tls-client-ca`, so that only gateways can call them across hosts).
/// Endpoints are still written `http://HOST:PORT` or `dns://NAME:PORT`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerTlsConfig {
    /// The CA bundle (PEM) that signed the workers' certificates.
    pub ca: PathBuf,
    /// The gateway's client certificate chain (PEM), shown to workers.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// The name the workers' certificates carry [default: the host of each endpoint, which for
    /// `dns://` endpoints is an address].
    #[serde(default)]
    pub server_name: Option<String>,
}

impl WorkerTlsConfig {
    /// The client configuration the files describe; the error names the file at fault.
    pub fn client(&self) -> Result<tonic::transport::ClientTlsConfig, (String, String)> {
        let read = |key: &str, path: &std::path::Path| {
            std::fs::read(path).map_err(|error| (format!("worker_tls.{key}"), format!("{}: {error}", path.display())))
        };
        let mut tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(read("ca", &self.ca)?));
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                tls = tls.identity(tonic::transport::Identity::from_pem(read("cert", cert)?, read("key", key)?));
            }
            (None, None) => {}
            _ => return Err(("worker_tls".into(), "cert and key go together".into())),
        }
        if let Some(name) = &self.server_name {
            tls = tls.domain_name(name.clone());
        }
        Ok(tls)
    }
}

/// `[[tls.sni]]`: the certificate for one host name.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SniCertificate {
    /// The host name, as clients send it in SNI (any case).
    pub name: String,
    /// Its certificate chain, PEM.
    pub cert: PathBuf,
    /// Its private key, PEM.
    pub key: PathBuf,
}

impl TlsConfig {
    /// The files, as the TLS server reads them.
    pub fn files(&self) -> rampart_common::tls::server::ServerFiles {
        use rampart_common::tls::server::CertificateFiles;
        rampart_common::tls::server::ServerFiles {
            default: CertificateFiles { cert: self.cert.clone(), key: self.key.clone() },
            sni: self
                .sni
                .iter()
                .map(|entry| {
                    (entry.name.clone(), CertificateFiles { cert: entry.cert.clone(), key: entry.key.clone() })
                })
                .collect(),
            client_ca: self.client_ca.clone(),
            alpn: rampart_common::tls::http_alpn(),
        }
    }
}
