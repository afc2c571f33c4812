//! How the jobs engine is configured: `[jobs]` (how durable jobs are retried, leased, dispatched
//! and kept) and `[[pools]]` (which workers run which kinds).

use rampart_balance::config::Balance;
use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, time::Duration};

impl JobsConfig {
    /// How many jobs of `kind` may run at once when `capacity` slots exist: its own
    /// `kind_limits` entry, else its `kind_share` of the slots (at least one). The claim also
    /// holds `kind_limits` across the store; the share is this gateway's own.
    pub fn kind_limit(&self, kind: &str, capacity: usize) -> usize {
        if let Some(limit) = self.kind_limits.get(kind) {
            return *limit;
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
        let share = (capacity as f64 * self.kind_share).ceil() as usize;
        share.max(1)
    }
}

/// `[jobs]`: durable job settings. The store itself is the top-level `store` key.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobsConfig {
    /// Attempts a job gets unless it asks for another number; after the last failure it is `dead`.
    pub max_attempts: u32,
    /// Each attempt's time limit unless the job gives `timeout_ms`.
    #[serde(with = "rampart_common::duration")]
    pub default_timeout: Duration,
    /// Wait before retry n: random between zero and `backoff_base × 2^(n−1)` (full jitter)...
    #[serde(with = "rampart_common::duration")]
    pub backoff_base: Duration,
    /// ...never more than this.
    #[serde(with = "rampart_common::duration")]
    pub backoff_max: Duration,
    /// How long a running job's lease lasts without renewal. A gateway renews its leases every
    /// third of this; when it dies they expire and another gateway (or it, restarted) rescues
    /// the jobs within `lease + sweep_interval`.
    #[serde(with = "rampart_common::duration")]
    pub lease: Duration,
    /// How often the store is swept for expired leases and for jobs another gateway accepted
    /// (a safety net: jobs this gateway accepts are dispatched at once).
    #[serde(with = "rampart_common::duration")]
    pub sweep_interval: Duration,
    /// Jobs sent to each healthy worker at once; together they bound the jobs in flight.
    pub worker_slots: usize,
    /// Most jobs claimed from the store in one go.
    pub claim_batch: usize,
    /// Jobs of a kind running at once, for the kinds listed: counted in the store, across every
    /// gateway on it (so give every gateway the same limits).
    pub kind_limits: BTreeMap<String, usize>,
    /// The most jobs of one tenant running at once, counted in the store across every gateway
    /// [default: no limit].
    pub tenant_limit: Option<usize>,
    /// The largest share of the dispatch slots (healthy workers × `worker_slots`) one kind may
    /// hold unless `kind_limits` names it: long jobs of one kind can never take every slot, so
    /// other kinds keep being picked up at once.
    pub kind_share: f64,
    /// How long finished jobs are kept before they are pruned.
    #[serde(with = "rampart_common::duration")]
    pub retention: Duration,
    /// The longest `?wait=` a client may ask for.
    #[serde(with = "rampart_common::duration")]
    pub max_wait: Duration,
    /// Most jobs in one `POST /api/batch`.
    pub max_batch: usize,
    /// This gateway's name as the owner of its leases. A gateway restarted under the same name
    /// takes its jobs back at once instead of waiting for their leases to expire; two live
    /// gateways must never share one [default: the host name and a random suffix].
    pub node_id: Option<String>,
    /// How often this gateway records in the store that it is live. A heartbeat that gets no
    /// answer within this long (at least 1s) marks the store unreachable here: claims stop and
    /// new durable jobs are answered 503 `store_unavailable` until one gets through.
    #[serde(with = "rampart_common::duration")]
    pub heartbeat_interval: Duration,
    /// A gateway not heard from for this long is no longer counted live by the others (for
    /// cluster-wide limits and for whom to signal).
    #[serde(with = "rampart_common::duration")]
    pub member_timeout: Duration,
    /// Where this gateway serves clients, as `GET /admin/cluster` lists it [default: the public
    /// listener's address, with the host name in place of an unspecified address].
    pub advertise: Option<String>,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            default_timeout: Duration::from_secs(60),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            lease: Duration::from_secs(10),
            sweep_interval: Duration::from_secs(2),
            worker_slots: 1024,
            claim_batch: 1024,
            kind_limits: BTreeMap::new(),
            tenant_limit: None,
            kind_share: 0.5,
            retention: Duration::from_secs(7 * 24 * 3600),
            max_wait: Duration::from_secs(60),
            max_batch: 10_000,
            node_id: None,
            heartbeat_interval: Duration::from_secs(1),
            member_timeout: Duration::from_secs(5),
            advertise: None,
        }
    }
}

impl JobsConfig {
    /// The limits on running jobs that claims count across the store.
    pub fn running_limits(&self) -> rampart_jobstore::rules::RunningLimits {
        rampart_jobstore::rules::RunningLimits { kinds: self.kind_limits.clone(), tenant: self.tenant_limit }
    }

    /// Checks the values; on error, the key and why.
    pub fn check(&self) -> Result<(), (String, String)> {
        let positive = [
            ("jobs.default_timeout", self.default_timeout),
            ("jobs.backoff_max", self.backoff_max),
            ("jobs.lease", self.lease),
            ("jobs.sweep_interval", self.sweep_interval),
            ("jobs.retention", self.retention),
            ("jobs.max_wait", self.max_wait),
            ("jobs.heartbeat_interval", self.heartbeat_interval),
        ];
        for (key, value) in positive {
            if value.is_zero() {
                return Err((key.into(), "must be more than zero".into()));
            }
        }
        if self.lease < Duration::from_secs(1) {
            return Err(("jobs.lease".into(), "must be at least 1s so renewals keep up".into()));
        }
        let at_least_one = [
            ("jobs.max_attempts", self.max_attempts as usize),
            ("jobs.worker_slots", self.worker_slots),
            ("jobs.claim_batch", self.claim_batch),
            ("jobs.max_batch", self.max_batch),
        ];
        for (key, value) in at_least_one {
            if value == 0 {
                return Err((key.into(), "must be at least 1".into()));
            }
        }
        if let Some((kind, _)) = self.kind_limits.iter().find(|(_, limit)| **limit == 0) {
            return Err((format!("jobs.kind_limits.{kind}"), "must be at least 1".into()));
        }
        if self.tenant_limit == Some(0) {
            return Err(("jobs.tenant_limit".into(), "must be at least 1".into()));
        }
        if !(self.kind_share > 0.0 && self.kind_share <= 1.0) {
            return Err(("jobs.kind_share".into(), "must be more than 0 and at most 1".into()));
        }
        if self.node_id.as_ref().is_some_and(|id| id.trim().is_empty()) {
            return Err(("jobs.node_id".into(), "must not be empty".into()));
        }
        if self.node_id.as_ref().is_some_and(|id| id.chars().any(char::is_control)) {
            return Err(("jobs.node_id".into(), "must not contain control characters".into()));
        }
        if self.member_timeout < self.heartbeat_interval * 2 {
            return Err((
                "jobs.member_timeout".into(),
                "must be at least twice jobs.heartbeat_interval, or a live gateway would seem gone".into(),
            ));
        }
        Ok(())
    }
}

/// `[[pools]]`: workers that run the listed job kinds.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// The pool's name, shown at `/admin/backends` and in logs.
    pub name: String,
    /// Its worker endpoints: `http://HOST:PORT`, or `dns://NAME:PORT` for every address the name
    /// resolves to (re-resolved every `dns_refresh`).
    pub workers: Vec<String>,
    /// The job kinds routed to it. Optional: without it the pool takes the kinds its workers
    /// say they run (`Describe`) that the default pool's workers do not; with it, those kinds go
    /// here whatever the workers say, and a kind its workers do not run is logged.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// How it picks an endpoint.
    #[serde(default)]
    pub balance: Balance,
}

/// What a scheduler does with the ticks of a `[[cron]]` entry that passed while no gateway ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// Skips them: the next job is the next tick's.
    None,
    /// Runs one job, for the latest of them (within `max_catch_up`).
    #[default]
    Latest,
    /// Runs a job for each of them within `max_catch_up`, oldest first.
    All,
}

impl CatchUp {
    /// Its name in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Latest => "latest",
            Self::All => "all",
        }
    }
}

/// `[[cron]]`: a durable job enqueued on a schedule, once per tick however many gateways share
/// the store (the entry's name and the tick's time are a unique key there).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CronConfig {
    /// The entry's name, unique among the entries: it names its ticks in the store, so renaming
    /// an entry starts it afresh.
    pub name: String,
    /// A cron expression: five fields (minute hour day-of-month month day-of-week) or six with
    /// seconds first; `L`, `W`, `#` and `@hourly`-style aliases are understood.
    pub schedule: String,
    /// The IANA time zone the expression is read in (`Europe/Paris`) [default: `UTC`].
    #[serde(default = "utc")]
    pub time_zone: String,
    /// The job kind.
    pub kind: String,
    /// The job's payload [default: null].
    #[serde(default)]
    pub payload: Option<serde_json::Value>,
    /// The job's priority.
    #[serde(default)]
    pub priority: rampart_jobstore::model::Priority,
    /// Attempts the job gets [default: `jobs.max_attempts`].
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Each attempt's time limit [default: `jobs.default_timeout`].
    #[serde(default, with = "rampart_common::duration::optional")]
    pub timeout: Option<Duration>,
    /// What to do with the ticks missed while no gateway ran [default: `latest`].
    #[serde(default)]
    pub catch_up: CatchUp,
    /// How far back missed ticks are made up [default: 1h].
    #[serde(default = "an_hour", with = "rampart_common::duration")]
    pub max_catch_up: Duration,
}

fn utc() -> String {
    "UTC".into()
}

fn an_hour() -> Duration {
    Duration::from_secs(3600)
}
