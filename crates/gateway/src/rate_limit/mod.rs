//! Rate limiting at the front door: a limit per client, per-route overrides of that limit, and an
//! optional global limit. Every limited answer carries `RateLimit-Policy` and `RateLimit`; a
//! refusal is a 429 `rate_limited` with `Retry-After`.
//!
//! The limits are the cluster's. With `redis` configured every gateway decides against the
//! same buckets there ([`redis`]); without it, or while Redis cannot be reached, each gateway
//! enforces its share of each limit (the limit divided by the live gateways on its job store).
//!
//! A client is its address (the /64 of an IPv6 one), as the connection shows it or, behind
//! `trusted_proxies`, as they report it. No header the client writes chooses its bucket: an
//! unauthenticated `X-Api-Key` would let a client mint itself a fresh bucket per request, or
//! spend someone else's.

mod redis;

use crate::{
    auth::Identity,
    config::{FailMode, RateLimitConfig},
    problem::{Problem, ProblemCode},
};
use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, StatusCode};
use rampart_common::rate_limit::{Decision, DirectRateLimiter, KeyedRateLimiter, Quota, QuotaError};
use std::{collections::HashMap, net::IpAddr, sync::Arc, time::Duration};

/// The header naming the quota policy (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// The header with the live counters for that policy.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// Who a request is charged to: its tenant once authenticated (whatever key or address it
/// comes from), else its address.
#[derive(Hash)]
enum Client<'a> {
    Tenant(&'a str),
    Ip(IpAddr),
    Unknown,
}

impl Client<'_> {
    /// The client as part of a Redis key: the same on every gateway.
    fn key(&self) -> String {
        match self {
            Self::Tenant(tenant) => format!("tenant:{tenant}"),
            Self::Ip(address) => format!("ip:{address}"),
            Self::Unknown => "unknown".to_owned(),
        }
    }
}

/// Why the limits cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    /// A rate or burst is unusable.
    #[error(transparent)]
    Quota(#[from] QuotaError),
    /// The Redis URL is unusable.
    #[error("rate_limit.redis: {0}")]
    Redis(#[from] ::redis::RedisError),
}

/// The gateway's limiters, built from `[rate_limit]`.
pub struct RateLimits {
    client: Arc<KeyedRateLimiter>,
    routes: HashMap<String, Arc<KeyedRateLimiter>>,
    global: Option<Arc<DirectRateLimiter>>,
    /// Clients each keyed limiter tracks at most.
    max_keys: usize,
    /// Whether the limits are shared out over the live gateways.
    shared: bool,
    /// The cluster's buckets, when kept in Redis, and where (URL and timeout).
    redis: Option<(Arc<redis::RedisLimits>, (String, Duration))>,
    fail: FailMode,
}

impl RateLimits {
    /// Limiters for `config` (already validated). A limiter of `previous` with the same quota
    /// (and client cap) is kept with its buckets, so a reload refills nobody's; so is its Redis
    /// connection when the URL and timeout stay.
    pub fn new(config: &RateLimitConfig, previous: Option<&Self>) -> Result<Self, LimitsError> {
        let same_keys = previous.filter(|previous| previous.max_keys == config.max_keys);
        let keyed = |quota: Quota, kept: Option<&Arc<KeyedRateLimiter>>| match kept {
            Some(kept) if *kept.quota() == quota => Arc::clone(kept),
            _ => Arc::new(KeyedRateLimiter::new(quota, config.max_keys)),
        };
        let client = keyed(config.client_quota()?, same_keys.map(|previous| &previous.client));
        let routes = config
            .routes
            .iter()
            .map(|route| {
                let quota = Quota::new(route.rate, route.burst)?;
                let kept = same_keys.and_then(|previous| previous.routes.get(&route.route));
                Ok((route.route.clone(), keyed(quota, kept)))
            })
            .collect::<Result<_, QuotaError>>()?;
        let global = config.global_quota()?.map(|quota| {
            match previous.and_then(|previous| previous.global.as_ref()).filter(|kept| *kept.quota() == quota) {
                Some(kept) => Arc::clone(kept),
                None => Arc::new(DirectRateLimiter::new(quota)),
            }
        });
        let redis = match config.redis.as_deref() {
            Some(url) => {
                let settings = (url.to_owned(), config.redis_timeout);
                let kept = previous.and_then(|previous| previous.redis.as_ref()).filter(|(_, kept)| *kept == settings);
                Some(match kept {
                    Some((limits, _)) => (Arc::clone(limits), settings),
                    None => (Arc::new(redis::RedisLimits::new(url, config.redis_timeout)?), settings),
                })
            }
            None => None,
        };
        Ok(Self {
            client,
            routes,
            global,
            max_keys: config.max_keys,
            shared: config.share_across_gateways,
            redis,
            fail: config.fail,
        })
    }

    /// Clients tracked now, across the per-client and per-route limiters.
    pub fn tracked_clients(&self) -> usize {
        self.client.stats().keys + self.routes.values().map(|limiter| limiter.stats().keys).sum::<usize>()
    }
}

/// Routes never limited: probes must answer however busy the gateway is.
fn exempt(route: Option<&str>) -> bool {
    matches!(route, Some("/health" | "/ready"))
}

/// What the limits say of one request.
pub enum Verdict<'a> {
    /// No limit applies (none configured, or an exempt route).
    Unlimited,
    /// Admitted: the answer carries the policy's headers.
    Allowed {
        /// `client` or `route`.
        scope: &'static str,
        /// The quota applied.
        quota: &'a Quota,
        /// The decision, for the `RateLimit` header.
        decision: Decision,
    },
    /// Refused: this is the 429 to send.
    Refused(Response),
}

/// Applies the limits to a request on `route` (a route template or proxy prefix) from `client`,
/// as `identity` if authenticated: first the key's own limit (`rate`/`burst` on its entry),
/// then its tenant's (or its address's), then the global one. The key's own limit is decided
/// here; the others in Redis when it is configured and answers. Otherwise, with `gateways` live
/// on the job store, each limit is enforced as this gateway's share of it (unless configured
/// not to be shared), or, failing closed, refused.
pub async fn decide<'a>(
    limits: Option<&'a RateLimits>,
    route: Option<&str>,
    client: Option<IpAddr>,
    identity: Option<&Identity>,
    gateways: usize,
) -> Verdict<'a> {
    if exempt(route) {
        return Verdict::Unlimited;
    }
    let shared = limits.is_none_or(|limits| limits.shared);
    let parts = if shared { u32::try_from(gateways).unwrap_or(u32::MAX).max(1) } else { 1 };
    if let Some(own) = identity.and_then(|identity| identity.limit.as_deref()) {
        let decision = own.check_share(parts);
        count("key", &decision);
        if !decision.allowed {
            return Verdict::Refused(refuse("key", own.quota(), &decision));
        }
    }
    let Some(limits) = limits else { return Verdict::Unlimited };
    let client = match (identity, client) {
        (Some(identity), _) => Client::Tenant(&identity.tenant),
        (None, Some(address)) => Client::Ip(rampart_common::net::client_block(address)),
        (None, None) => Client::Unknown,
    };
    let (scope, limiter) = match route.and_then(|route| limits.routes.get(route).map(|limiter| (route, limiter))) {
        Some((route, limiter)) => (Scope::Route(route), limiter),
        None => (Scope::Client, &limits.client),
    };
    if let Some((redis, _)) = &limits.redis {
        let mut buckets = vec![redis::Bucket { key: scope.key(&client), quota: limiter.quota() }];
        if let Some(global) = &limits.global {
            buckets.push(redis::Bucket { key: "rampart:rl:global".to_owned(), quota: global.quota() });
        }
        match redis.decide(&buckets).await {
            Some(redis::Answer::Allowed(decision)) => {
                count(scope.name(), &decision);
                return Verdict::Allowed { scope: scope.name(), quota: limiter.quota(), decision };
            }
            Some(redis::Answer::Refused(index, decision)) => {
                let (name, quota) =
                    if index == 0 { (scope.name(), limiter.quota()) } else { ("global", buckets[1].quota) };
                count(name, &decision);
                return Verdict::Refused(refuse(name, quota, &decision));
            }
            None if limits.fail == FailMode::Closed => return Verdict::Refused(unavailable()),
            None => metrics::counter!("rampart_rate_limit_fallbacks_total").increment(1),
        }
    }
    let decision = limiter.check_share(&client, parts);
    count(scope.name(), &decision);
    if !decision.allowed {
        return Verdict::Refused(refuse(scope.name(), limiter.quota(), &decision));
    }
    if let Some(global) = &limits.global {
        let global_decision = global.check_share(parts);
        count("global", &global_decision);
        if !global_decision.allowed {
            return Verdict::Refused(refuse("global", global.quota(), &global_decision));
        }
    }
    Verdict::Allowed { scope: scope.name(), quota: limiter.quota(), decision }
}

/// Which limit a request is charged to besides the global one.
enum Scope<'a> {
    /// The per-client limit of this route.
    Route(&'a str),
    /// The default per-client limit.
    Client,
}

impl Scope<'_> {
    fn name(&self) -> &'static str {
        match self {
            Self::Route(_) => "route",
            Self::Client => "client",
        }
    }

    /// The Redis key of `client`'s bucket under this limit.
    fn key(&self, client: &Client<'_>) -> String {
        match self {
            Self::Route(route) => format!("rampart:rl:route:{route}:{}", client.key()),
            Self::Client => format!("rampart:rl:client:{}", client.key()),
        }
    }
}

/// The answer while the limits cannot be checked and are configured to fail closed.
fn unavailable() -> Response {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ProblemCode::RateLimitUnavailable,
        "the cluster's rate limits cannot be checked now (Redis is unreachable); try again",
    )
    .retry_after(Duration::from_secs(1))
    .into_response()
}

/// Adds `RateLimit-Policy` and `RateLimit` to an admitted request's answer.
pub fn annotate(headers: &mut http::HeaderMap, scope: &str, quota: &Quota, decision: &Decision) {
    headers.insert(RATELIMIT_POLICY, policy_header(scope, quota));
    headers.insert(RATELIMIT, state_header(scope, decision));
}

fn count(scope: &'static str, decision: &Decision) {
    let outcome = if decision.allowed { "allowed" } else { "denied" };
    metrics::counter!("rampart_rate_limit_decisions_total", "scope" => scope, "decision" => outcome).increment(1);
}

fn refuse(scope: &'static str, quota: &Quota, decision: &Decision) -> Response {
    let detail = match scope {
        "global" => "the gateway is over its global rate limit".to_owned(),
        "key" => format!(
            "this API key is over its own limit of {} requests per second (bursts of {})",
            quota.rate(),
            quota.burst()
        ),
        _ => format!("over the limit of {} requests per second (bursts of {})", quota.rate(), quota.burst()),
    };
    Problem::new(StatusCode::TOO_MANY_REQUESTS, ProblemCode::RateLimited, detail)
        .with("policy", scope)
        .retry_after(decision.retry_after)
        .header(RATELIMIT_POLICY, policy_header(scope, quota))
        .header(RATELIMIT, state_header(scope, decision))
        .into_response()
}

/// `"scope";q=BURST;w=SECONDS`: the burst is the quota, refilled in full over `w` seconds.
fn policy_header(scope: &str, quota: &Quota) -> HeaderValue {
    let refill = quota.interval().saturating_mul(quota.burst());
    let value = format!("\"{scope}\";q={};w={}", quota.burst(), whole_seconds(refill).max(1));
    HeaderValue::try_from(value).unwrap_or_else(|_| HeaderValue::from_static("\"default\";q=1"))
}

/// `"scope";r=REMAINING;t=SECONDS`: requests left now, and seconds until the quota is full.
fn state_header(scope: &str, decision: &Decision) -> HeaderValue {
    let value = format!("\"{scope}\";r={};t={}", decision.remaining, whole_seconds(decision.reset));
    HeaderValue::try_from(value).unwrap_or_else(|_| HeaderValue::from_static("\"default\";r=0"))
}

/// Seconds rounded up, so a client that waits that long is never early.
fn whole_seconds(duration: Duration) -> u64 {
    crate::problem::retry_after_seconds(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_follow_the_structured_field_syntax() {
        let quota = Quota::new(10.0, 5).unwrap();
        assert_eq!(policy_header("client", &quota), "\"client\";q=5;w=1");
        let slow = Quota::new(0.5, 3).unwrap();
        assert_eq!(policy_header("route", &slow), "\"route\";q=3;w=6");
        let decision = Decision {
            allowed: true,
            limit: 5,
            remaining: 4,
            reset: Duration::from_millis(100),
            retry_after: Duration::ZERO,
        };
        assert_eq!(state_header("client", &decision), "\"client\";r=4;t=1");
    }

    #[test]
    fn probes_are_exempt() {
        assert!(exempt(Some("/health")) && exempt(Some("/ready")));
        assert!(!exempt(Some("/api/process")) && !exempt(None));
    }
}
