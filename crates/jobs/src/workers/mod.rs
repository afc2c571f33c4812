//! The workers, as the gateway reaches them: pools of gRPC endpoints by job kind, the gRPC
//! transport of the call loop ([`execute`]) and the health probe.
//!
//! The default pool (the top-level `workers`) takes every job kind that no `[[pools]]` entry
//! claims; each named pool takes the kinds it lists. This is how a service crate with its own job
//! kinds joins a Rampart deployment.

mod channel;
pub mod execute;

pub use channel::WorkerProbe;
pub use execute::{ExecuteError, ExecutePolicy, Executed, execute};

/// A job's priority as the worker contract spells it.
pub fn wire_priority(priority: rampart_jobstore::model::Priority) -> rampart_proto::v1::Priority {
    use rampart_jobstore::model::Priority;
    match priority {
        Priority::High => rampart_proto::v1::Priority::High,
        Priority::Normal => rampart_proto::v1::Priority::Normal,
        Priority::Low => rampart_proto::v1::Priority::Low,
    }
}

use crate::config::PoolConfig;
use rampart_balance::{
    config::{Balance, OutlierConfig},
    discovery::Spec,
    set::EndpointSet,
};
use rampart_common::breaker::BreakerConfig;
use serde::Serialize;
use std::{collections::HashMap, sync::Arc};

/// The name of the pool built from the top-level `workers`.
pub const DEFAULT_POOL: &str = "default";

/// One pool of worker endpoints and where they come from.
#[derive(Debug)]
pub struct Pool {
    set: Arc<EndpointSet>,
    specs: Vec<Spec>,
    /// The largest gRPC message sent or read (see [`rampart_proto::limits`]).
    message_limit: usize,
}

impl Pool {
    /// The largest gRPC message sent to its workers or read from them.
    pub fn message_limit(&self) -> usize {
        self.message_limit
    }

    /// Its endpoints.
    pub fn set(&self) -> &Arc<EndpointSet> {
        &self.set
    }

    /// Where its endpoints come from.
    pub fn specs(&self) -> &[Spec] {
        &self.specs
    }
}

/// A pool as shown at `GET /admin/backends`.
#[derive(Debug, Serialize)]
pub struct PoolView<'a> {
    /// The pool's name.
    pub pool: &'a str,
    /// The kinds routed to it (empty for the default pool: every other kind).
    pub kinds: Vec<&'a str>,
    /// Its endpoints.
    pub backends: Vec<serde_json::Value>,
}

/// Every pool, and which kinds go where.
#[derive(Debug)]
pub struct Pools {
    /// The default pool first, then the named ones in configuration order.
    pools: Vec<Pool>,
    by_kind: HashMap<String, usize>,
}

/// How the pools are made.
#[derive(Debug, Clone, Copy)]
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
    /// The largest gRPC message sent to a worker or read from one.
    pub message_limit: usize,
}

impl Pools {
    /// The pools `config` describes, with no endpoints yet: discovery fills them.
    pub fn new(config: &PoolsConfig<'_>) -> Self {
        let pool = |name: &str, workers: &[String], balance| Pool {
            set: Arc::new(EndpointSet::new(name, balance, config.outlier, config.breaker)),
            specs: workers.iter().map(|url| Spec::parse(url)).collect(),
            message_limit: config.message_limit,
        };
        let mut pools = vec![pool(DEFAULT_POOL, config.workers, config.balance)];
        let mut by_kind = HashMap::new();
        for named in config.pools {
            for kind in &named.kinds {
                by_kind.insert(kind.clone(), pools.len());
            }
            pools.push(pool(&named.name, &named.workers, named.balance));
        }
        Self { pools, by_kind }
    }

    /// The pool that runs `kind`.
    pub fn for_kind(&self, kind: &str) -> &Pool {
        let index = self.by_kind.get(kind).copied().unwrap_or(0);
        &self.pools[index]
    }

    /// Every pool, the default first.
    pub fn all(&self) -> &[Pool] {
        &self.pools
    }

    /// Endpoints healthy now, across all pools.
    pub fn healthy_count(&self) -> usize {
        self.pools.iter().map(|pool| pool.set.healthy_count()).sum()
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
                PoolView { pool: pool.set.name(), kinds, backends: pool.set.views() }
            })
            .collect()
    }
}
