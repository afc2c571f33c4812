//! Lease renewal: every third of a lease, the leases of the jobs running here are extended; the
//! answer says which were cancelled or lost meanwhile. When the store cannot be reached, the
//! jobs whose leases would end before the next try are stopped here, before another gateway may
//! take them.

use super::{Core, model::now_micros, running::StopReason, store::StoreError};
use rampart_common::shutdown::{Every, FirstTick};
use std::{sync::Arc, time::Duration};
use tokio_util::sync::CancellationToken;

/// Renews leases of `lease` length until `stop`: told after the engine is drained, not at the
/// stop signal, so jobs still finishing keep their leases.
pub(super) async fn run(shared: Arc<Core>, lease: Duration, stop: CancellationToken) {
    let mut every = Every::new(lease / 3, FirstTick::Now, stop);
    while every.tick().await {
        renew_once(&shared, lease).await;
    }
}

async fn renew_once(shared: &Core, lease: Duration) {
    let leases = shared.in_flight.leases();
    if leases.is_empty() {
        return;
    }
    let until = now_micros().saturating_add(super::micros(lease));
    // A store cut off by a silent network never answers: the renewal is given up on before the
    // next one is due, so that the leases it could not extend are seen to be ending.
    let renewal = tokio::time::timeout(lease / 3, shared.store.renew(&shared.owner, leases.clone(), until)).await;
    let renewal = renewal.unwrap_or_else(|_| Err(StoreError::Unavailable("no answer to a lease renewal".into())));
    match renewal {
        Ok(renewal) => {
            shared.in_flight.renewed(&leases, until);
            for id in renewal.cancel {
                shared.in_flight.stop(&id, StopReason::Cancelled);
            }
            for lease in renewal.lost {
                // A renewal races the attempt's own end: a lease the store no longer has is
                // lost only if its attempt still runs here.
                if !shared.in_flight.holds(&lease) {
                    continue;
                }
                tracing::warn!(job = %lease.id, "lost the lease of a running job (rescued elsewhere); stopping it here");
                shared.in_flight.stop(&lease.id, StopReason::LeaseLost);
            }
        }
        Err(error) => {
            tracing::error!(%error, "cannot renew job leases");
            stop_before_leases_end(shared, lease);
        }
    }
}

/// After a failed renewal: stops the jobs whose lease would end before the next renewal could
/// extend it. Once it ends another gateway may rescue the job, and the same job must never run
/// on two gateways at once; stopped here, it runs again there (or here, once the store is back).
fn stop_before_leases_end(shared: &Core, lease: Duration) {
    // The next renewal comes a third of a lease from now; a margin covers its own round trip.
    let before = now_micros().saturating_add(super::micros(lease / 3 + lease / 6));
    let expiring = shared.in_flight.expiring(before);
    if expiring.is_empty() {
        return;
    }
    tracing::warn!(jobs = expiring.len(), "stopping jobs whose leases cannot be renewed before they end");
    for id in expiring {
        shared.in_flight.stop(&id, StopReason::LeaseLost);
    }
}
