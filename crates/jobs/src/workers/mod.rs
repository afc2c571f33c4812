//! The workers, as the gateway reaches them: pools of gRPC endpoints by job kind, the gRPC
//! transport of the call loop ([`dispatch`]) and the health probe.
//!
//! The default pool (the top-level `workers`) takes every job kind that no `[[pools]]` entry
//! claims; each named pool takes the kinds it lists. This is how a service crate with its own job
//! kinds joins a Rampart deployment.

mod channel;
pub mod execute;
mod kinds;
mod stream;

pub use channel::{Link, WorkerProbe};
pub use execute::{ExecuteError, ExecutePolicy, Executed, dispatch};
pub use stream::{OnProgress, ProgressReceiver};

use crate::config::PoolConfig;
use arc_swap::ArcSwap;
use rampart_balance::{
    config::{Balance, OutlierConfig},
    discovery::Source,
    set::EndpointSet,
};
use rampart_common::breaker::BreakerConfig;
use rampart_common::shutdown::{Every, FirstTick};
use serde::Serialize;
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio_util::sync::CancellationToken;

/// The name of the pool built from the top-level `workers`.
pub const DEFAULT_POOL: &str = "default";

/// One pool of worker endpoints and where they come from.
#[derive(Debug)]
pub struct Pool {
    set: Arc<EndpointSet>,
    /// Where its endpoints come from; a reload may change them (see [`Pools::respecify`]).
    specs: ArcSwap<Vec<Source>>,
    /// How its workers are reached.
    link: Link,
    /// What its workers say they run.
    reported: kinds::Reported,
    /// A dispatch stream per endpoint, for durable jobs.
    streams: stream::DispatchStreams,
}

impl Pool {
    /// The largest gRPC message sent to its workers or read from them.
    pub fn message_limit(&self) -> usize {
        self.link.message_limit
    }

    /// How its workers are reached.
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// Its endpoints.
    pub fn set(&self) -> &Arc<EndpointSet> {
        &self.set
    }

    /// Where its endpoints come from.
    pub fn specs(&self) -> Arc<Vec<Source>> {
        self.specs.load_full()
    }
}

/// A pool as shown at `GET /admin/backends`.
#[derive(Debug, Serialize)]
pub struct PoolView<'a> {
    /// The pool's name.
    pub pool: &'a str,
    /// The kinds `[[pools]]` routes to it (empty for the default pool: every other kind).
    pub kinds: Vec<&'a str>,
    /// The kinds its workers say they run.
    pub runs: Vec<String>,
    /// Its endpoints.
    pub backends: Vec<serde_json::Value>,
}

/// Every pool, and which kinds go where.
#[derive(Debug)]
pub struct Pools {
    /// The default pool first, then the named ones in configuration order.
    pools: Vec<Pool>,
    /// Kind → pool, as `[[pools]]` says.
    by_kind: HashMap<String, usize>,
    /// Kind → pool, as the workers say, for the kinds `[[pools]]` does not list.
    learned: kinds::LearnedRoutes,
    /// Configured kinds already warned about.
    warned: Mutex<BTreeSet<String>>,
}

/// How the pools are made.
#[derive(Debug, Clone)]
pub struct PoolsConfig<'a> {
    /// The default pool's workers.
    pub workers: &'a [String],
    /// How the default pool picks an endpoint.
    pub balance: Balance,
    /// The named pools (already validated).
    pub pools: &'a [PoolConfig],
    /// Passive ejection, for every endpoint.
    pub outlier: &'a OutlierConfig,
    /// The circuit breaker every endpoint gets.
    pub breaker: &'a BreakerConfig,
    /// How workers are reached: message limit and TLS.
    pub link: Link,
}

impl Pools {
    /// The pools `config` describes, with no endpoints yet: discovery fills them.
    pub fn new(config: &PoolsConfig<'_>) -> Self {
        let pool = |name: &str, workers: &[String], balance| Pool {
            set: Arc::new(EndpointSet::new(name, balance, config.outlier, config.breaker)),
            specs: ArcSwap::from_pointee(workers.iter().map(|url| Source::parse(url)).collect()),
            link: config.link.clone(),
            reported: kinds::Reported::default(),
            streams: stream::DispatchStreams::default(),
        };
        let mut pools = vec![pool(DEFAULT_POOL, config.workers, config.balance)];
        let mut by_kind = HashMap::new();
        for named in config.pools {
            for kind in &named.kinds {
                by_kind.insert(kind.clone(), pools.len());
            }
            pools.push(pool(&named.name, &named.workers, named.balance));
        }
        Self { pools, by_kind, learned: kinds::LearnedRoutes::default(), warned: Mutex::default() }
    }

    /// Takes up new endpoint lists for the pools as they are: the default pool's `workers` and
    /// each named pool's. Only the lists may differ from the configuration the pools were made
    /// from: a pool added, removed, renamed, rebalanced or given other kinds needs a restart,
    /// and then nothing changes and the answer is false. Discovery fills the sets from the new
    /// lists (endpoints that stay keep their state).
    pub fn respecify(&self, workers: &[String], named: &[PoolConfig], balance: Balance) -> bool {
        if !self.same_layout(named, balance) {
            return false;
        }
        let lists = std::iter::once(workers).chain(named.iter().map(|pool| pool.workers.as_slice()));
        for (pool, urls) in self.pools.iter().zip(lists) {
            pool.specs.store(Arc::new(urls.iter().map(|url| Source::parse(url)).collect()));
        }
        true
    }

    /// Whether `named` (and the default pool's `balance`) describe the pools as they are, but
    /// for their endpoint lists.
    pub fn same_layout(&self, named: &[PoolConfig], balance: Balance) -> bool {
        let names_and_balance =
            std::iter::once((DEFAULT_POOL, balance)).chain(named.iter().map(|pool| (pool.name.as_str(), pool.balance)));
        let kinds_kept = named.iter().enumerate().all(|(index, pool)| {
            pool.kinds.iter().all(|kind| self.by_kind.get(kind) == Some(&(index + 1)))
                && self.by_kind.values().filter(|at| **at == index + 1).count() == pool.kinds.len()
        });
        self.pools.len() == named.len() + 1
            && self
                .pools
                .iter()
                .zip(names_and_balance)
                .all(|(pool, (name, balance))| pool.set.name() == name && pool.set.balance() == balance)
            && kinds_kept
    }

    /// How workers are reached (the same for every pool).
    pub fn link(&self) -> &Link {
        &self.pools[0].link
    }

    /// The pool that runs `kind`: the one `[[pools]]` names, else the one whose workers say
    /// they run it, else the default pool.
    pub fn for_kind(&self, kind: &str) -> &Pool {
        let index = match self.by_kind.get(kind) {
            Some(index) => *index,
            None => self.learned.load().routes.get(kind).copied().unwrap_or(0),
        };
        &self.pools[index]
    }

    /// Whether some worker runs `kind`: `None` until every pool has a worker that described
    /// itself (then the workers answer for it).
    pub fn runs(&self, kind: &str) -> Option<bool> {
        if self.by_kind.contains_key(kind) {
            return Some(true);
        }
        let learned = self.learned.load();
        if learned.routes.contains_key(kind) {
            return Some(true);
        }
        learned.complete.then_some(false)
    }

    /// Every kind the pools run, as configured and as the workers say, in order.
    pub fn kinds(&self) -> Vec<String> {
        let learned = self.learned.load();
        let mut kinds: Vec<String> = self.by_kind.keys().chain(learned.routes.keys()).cloned().collect();
        kinds.sort_unstable();
        kinds.dedup();
        kinds
    }

    /// Asks every healthy worker what it runs and routes the kinds again.
    pub async fn describe(&self) {
        for pool in &self.pools {
            kinds::describe(pool).await;
        }
        self.learned.store(Arc::new(kinds::learn(&self.pools, &self.by_kind, &self.warned)));
    }

    /// Asks the workers again every `every` until `stop`, so that a worker that joins or
    /// changes its kinds is heard within that long.
    pub async fn keep_describing(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        let mut every = Every::new(every, FirstTick::AfterOnePeriod, stop);
        while every.tick().await {
            self.describe().await;
        }
    }

    /// Every pool, the default first.
    pub fn all(&self) -> &[Pool] {
        &self.pools
    }

    /// Endpoints healthy now, across all pools.
    pub fn healthy_count(&self) -> usize {
        self.pools.iter().map(|pool| pool.set.healthy_count()).sum()
    }

    /// What each worker last said of itself in `Describe` (its kinds and its pools' use), by
    /// pool name and endpoint URL.
    pub fn descriptions(&self) -> Vec<(&str, BTreeMap<String, rampart_proto::v1::WorkerInfo>)> {
        self.pools.iter().map(|pool| (pool.set.name(), pool.reported.descriptions())).collect()
    }

    /// A view of every pool for the admin API.
    pub fn views(&self) -> Vec<PoolView<'_>> {
        self.pools
            .iter()
            .enumerate()
            .map(|(index, pool)| {
                let mut kinds: Vec<&str> =
                    self.by_kind.iter().filter(|(_, at)| **at == index).map(|(kind, _)| kind.as_str()).collect();
                kinds.sort_unstable();
                let runs = pool.reported.kinds().0.into_iter().collect();
                PoolView { pool: pool.set.name(), kinds, runs, backends: pool.set.views() }
            })
            .collect()
    }
}

/// A job's priority as the worker contract spells it.
pub fn wire_priority(priority: rampart_jobstore::model::Priority) -> rampart_proto::v1::Priority {
    use rampart_jobstore::model::Priority;
    match priority {
        Priority::High => rampart_proto::v1::Priority::High,
        Priority::Normal => rampart_proto::v1::Priority::Normal,
        Priority::Low => rampart_proto::v1::Priority::Low,
    }
}
