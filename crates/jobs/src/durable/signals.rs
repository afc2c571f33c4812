//! Signals between the gateways on one store (PostgreSQL's LISTEN/NOTIFY): a gateway that
//! queues jobs says so, and one whose jobs change (start, report progress, end) names them, so
//! another gateway claims at once and a client waiting there hears of the change without
//! polling. Nothing is sent while this gateway is alone on the store.
//!
//! Sending never waits on the store: changes go to an outbox, and one task sends whatever has
//! gathered as one statement. Listening runs on a connection of its own; when it is lost, the
//! claim loop's sweep and the followers' polling cover what was missed until it is back.

use super::{Core, direct::Direct, events::JobEvent};
use rampart_jobstore::cluster::{Heard, Signal};
use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Most outgoing changes gathered into one send.
const BATCH: usize = 4096;

/// How long to wait before listening again after the listener failed.
const RELISTEN_AFTER: Duration = Duration::from_millis(500);

/// A change to tell the other gateways of.
pub(super) enum Outgoing {
    /// Jobs were queued.
    Queued,
    /// This job changed.
    Changed(Arc<str>),
}

impl Core {
    /// Tells the other gateways, if there are any, that jobs were queued here.
    pub(super) fn signal_queued(&self) {
        if self.cluster.has_peers() {
            let _ = self.outbox.send(Outgoing::Queued);
        }
    }

    /// Tells the other gateways, if there are any, that a job changed (after the store has it).
    pub(super) fn signal_changed(&self, id: &Arc<str>) {
        if self.cluster.has_peers() {
            let _ = self.outbox.send(Outgoing::Changed(Arc::clone(id)));
        }
    }

    /// Acts on another gateway's signal: claims if it queued jobs, reads the changed jobs that
    /// clients here follow and passes their news on.
    async fn hear(&self, heard: Heard, direct: &Direct) {
        if *heard.from == *self.owner {
            return;
        }
        match heard.signal {
            Signal::Queued => {
                // Jobs wait in the queue now: new ones here must not start ahead of them.
                direct.note_queued();
                self.wake.notify_one();
            }
            Signal::Changed(mut ids) => {
                ids.retain(|id| self.events.is_watched(id));
                if ids.is_empty() {
                    return;
                }
                // A failed read loses nothing: the followers' own polling covers it.
                if let Ok(records) = self.store.get_many(&ids).await {
                    for record in &records {
                        self.events.publish(JobEvent::of(record));
                    }
                }
            }
        }
    }
}

/// Sends what gathers in the outbox until `stop`.
pub(super) async fn send(shared: Arc<Core>, mut outbox: mpsc::UnboundedReceiver<Outgoing>, stop: CancellationToken) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            received = outbox.recv_many(&mut batch, BATCH) => if received == 0 { return },
        }
        let queued = batch.iter().any(|outgoing| matches!(outgoing, Outgoing::Queued));
        let mut changed: Vec<String> = batch
            .drain(..)
            .filter_map(|outgoing| match outgoing {
                Outgoing::Changed(id) => Some(id.to_string()),
                Outgoing::Queued => None,
            })
            .collect();
        changed.sort_unstable();
        changed.dedup();
        let mut signals = Vec::with_capacity(2);
        if !changed.is_empty() {
            signals.push(Signal::Changed(changed));
        }
        if queued {
            signals.push(Signal::Queued);
        }
        for signal in &signals {
            if let Err(error) = shared.store.signal(&shared.owner, signal).await {
                // The others' sweeps and polls still find the jobs.
                tracing::debug!(%error, "cannot signal the other gateways");
                metrics::counter!("rampart_cluster_signals_failed_total").increment(1);
            }
        }
    }
}

/// Listens to the other gateways until `stop`; returns at once on a store with one gateway.
pub(super) async fn listen(shared: Arc<Core>, direct: Arc<Direct>, stop: CancellationToken) {
    loop {
        let listener = tokio::select! {
            () = stop.cancelled() => return,
            listener = shared.store.listen() => listener,
        };
        let mut listener = match listener {
            Ok(Some(listener)) => listener,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, "cannot listen to the other gateways; relying on the sweep meanwhile");
                if wait_or_stop(&stop, RELISTEN_AFTER).await {
                    return;
                }
                continue;
            }
        };
        shared.signals_live.store(true, Ordering::Release);
        // Whatever was missed while not listening: claim, and let followers read the store.
        shared.events.resync();
        shared.wake.notify_one();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                // The connection may be one the outage left dead without a word: listen anew.
                () = shared.cluster.rejoined() => break,
                heard = listener.next() => match heard {
                    Ok(Some(heard)) => shared.hear(heard, &direct).await,
                    Ok(None) => {
                        tracing::warn!("lost the connection carrying the other gateways' signals; listening again");
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "lost the other gateways' signals; listening again");
                        break;
                    }
                },
            }
        }
        shared.signals_live.store(false, Ordering::Release);
        metrics::counter!("rampart_cluster_listener_losses_total").increment(1);
        drop(listener);
        if wait_or_stop(&stop, RELISTEN_AFTER).await {
            return;
        }
    }
}

/// Waits `delay`; true if `stop` came first.
async fn wait_or_stop(stop: &CancellationToken, delay: Duration) -> bool {
    tokio::select! {
        () = stop.cancelled() => true,
        () = tokio::time::sleep(delay) => false,
    }
}
