//! This gateway among the others on its store: a heartbeat every `heartbeat_interval` records
//! it as live and reads who else is, and tells whether the store answers at all. A heartbeat
//! that fails marks the store unreachable at once: the claim loop stops claiming and new
//! durable jobs are refused with `store_unavailable` until a heartbeat gets through again.

use super::model::{Micros, now_micros};
use crate::config::JobsConfig;
use rampart_common::shutdown::{Every, FirstTick};
use rampart_jobstore::{cluster::Member, store::JobStore};
use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Members not seen for this long are forgotten by the store (their rows deleted).
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// What this gateway knows of the store's members and of the store itself.
pub struct Cluster {
    /// This gateway's id (its lease owner name).
    id: Arc<str>,
    started_at: Micros,
    address: Mutex<String>,
    heartbeat_interval: Duration,
    member_timeout: Duration,
    /// The members as the last heartbeat read them.
    members: Mutex<Vec<Member>>,
    /// Live members, this gateway included (so at least one).
    live: AtomicUsize,
    /// Whether the last heartbeat got through.
    reachable: AtomicBool,
    /// Told when the store answers again after being unreachable.
    rejoined: Notify,
}

/// A member as `GET /admin/cluster` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MemberView {
    /// Its id (its lease owner name).
    pub id: String,
    /// Where it serves clients.
    pub address: String,
    /// When it started (RFC 3339).
    pub started: String,
    /// Its last heartbeat (RFC 3339).
    pub last_seen: String,
    /// Whether it is counted live: heard from within `member_timeout`.
    pub live: bool,
    /// Whether it is this gateway.
    pub this: bool,
}

impl Cluster {
    /// This gateway, before its first heartbeat: alone, the store presumed reachable (it was
    /// opened a moment ago).
    pub(super) fn new(id: Arc<str>, jobs: &JobsConfig) -> Self {
        Self {
            id,
            started_at: now_micros(),
            address: Mutex::new(jobs.advertise.clone().unwrap_or_default()),
            heartbeat_interval: jobs.heartbeat_interval,
            member_timeout: jobs.member_timeout,
            members: Mutex::default(),
            live: AtomicUsize::new(1),
            reachable: AtomicBool::new(true),
            rejoined: Notify::new(),
        }
    }

    /// Sets the address this gateway advertises, unless the configuration named one.
    pub(super) fn advertise(&self, address: &str) {
        let mut advertised = self.address.lock().unwrap_or_else(PoisonError::into_inner);
        if advertised.is_empty() {
            address.clone_into(&mut advertised);
        }
    }

    /// Live gateways on the store, this one included.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Whether another live gateway may want to hear of this one's jobs.
    pub fn has_peers(&self) -> bool {
        self.live() > 1
    }

    /// Whether the store answered the last heartbeat.
    pub fn reachable(&self) -> bool {
        self.reachable.load(Ordering::Acquire)
    }

    /// Resolves when the store answers again after being unreachable.
    pub(super) async fn rejoined(&self) {
        self.rejoined.notified().await;
    }

    /// The members as the last heartbeat read them, oldest first.
    pub fn members(&self) -> Vec<MemberView> {
        let now = now_micros();
        let members = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        members
            .iter()
            .map(|member| MemberView {
                id: member.id.clone(),
                address: member.address.clone(),
                started: super::model::rfc3339(member.started_at),
                last_seen: super::model::rfc3339(member.last_seen),
                live: self.is_live(member, now),
                this: *member.id == *self.id,
            })
            .collect()
    }

    fn is_live(&self, member: &Member, now: Micros) -> bool {
        *member.id == *self.id || member.last_seen >= now.saturating_sub(super::micros(self.member_timeout))
    }

    fn me(&self, now: Micros) -> Member {
        Member {
            id: self.id.to_string(),
            address: self.address.lock().unwrap_or_else(PoisonError::into_inner).clone(),
            started_at: self.started_at,
            last_seen: now,
        }
    }

    /// One heartbeat: records this gateway, reads the others, and notes whether the store
    /// answered. Returns whether it did.
    pub(super) async fn beat(&self, store: &dyn JobStore) -> bool {
        let now = now_micros();
        let forget_before = now.saturating_sub(super::micros(FORGET_AFTER));
        let within = self.heartbeat_interval.max(Duration::from_secs(1));
        match store.heartbeat(&self.me(now), forget_before, within).await {
            Ok(members) => {
                let live = members.iter().filter(|member| self.is_live(member, now)).count().max(1);
                self.live.store(live, Ordering::Release);
                *self.members.lock().unwrap_or_else(PoisonError::into_inner) = members;
                #[allow(clippy::cast_precision_loss)] // gauges are f64
                metrics::gauge!("rampart_cluster_members").set(live as f64);
                if !self.reachable.swap(true, Ordering::AcqRel) {
                    tracing::info!(members = live, "the job store answers again; claiming and accepting jobs");
                    metrics::gauge!("rampart_store_reachable").set(1.0);
                    self.rejoined.notify_waiters();
                }
                true
            }
            Err(error) => {
                if self.reachable.swap(false, Ordering::AcqRel) {
                    tracing::error!(
                        %error,
                        "cut off from the job store: not claiming, and answering 503 to new durable jobs until it is back"
                    );
                    metrics::gauge!("rampart_store_reachable").set(0.0);
                    metrics::counter!("rampart_store_outages_total").increment(1);
                }
                false
            }
        }
    }

    /// Beats every `heartbeat_interval` until `stop`, then leaves the store's membership.
    pub(super) async fn run(self: Arc<Self>, store: Arc<dyn JobStore>, stop: CancellationToken) {
        metrics::gauge!("rampart_store_reachable").set(1.0);
        let mut every = Every::new(self.heartbeat_interval, FirstTick::Now, stop);
        while every.tick().await {
            self.beat(&*store).await;
        }
        if let Err(error) = store.leave(&self.id).await {
            tracing::warn!(%error, "cannot remove this gateway from the store's members; it will age out");
        }
    }
}
