//! Worker pools: the default pool (the top-level `workers`) takes every job kind that no
//! `[[pools]]` entry claims; each named pool takes the kinds it lists. This is how a service crate
//! with its own job kinds joins a Rampart deployment.

use crate::{
    backends::{Backend, BackendView, Backends, Health},
    config::GatewayConfig,
};
use serde::Serialize;
use std::{collections::HashMap, sync::Arc};

/// The name of the pool built from the top-level `workers`.
pub const DEFAULT_POOL: &str = "default";

/// One pool of worker endpoints.
#[derive(Debug)]
pub struct Pool {
    name: String,
    backends: Backends,
}

impl Pool {
    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its endpoints.
    pub fn backends(&self) -> &Backends {
        &self.backends
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
    pub backends: Vec<BackendView<'a>>,
}

/// Every pool, and which kinds go where.
#[derive(Debug)]
pub struct Pools {
    /// The default pool first, then the named ones in configuration order.
    pools: Vec<Pool>,
    by_kind: HashMap<String, usize>,
}

impl Pools {
    /// The pools `config` describes (already validated).
    pub fn new(config: &GatewayConfig) -> Result<Self, tonic::transport::Error> {
        let mut pools =
            vec![Pool { name: DEFAULT_POOL.into(), backends: Backends::new(&config.workers, &config.breaker)? }];
        let mut by_kind = HashMap::new();
        for pool in &config.pools {
            for kind in &pool.kinds {
                by_kind.insert(kind.clone(), pools.len());
            }
            pools.push(Pool { name: pool.name.clone(), backends: Backends::new(&pool.workers, &config.breaker)? });
        }
        Ok(Self { pools, by_kind })
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

    /// Every endpoint of every pool.
    pub fn endpoints(&self) -> impl Iterator<Item = &Arc<Backend>> {
        self.pools.iter().flat_map(|pool| pool.backends.all())
    }

    /// Endpoints believed up, across all pools.
    pub fn healthy_count(&self) -> usize {
        self.endpoints().filter(|backend| backend.health() == Health::Up).count()
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
                PoolView { pool: &pool.name, kinds, backends: pool.backends.views() }
            })
            .collect()
    }
}
