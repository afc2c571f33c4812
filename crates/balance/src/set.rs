//! A set of interchangeable endpoints (a worker pool, or a route's upstreams) and how one is
//! picked for each call: P2C or round robin over the healthy, un-ejected ones. The set can change
//! under traffic (DNS discovery); calls in flight keep their endpoint alive until they end.

use crate::{
    clock,
    config::{Balance, OutlierConfig},
    endpoint::{Endpoint, Health},
};
use arc_swap::ArcSwap;
use metrics::Counter;
use rampart_common::breaker::BreakerConfig;
use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

/// A URL that cannot name an endpoint.
#[derive(Debug, thiserror::Error)]
#[error("{url:?} is not an endpoint URL: {source}")]
pub struct InvalidEndpoint {
    /// The URL.
    pub url: String,
    /// Why it cannot be read.
    pub source: http::uri::InvalidUri,
}

/// A set of endpoints.
pub struct EndpointSet {
    name: String,
    /// The name as a `'static` metric label.
    label: &'static str,
    balance: Balance,
    endpoints: ArcSwap<Vec<Arc<Endpoint>>>,
    /// Each endpoint's share of the calls, by URL, when the set is weighted (empty: it is not).
    weights: ArcSwap<Vec<(String, u32)>>,
    next: AtomicUsize,
    outlier: OutlierConfig,
    breaker: BreakerConfig,
    /// `rampart_attempts_total` for first attempts and retries, registered once.
    attempts: [Counter; 2],
}

impl std::fmt::Debug for EndpointSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointSet").field("name", &self.name).field("endpoints", &self.endpoints.load()).finish()
    }
}

impl EndpointSet {
    /// An empty set; [`EndpointSet::replace`] fills it.
    pub fn new(name: &str, balance: Balance, outlier: &OutlierConfig, breaker: &BreakerConfig) -> Self {
        let label = rampart_common::metrics::intern(name);
        let attempts = ["first", "retry"]
            .map(|attempt| metrics::counter!("rampart_attempts_total", "pool" => label, "attempt" => attempt));
        Self {
            name: name.to_owned(),
            label,
            balance,
            endpoints: ArcSwap::from_pointee(Vec::new()),
            weights: ArcSwap::from_pointee(Vec::new()),
            next: AtomicUsize::new(0),
            outlier: outlier.clone(),
            breaker: breaker.clone(),
            attempts,
        }
    }

    /// The set's name (a pool name or a route prefix).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How it picks an endpoint.
    pub fn balance(&self) -> Balance {
        self.balance
    }

    /// The name as a metric label.
    pub fn label(&self) -> &'static str {
        self.label
    }

    /// Counts an attempt of a call: the first of its call, or a retry.
    pub(crate) fn count_attempt(&self, first: bool) {
        self.attempts[usize::from(!first)].increment(1);
    }

    /// The endpoints now.
    pub fn snapshot(&self) -> Arc<Vec<Arc<Endpoint>>> {
        self.endpoints.load_full()
    }

    /// Makes the set exactly `urls`: endpoints already present are kept with their state, new
    /// ones start unknown (no traffic until a health check passes), missing ones leave the set
    /// (calls in flight on them finish normally). Returns the new endpoints.
    pub fn replace(&self, urls: &[String]) -> Result<Vec<Arc<Endpoint>>, InvalidEndpoint> {
        let current = self.snapshot();
        let mut next = Vec::with_capacity(urls.len());
        let mut added = Vec::new();
        for url in urls {
            let url = url.trim_end_matches('/');
            if let Some(existing) = current.iter().find(|endpoint| endpoint.url() == url) {
                next.push(Arc::clone(existing));
                continue;
            }
            if let Err(source) = url.parse::<http::Uri>() {
                return Err(InvalidEndpoint { url: url.to_owned(), source });
            }
            let endpoint = Arc::new(Endpoint::new(url, &self.breaker));
            added.push(Arc::clone(&endpoint));
            next.push(endpoint);
        }
        for gone in current.iter().filter(|old| !next.iter().any(|kept| Arc::ptr_eq(old, kept))) {
            tracing::info!(set = %self.name, endpoint = gone.url(), "endpoint left the set");
        }
        for new in &added {
            tracing::info!(set = %self.name, endpoint = new.url(), "endpoint joined the set");
        }
        self.endpoints.store(Arc::new(next));
        Ok(added)
    }

    /// Shares calls out by weight (URL → weight; an endpoint not named weighs nothing): each
    /// call goes to an endpoint that can take it with a chance of its weight over theirs, and
    /// to one of weight 0 only when no other can. Empty: the set's balance, as configured.
    pub fn set_weights(&self, weights: Vec<(String, u32)>) {
        self.weights.store(Arc::new(weights));
    }

    /// Picks an endpoint for one call, skipping those in `tried`. Prefers endpoints that have
    /// not asked for a pause (pushback); `None` when no healthy, un-ejected endpoint is left.
    pub fn pick(&self, tried: &[Arc<Endpoint>]) -> Option<Arc<Endpoint>> {
        self.pick_at(tried, clock::now())
    }

    /// [`EndpointSet::pick`] as of `now` on the process clock (in nanoseconds), so that tests
    /// can say when a pick happens instead of waiting for it.
    pub fn pick_at(&self, tried: &[Arc<Endpoint>], now: u64) -> Option<Arc<Endpoint>> {
        let endpoints = self.endpoints.load();
        let usable = |endpoint: &Arc<Endpoint>| {
            endpoint.health() == Health::Healthy
                && !endpoint.ejected(now)
                && !tried.iter().any(|done| Arc::ptr_eq(done, endpoint))
        };
        let unpaused = |endpoint: &Arc<Endpoint>| usable(endpoint) && !endpoint.load().penalized(now);
        self.choose(&endpoints, &unpaused, now).or_else(|| self.choose(&endpoints, &usable, now))
    }

    fn choose(
        &self,
        endpoints: &[Arc<Endpoint>],
        eligible: &dyn Fn(&Arc<Endpoint>) -> bool,
        now: u64,
    ) -> Option<Arc<Endpoint>> {
        let weights = self.weights.load();
        if !weights.is_empty() {
            return choose_by_weight(endpoints, eligible, &weights);
        }
        let count = endpoints.iter().filter(|endpoint| eligible(endpoint)).count();
        let nth = |n: usize| endpoints.iter().filter(|endpoint| eligible(endpoint)).nth(n).map(Arc::clone);
        match (count, self.balance) {
            (0, _) => None,
            (1, _) => nth(0),
            (_, Balance::RoundRobin) => nth(self.next.fetch_add(1, Ordering::Relaxed) % count),
            (_, Balance::P2c) => {
                let first = fastrand::usize(..count);
                let mut second = fastrand::usize(..count - 1);
                if second >= first {
                    second += 1;
                }
                let (a, b) = (nth(first)?, nth(second)?);
                // An endpoint that seems to have stopped answering loses to one that has not,
                // whatever the costs; between two of a kind, the cheaper wins.
                Some(if b.load().rank(now).beats(a.load().rank(now)) { b } else { a })
            }
        }
    }

    /// Records a failed call on `endpoint` for passive ejection, ejecting it if it has failed
    /// enough in a row and the set's cap on ejected endpoints allows.
    pub fn record_failure(&self, endpoint: &Endpoint) {
        if !endpoint.record_failure(&self.outlier) {
            return;
        }
        let now = clock::now();
        let endpoints = self.endpoints.load();
        let ejected = endpoints.iter().filter(|other| other.ejected(now)).count();
        let allowed = endpoints.len() * self.outlier.max_ejected_percent as usize / 100;
        if ejected >= allowed {
            return;
        }
        let length = endpoint.eject(&self.outlier, now);
        metrics::counter!("rampart_outlier_ejections_total", "endpoint" => endpoint.label()).increment(1);
        tracing::warn!(set = %self.name, endpoint = endpoint.url(), seconds = length.as_secs(), "ejected after failing in a row");
    }

    /// Endpoints healthy now.
    pub fn healthy_count(&self) -> usize {
        self.endpoints.load().iter().filter(|endpoint| endpoint.health() == Health::Healthy).count()
    }

    /// Views of every endpoint, for the admin API.
    pub fn views(&self) -> Vec<serde_json::Value> {
        self.endpoints.load().iter().map(|endpoint| serde_json::to_value(endpoint.view()).unwrap_or_default()).collect()
    }
}

/// An eligible endpoint drawn with a chance of its weight over theirs (see
/// [`EndpointSet::set_weights`]).
fn choose_by_weight(
    endpoints: &[Arc<Endpoint>],
    eligible: &dyn Fn(&Arc<Endpoint>) -> bool,
    weights: &[(String, u32)],
) -> Option<Arc<Endpoint>> {
    let weight_of =
        |endpoint: &Endpoint| weights.iter().find(|(url, _)| url == endpoint.url()).map_or(0, |(_, weight)| *weight);
    let total: u64 =
        endpoints.iter().filter(|endpoint| eligible(endpoint)).map(|endpoint| u64::from(weight_of(endpoint))).sum();
    if total == 0 {
        let count = endpoints.iter().filter(|endpoint| eligible(endpoint)).count();
        return (count > 0)
            .then(|| fastrand::usize(..count))
            .and_then(|nth| endpoints.iter().filter(|endpoint| eligible(endpoint)).nth(nth).map(Arc::clone));
    }
    let mut draw = fastrand::u64(..total);
    for endpoint in endpoints.iter().filter(|endpoint| eligible(endpoint)) {
        let weight = u64::from(weight_of(endpoint));
        if draw < weight {
            return Some(Arc::clone(endpoint));
        }
        draw -= weight;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_share_the_calls_out_and_weight_zero_only_stands_in() {
        let set = set(Balance::P2c, 3);
        let url = |port: u16| format!("http://127.0.0.1:{port}");
        set.set_weights(vec![(url(1), 90), (url(2), 10), (url(3), 0)]);
        let mut picked = [0_u32; 3];
        for _ in 0..20_000 {
            let endpoint = set.pick(&[]).unwrap();
            let port: usize = endpoint.url().rsplit(':').next().unwrap().parse().unwrap();
            picked[port - 1] += 1;
        }
        assert!((17_600..=18_400).contains(&picked[0]), "{picked:?}");
        assert_eq!(picked[2], 0, "weight 0 takes nothing while others can: {picked:?}");
        let both = set.snapshot()[..2].to_vec();
        assert_eq!(set.pick(&both).unwrap().url(), url(3), "and stands in when nobody else can");
    }

    fn set(balance: Balance, n: u16) -> EndpointSet {
        let set = EndpointSet::new("test", balance, &OutlierConfig::default(), &BreakerConfig::default());
        let urls: Vec<String> = (1..=n).map(|port| format!("http://127.0.0.1:{port}")).collect();
        set.replace(&urls).unwrap();
        for endpoint in set.snapshot().iter() {
            endpoint.health_tracker().record_check(true, 1, 1);
        }
        set
    }

    #[test]
    fn round_robin_takes_each_healthy_endpoint_in_turn() {
        let set = set(Balance::RoundRobin, 3);
        set.snapshot()[1].health_tracker().mark_unreachable();
        let picks: Vec<_> = (0..4).map(|_| set.pick(&[]).unwrap().url().to_owned()).collect();
        assert_eq!(picks, ["http://127.0.0.1:1", "http://127.0.0.1:3", "http://127.0.0.1:1", "http://127.0.0.1:3"]);
    }

    #[test]
    fn p2c_sends_most_traffic_to_the_cheaper_endpoint() {
        let set = set(Balance::P2c, 2);
        let now = clock::now();
        set.snapshot()[0].load().observe(50_000_000, now);
        set.snapshot()[1].load().observe(1_000_000, now);
        let fast = (0..1000).filter(|_| set.pick(&[]).unwrap().url().ends_with(":2")).count();
        assert_eq!(fast, 1000, "with two endpoints P2C always compares both");
    }

    #[test]
    fn p2c_avoids_an_endpoint_that_stopped_answering_even_when_it_looks_cheaper() {
        let set = set(Balance::P2c, 2);
        let endpoints = set.snapshot();
        let now = clock::now();
        endpoints[0].load().observe(1_000_000, now);
        endpoints[1].load().observe(50_000_000, now);
        let _hung = endpoints[0].load().start(now);
        assert_eq!(set.pick(&[]).unwrap().url(), "http://127.0.0.1:1", "cheaper while its call is young");
        let later = now + 120_000_000;
        assert!(endpoints[0].load().cost(later) < endpoints[1].load().cost(later), "still cheaper by cost");
        for _ in 0..100 {
            assert_eq!(set.pick_at(&[], later).unwrap().url(), "http://127.0.0.1:2", "120 ms of silence later");
        }
    }

    #[test]
    fn unknown_unhealthy_ejected_and_tried_endpoints_are_skipped() {
        let set = set(Balance::P2c, 3);
        let endpoints = set.snapshot();
        let fresh = set
            .replace(&["http://127.0.0.1:1".into(), "http://127.0.0.1:2".into(), "http://127.0.0.1:9".into()])
            .unwrap();
        assert_eq!(fresh.len(), 1, "only the new endpoint is created");
        endpoints[1].eject(&OutlierConfig::default(), clock::now());
        for _ in 0..50 {
            let pick = set.pick(&[]).unwrap();
            assert_eq!(pick.url(), "http://127.0.0.1:1", "port 2 is ejected, port 9 unknown, port 3 gone");
        }
        assert!(set.pick(&[Arc::clone(&endpoints[0])]).is_none());
    }

    #[test]
    fn paused_endpoints_are_used_only_when_nothing_else_is_left() {
        let set = set(Balance::P2c, 2);
        let endpoints = set.snapshot();
        endpoints[0].load().penalize_until(clock::now() + 60_000_000_000);
        for _ in 0..50 {
            assert_eq!(set.pick(&[]).unwrap().url(), "http://127.0.0.1:2");
        }
        assert_eq!(set.pick(&[Arc::clone(&endpoints[1])]).unwrap().url(), "http://127.0.0.1:1");
    }

    #[test]
    fn ejection_stops_at_the_cap() {
        let set = set(Balance::P2c, 4);
        let config = OutlierConfig { consecutive_failures: 2, ..OutlierConfig::default() };
        let set = EndpointSet { outlier: config, ..set };
        let endpoints = set.snapshot();
        for endpoint in endpoints.iter() {
            set.record_failure(endpoint);
            set.record_failure(endpoint);
        }
        let now = clock::now();
        assert_eq!(endpoints.iter().filter(|endpoint| endpoint.ejected(now)).count(), 2, "50% of 4");
    }
}
