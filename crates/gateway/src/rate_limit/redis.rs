//! The cluster's rate limits in Redis: every gateway decides against the same buckets, so a
//! limit holds across all of them however the load balancer spreads the clients. One decision
//! is one script run, atomic in Redis: GCRA on each bucket the request is charged to (its
//! client's or route's, and the global one), on Redis's clock, so gateways' clocks never
//! matter; a refused request changes no bucket.
//!
//! When Redis does not answer within `redis_timeout`, the decision falls back (this gateway's
//! share of the limit, or a refusal when configured to fail closed), Redis is left alone for a
//! second so that an outage does not add its timeout to every request, and the switch is logged
//! and shown by `rampart_rate_limit_redis_up`.

use rampart_common::rate_limit::{Decision, Quota};
use redis::aio::ConnectionManager;
use std::{
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

/// How long Redis is left alone after it failed to answer.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// GCRA over every key at once, in microseconds on Redis's clock. `ARGV` holds each key's
/// emission interval and tolerance. Refused: `{0, index, retry_after, reset}`; admitted: `{1,
/// remaining, reset}` of the first key.
const SCRIPT: &str = r"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local next = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local tolerance = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  local n = tat + interval
  if n > now + tolerance then
    return {0, i, n - now - tolerance, tat - now}
  end
  next[i] = n
end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, string.format('%d', next[i]), 'PX', math.ceil((next[i] - now) / 1000) + 1)
end
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
return {1, math.floor((now + tolerance - next[1]) / interval), next[1] - now}
";

/// One bucket a request is charged to.
pub(super) struct Bucket<'a> {
    /// Its Redis key.
    pub(super) key: String,
    /// Its quota.
    pub(super) quota: &'a Quota,
}

/// What Redis decided.
pub(super) enum Answer {
    /// Every bucket had room: the first one's state.
    Allowed(Decision),
    /// The bucket at this index was full.
    Refused(usize, Decision),
}

/// The connection to Redis and what this gateway knows of its health.
pub(super) struct RedisLimits {
    client: redis::Client,
    /// Connected on first use (Redis may start after the gateway); it reconnects by itself.
    connection: Mutex<Option<ConnectionManager>>,
    script: redis::Script,
    timeout: Duration,
    /// While set, Redis is not asked: it failed a moment ago.
    resting_until: Mutex<Option<Instant>>,
    up: AtomicBool,
}

impl RedisLimits {
    /// Limits kept in the Redis at `url` (not connected yet).
    pub(super) fn new(url: &str, timeout: Duration) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        metrics::gauge!("rampart_rate_limit_redis_up").set(1.0);
        Ok(Self {
            client,
            connection: Mutex::new(None),
            script: redis::Script::new(SCRIPT),
            timeout,
            resting_until: Mutex::new(None),
            up: AtomicBool::new(true),
        })
    }

    /// Decides one request charged to `buckets`; `None` when Redis cannot say (down, slow, or
    /// resting after a failure).
    pub(super) async fn decide(&self, buckets: &[Bucket<'_>]) -> Option<Answer> {
        let resting = *self.resting_until.lock().unwrap_or_else(PoisonError::into_inner);
        if resting.is_some_and(|until| Instant::now() < until) {
            return None;
        }
        let answer = tokio::time::timeout(self.timeout, self.ask(buckets)).await;
        match answer {
            Ok(Ok(answer)) => {
                if !self.up.swap(true, Ordering::AcqRel) {
                    tracing::info!("Redis answers again: rate limits are the cluster's again");
                    metrics::gauge!("rampart_rate_limit_redis_up").set(1.0);
                }
                Some(answer)
            }
            Ok(Err(error)) => self.failed(&error.to_string()),
            Err(_) => self.failed(&format!("no answer within {:?}", self.timeout)),
        }
    }

    fn failed(&self, why: &str) -> Option<Answer> {
        *self.resting_until.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + RETRY_AFTER_FAILURE);
        metrics::counter!("rampart_rate_limit_redis_failures_total").increment(1);
        if self.up.swap(false, Ordering::AcqRel) {
            tracing::warn!(error = why, "Redis cannot be reached: rate limits fall back until it answers");
            metrics::gauge!("rampart_rate_limit_redis_up").set(0.0);
        }
        None
    }

    async fn ask(&self, buckets: &[Bucket<'_>]) -> Result<Answer, redis::RedisError> {
        let mut connection = self.connection().await?;
        let mut invocation = self.script.prepare_invoke();
        for bucket in buckets {
            let interval = micros(bucket.quota.interval()).max(1);
            invocation.key(&bucket.key).arg(interval).arg(interval.saturating_mul(u64::from(bucket.quota.burst())));
        }
        let reply: Vec<i64> = invocation.invoke_async(&mut connection).await?;
        let at = |index: usize| reply.get(index).copied().unwrap_or(0);
        let duration = |micros: i64| Duration::from_micros(u64::try_from(micros).unwrap_or(0));
        let first = buckets.first().map_or(0, |bucket| bucket.quota.burst());
        if at(0) == 1 {
            return Ok(Answer::Allowed(Decision {
                allowed: true,
                limit: first,
                remaining: u32::try_from(at(1)).unwrap_or(0),
                reset: duration(at(2)),
                retry_after: Duration::ZERO,
            }));
        }
        let index = usize::try_from(at(1)).unwrap_or(1).saturating_sub(1).min(buckets.len().saturating_sub(1));
        let limit = buckets.get(index).map_or(first, |bucket| bucket.quota.burst());
        Ok(Answer::Refused(
            index,
            Decision { allowed: false, limit, remaining: 0, reset: duration(at(3)), retry_after: duration(at(2)) },
        ))
    }

    async fn connection(&self) -> Result<ConnectionManager, redis::RedisError> {
        if let Some(connection) = self.connection.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            return Ok(connection.clone());
        }
        // Several requests may connect at once at the start; the first to finish is kept.
        let connection = self.client.get_connection_manager().await?;
        let mut slot = self.connection.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(slot.get_or_insert(connection).clone())
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}
