//! Lease renewal: every third of a lease, the leases of the jobs running here are extended; the
//! answer says which were cancelled or lost meanwhile.

use super::{Core, model::now_micros, running::StopReason};
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
    match shared.store.renew(&shared.owner, leases, until).await {
        Ok(renewal) => {
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
        Err(error) => tracing::error!(%error, "cannot renew job leases"),
    }
}
