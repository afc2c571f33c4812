//! What a claim must respect beyond due times: whose turn it is (claims take turns over the
//! tenants with work), how many jobs of a kind or of a tenant may run at once in the whole
//! store, and which kinds and tenants are paused. These hold in the store, so every gateway on
//! one store honours them alike.

use super::model::Micros;
use std::{collections::BTreeMap, sync::Arc};

/// The tenant of a job whose caller names none and is not authenticated.
pub const DEFAULT_TENANT: &str = "default";

/// Limits on running jobs counted across the whole store (every gateway's jobs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunningLimits {
    /// The most jobs of each listed kind running at once.
    pub kinds: BTreeMap<String, usize>,
    /// The most jobs of any one tenant running at once.
    pub tenant: Option<usize>,
}

impl RunningLimits {
    /// Whether any limit is set (claims then count running jobs first).
    pub fn any(&self) -> bool {
        !self.kinds.is_empty() || self.tenant.is_some()
    }

    /// Whether a job of `kind` may only start through a claim, which counts the store's running
    /// jobs (a job started at acceptance is not counted against the others).
    pub fn limits(&self, kind: &str) -> bool {
        self.tenant.is_some() || self.kinds.contains_key(kind)
    }
}

/// One claim: how many jobs, for whom, and what to leave out.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    /// The most jobs to claim.
    pub limit: usize,
    /// The gateway that will hold the leases.
    pub owner: String,
    /// When the leases run out unless renewed.
    pub lease_until: Micros,
    /// The store's clock now: jobs due by then are claimed.
    pub now: Micros,
    /// Kinds the claiming gateway has no room for (its own shares of its slots).
    pub excluded_kinds: Vec<String>,
    /// The tenant the claimer served last: this claim's round starts with the tenant after it.
    pub after_tenant: Option<String>,
    /// Store-wide limits on running jobs.
    pub limits: Arc<RunningLimits>,
}

impl ClaimRequest {
    /// A claim of up to `limit` jobs due at `now`, leased to `owner` until `lease_until`, with no
    /// exclusions, no limits and the round starting at the first tenant.
    pub fn new(limit: usize, owner: &str, lease_until: Micros, now: Micros) -> Self {
        Self {
            limit,
            owner: owner.to_owned(),
            lease_until,
            now,
            excluded_kinds: Vec::new(),
            after_tenant: None,
            limits: Arc::default(),
        }
    }

    /// Leaves out jobs of these kinds.
    #[must_use]
    pub fn excluding(mut self, kinds: &[String]) -> Self {
        self.excluded_kinds = kinds.to_vec();
        self
    }

    /// Starts the round after this tenant.
    #[must_use]
    pub fn after_tenant(mut self, tenant: Option<&str>) -> Self {
        self.after_tenant = tenant.map(str::to_owned);
        self
    }

    /// Holds these store-wide limits.
    #[must_use]
    pub fn with_limits(mut self, limits: Arc<RunningLimits>) -> Self {
        self.limits = limits;
        self
    }
}

/// What a pause stops: every job of a kind, or every job of a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PauseScope {
    /// A job kind.
    Kind,
    /// A tenant.
    Tenant,
}

impl PauseScope {
    /// Its name in the store and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kind => "kind",
            Self::Tenant => "tenant",
        }
    }

    /// The scope named `text`, if any.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "kind" => Some(Self::Kind),
            "tenant" => Some(Self::Tenant),
            _ => None,
        }
    }
}

/// A kind or tenant whose queued jobs start nothing until resumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pause {
    /// What it stops.
    pub scope: PauseScope,
    /// The kind's or tenant's name.
    pub name: String,
    /// When it was paused.
    pub since: Micros,
}

/// Running jobs by kind and by tenant, as a claim counts them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Running {
    pub(crate) kinds: BTreeMap<String, usize>,
    pub(crate) tenants: BTreeMap<String, usize>,
}

impl Running {
    /// Counts `count` running jobs of `kind` for `tenant`.
    pub(crate) fn add(&mut self, kind: String, tenant: String, count: usize) {
        *self.kinds.entry(kind).or_default() += count;
        *self.tenants.entry(tenant).or_default() += count;
    }
}
