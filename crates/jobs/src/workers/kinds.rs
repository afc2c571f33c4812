//! What the workers say they run: each pool's job kinds, learned from the workers' `Describe`,
//! so that a kind needs declaring only in its handler. Kinds no `[[pools]]` entry lists go to
//! the default pool if its workers run them, else to the first pool whose workers do; a kind no
//! worker runs is known to be unknown once every pool has a worker that answered.

use super::{Pool, channel::worker_client};
use arc_swap::ArcSwap;
use rampart_balance::endpoint::Health;
use rampart_proto::v1::{DescribeRequest, WorkerInfo};
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Mutex, PoisonError},
    time::Duration,
};

/// How long a worker may take to describe itself.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(1);

/// What each endpoint of one pool last said of itself, by endpoint URL.
#[derive(Debug, Default)]
pub(super) struct Reported(Mutex<BTreeMap<String, WorkerInfo>>);

impl Reported {
    /// Every kind some endpoint of the pool reported, and whether any endpoint reported at all.
    pub(super) fn kinds(&self) -> (BTreeSet<String>, bool) {
        let reports = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let kinds = reports.values().flat_map(|info| info.kinds.iter().map(|kind| kind.name.clone())).collect();
        (kinds, !reports.is_empty())
    }

    /// Each endpoint's last description, by URL.
    pub(super) fn descriptions(&self) -> BTreeMap<String, WorkerInfo> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// Routes for kinds learned from the workers.
#[derive(Debug, Default)]
pub(super) struct Learned {
    /// Kind → pool index, for kinds no `[[pools]]` entry lists.
    pub(super) routes: HashMap<String, usize>,
    /// Whether every pool has at least one worker that described itself.
    pub(super) complete: bool,
}

/// Asks every healthy endpoint of `pool` what it runs; keeps the last answer of those that do
/// not answer now, and forgets endpoints that left the pool.
pub(super) async fn describe(pool: &Pool) {
    let endpoints = pool.set.snapshot();
    let mut answers = Vec::new();
    for endpoint in endpoints.iter().filter(|endpoint| endpoint.health() == Health::Healthy) {
        let Ok(mut client) = worker_client(endpoint, &pool.link) else { continue };
        match tokio::time::timeout(DESCRIBE_TIMEOUT, client.describe(DescribeRequest {})).await {
            // A worker that lists no kinds says nothing of what it runs.
            Ok(Ok(info)) if info.get_ref().kinds.is_empty() => {}
            Ok(Ok(info)) => answers.push((endpoint.url().to_owned(), info.into_inner())),
            Ok(Err(status)) => tracing::debug!(endpoint = endpoint.url(), %status, "a worker did not describe itself"),
            Err(_) => tracing::debug!(endpoint = endpoint.url(), "a worker took too long to describe itself"),
        }
    }
    let mut reports = pool.reported.0.lock().unwrap_or_else(PoisonError::into_inner);
    reports.retain(|url, _| endpoints.iter().any(|endpoint| endpoint.url() == url));
    reports.extend(answers);
}

/// The routes the pools' reports give, warning of configured kinds their workers do not run.
/// `configured` is kind → pool index from `[[pools]]`; `warned` remembers what was said.
pub(super) fn learn(pools: &[Pool], configured: &HashMap<String, usize>, warned: &Mutex<BTreeSet<String>>) -> Learned {
    let mut learned = Learned { routes: HashMap::new(), complete: true };
    for (index, pool) in pools.iter().enumerate() {
        let (kinds, reported) = pool.reported.kinds();
        learned.complete &= reported;
        for kind in kinds {
            if !configured.contains_key(&kind) {
                learned.routes.entry(kind).or_insert(index);
            }
        }
        if !reported {
            continue;
        }
        for (kind, _) in configured.iter().filter(|(_, at)| **at == index) {
            let (kinds, _) = pool.reported.kinds();
            let key = format!("{}/{kind}", pool.set.name());
            if !kinds.contains(kind) && warned.lock().unwrap_or_else(PoisonError::into_inner).insert(key) {
                tracing::warn!(
                    pool = pool.set.name(),
                    %kind,
                    reported = ?kinds,
                    "[[pools]] routes this kind here, but no worker of the pool says it runs it"
                );
            }
        }
    }
    learned
}

/// The learned routes, swapped whole after each round.
pub(super) type LearnedRoutes = ArcSwap<Learned>;
