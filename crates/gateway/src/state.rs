//! What request handlers work from. A [`Components`] is one generation of the configuration
//! and everything built from it (routes, limits, keys, policies); a reload builds the next one
//! and swaps it in ([`crate::reload`]), while requests already running keep the one they
//! started with. What outlives every generation (the worker pools, the job engine, the running
//! totals) is shared by all of them.

use crate::{admission, auth, config::GatewayConfig, cors, observe, proxy, rate_limit, reload::Live};
use anyhow::Context as _;
use axum::extract::FromRequestParts;
use http::{StatusCode, request::Parts};
use std::sync::Arc;

/// One request's view: the generation it started on, and the upstream connections of the
/// thread serving it. Cloned for every request; two reference counts.
#[derive(Clone)]
pub struct AppState {
    generation: Arc<Components>,
    local: Arc<Local>,
}

/// What belongs to a serving thread rather than to a generation.
struct Local {
    /// The pooled HTTP client for upstreams (and, on the main runtime, their health checks).
    http: proxy::client::HttpClient,
    /// The lean path's keep-alive connections to upstreams.
    upstream_pool: proxy::lean::Pool,
    /// Where the generation in force is kept.
    live: Arc<Live>,
}

impl std::ops::Deref for AppState {
    type Target = Components;

    fn deref(&self) -> &Components {
        &self.generation
    }
}

impl AppState {
    /// The state of a gateway whose configuration in force is kept by `live`.
    pub(crate) fn new(live: Arc<Live>) -> Self {
        let local = Local { http: proxy::client::new(), upstream_pool: proxy::lean::Pool::new(), live };
        Self { generation: local.live.current(), local: Arc::new(local) }
    }

    /// `main`'s view (its upstream connections) of `generation`, a generation not yet in force.
    pub(crate) fn new_generation(main: &Self, generation: Arc<Components>) -> Self {
        Self { generation, local: Arc::clone(&main.local) }
    }

    /// The generation this state works from.
    pub(crate) fn generation(&self) -> &Arc<Components> {
        &self.generation
    }

    /// The same state with upstream connections of its own (each serving thread keeps its own
    /// pools, driven by its own runtime).
    pub fn with_own_upstream_pools(&self) -> Self {
        Self::new(Arc::clone(&self.local.live))
    }

    /// This thread's view of the generation in force now: what a new request starts on.
    pub fn latest(&self) -> Self {
        Self { generation: self.local.live.current(), local: Arc::clone(&self.local) }
    }

    /// The pooled HTTP client for upstreams.
    pub fn http(&self) -> &proxy::client::HttpClient {
        &self.local.http
    }

    /// The lean path's upstream connections of this serving thread.
    pub fn upstream_pool(&self) -> &proxy::lean::Pool {
        &self.local.upstream_pool
    }

    /// Where the configuration in force is kept and replaced.
    pub fn live(&self) -> &Arc<Live> {
        &self.local.live
    }
}

/// Handlers take the state the front door put in the request's extensions: the generation the
/// request started on, whatever has been reloaded since.
impl<S: Send + Sync> FromRequestParts<S> for AppState {
    type Rejection = crate::problem::Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Self>().cloned().ok_or_else(|| {
            crate::problem::Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                crate::problem::ProblemCode::InvalidRequest,
                "the request reached a handler without the gateway's state",
            )
        })
    }
}

/// What every generation shares: built once, when the gateway starts.
#[derive(Clone)]
pub struct Shared {
    /// The worker pools and their endpoints.
    pub pools: Arc<rampart_jobs::workers::Pools>,
    /// The budget retries draw from.
    pub retry_budget: Arc<rampart_balance::retry::RetryBudget>,
    /// Running totals for the admin pages.
    pub stats: Arc<observe::Stats>,
    /// Durable jobs: the store and the dispatcher.
    pub jobs: Arc<rampart_jobs::durable::Jobs>,
}

/// One generation of the gateway's configuration and what is built from it.
pub struct Components {
    /// Which generation this is: 1 at start, one more for every reload that applied.
    pub version: u64,
    /// The gateway's configuration.
    pub config: Arc<GatewayConfig>,
    /// The worker pools and their endpoints.
    pub pools: Arc<rampart_jobs::workers::Pools>,
    /// The proxied routes and their upstreams.
    pub routes: Arc<proxy::Routes>,
    /// In-flight limits per route.
    pub admission: Arc<admission::Admission>,
    /// The budget retries draw from.
    pub retry_budget: Arc<rampart_balance::retry::RetryBudget>,
    /// The cross-origin policies.
    pub cors: Arc<cors::CorsPolicies>,
    /// The API keys and token verifier, when `[auth]` is configured.
    pub auth: Option<Arc<auth::Authenticator>>,
    /// The rate limiters, when `[rate_limit]` is configured.
    pub rate_limits: Option<Arc<rate_limit::RateLimits>>,
    /// Running totals for the admin pages.
    pub stats: Arc<observe::Stats>,
    /// Durable jobs: the store and the dispatcher.
    pub jobs: Arc<rampart_jobs::durable::Jobs>,
    /// The proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Arc<rampart_common::net::TrustedProxies>,
}

impl Components {
    /// Generation `version` for `config` (already validated), over `shared`. What `previous`
    /// built and `config` leaves as it was carries over with its state: a route's endpoints
    /// (health, breakers, latency), an in-flight count, a rate limiter's buckets, a key's own
    /// limit, the token verifier's keys.
    pub async fn assemble(
        config: GatewayConfig,
        version: u64,
        shared: &Shared,
        previous: Option<&Self>,
    ) -> anyhow::Result<Self> {
        let before = previous.map(|previous| (&*previous.config, previous));
        let routes = proxy::Routes::new(&config, before.map(|(config, previous)| (config, &*previous.routes)));
        let rate_limits = match &config.rate_limit {
            Some(limits) => {
                let kept = before.and_then(|(_, previous)| previous.rate_limits.as_deref());
                Some(Arc::new(rate_limit::RateLimits::new(limits, kept).context("invalid rate limit")?))
            }
            None => None,
        };
        let auth = match &config.auth {
            Some(settings) => {
                let kept =
                    before.and_then(|(config, previous)| Some((config.auth.as_ref()?, previous.auth.as_deref()?)));
                Some(Arc::new(auth::Authenticator::assemble(settings, kept).await?))
            }
            None => None,
        };
        let gates = crate::API_ROUTES.into_iter().chain(routes.all().iter().map(proxy::Route::prefix));
        let admission =
            admission::Admission::new(&config.admission, gates, before.map(|(_, previous)| &*previous.admission));
        Ok(Self {
            version,
            pools: Arc::clone(&shared.pools),
            routes: Arc::new(routes),
            admission: Arc::new(admission),
            retry_budget: Arc::clone(&shared.retry_budget),
            cors: Arc::new(cors::CorsPolicies::new(&config.cors)),
            rate_limits,
            auth,
            stats: Arc::clone(&shared.stats),
            jobs: Arc::clone(&shared.jobs),
            trusted_proxies: Arc::new(rampart_common::net::TrustedProxies::new(
                config.trusted_proxies.iter().map(String::as_str),
            )),
            config: Arc::new(config),
        })
    }

    /// What every generation shares, as this one holds it.
    pub fn shared(&self) -> Shared {
        Shared {
            pools: Arc::clone(&self.pools),
            retry_budget: Arc::clone(&self.retry_budget),
            stats: Arc::clone(&self.stats),
            jobs: Arc::clone(&self.jobs),
        }
    }
}
