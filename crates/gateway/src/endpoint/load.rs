//! An endpoint's load as the balancer sees it: calls in flight and a peak-sensitive EWMA of their
//! latency, with penalties for answers that say "not now".

use crate::clock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// How fast old latency samples fade: after this long without traffic an endpoint's cost is
/// down to a third, so an endpoint avoided for being slow is tried again in time.
const DECAY_NANOS: f64 = 2e9;

/// Latency charged for a failed call, so that an endpoint failing fast does not look fast.
const FAILURE_PENALTY_NANOS: f64 = 500e6;

/// Latency assumed for an endpoint with no samples: cheap enough to be tried.
const UNKNOWN_LATENCY_NANOS: f64 = 1e6;

/// Calls in flight and latency of one endpoint.
#[derive(Debug)]
pub struct Load {
    in_flight: AtomicU32,
    /// The EWMA in nanoseconds, as `f64` bits.
    ewma: AtomicU64,
    /// When the EWMA was last updated.
    stamp: AtomicU64,
    /// Until when the endpoint asked not to be sent work (pushback, `Retry-After`).
    penalty_until: AtomicU64,
}

impl Default for Load {
    fn default() -> Self {
        Self {
            in_flight: AtomicU32::new(0),
            ewma: AtomicU64::new(UNKNOWN_LATENCY_NANOS.to_bits()),
            stamp: AtomicU64::new(clock::now()),
            penalty_until: AtomicU64::new(0),
        }
    }
}

/// Counts one call in flight until dropped.
pub struct InFlight<'a>(&'a Load);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[allow(clippy::cast_precision_loss)] // nanosecond spans far below 2^52
fn decayed(ewma: f64, since: u64, now: u64) -> f64 {
    let elapsed = now.saturating_sub(since) as f64;
    ewma * (-elapsed / DECAY_NANOS).exp()
}

impl Load {
    /// Marks a call in flight for as long as the guard lives.
    pub fn start(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The latency EWMA as of `now`, in nanoseconds.
    pub fn latency(&self, now: u64) -> f64 {
        let ewma = f64::from_bits(self.ewma.load(Ordering::Relaxed));
        decayed(ewma, self.stamp.load(Ordering::Relaxed), now).max(1.0)
    }

    /// The balancer's cost: EWMA latency × (calls in flight + 1).
    pub fn cost(&self, now: u64) -> f64 {
        self.latency(now) * f64::from(self.in_flight() + 1)
    }

    /// Whether the endpoint asked for no work until later than `now`.
    pub fn penalized(&self, now: u64) -> bool {
        self.penalty_until.load(Ordering::Relaxed) > now
    }

    /// Records a call's latency. Peak-sensitive: a slower sample replaces the average at once,
    /// faster ones pull it down gradually.
    #[allow(clippy::cast_precision_loss)]
    pub fn observe(&self, latency_nanos: u64, now: u64) {
        let sample = latency_nanos as f64;
        let previous = self.latency(now);
        let ewma = if sample > previous {
            sample
        } else {
            let since = now.saturating_sub(self.stamp.load(Ordering::Relaxed)) as f64;
            let weight = (-since / DECAY_NANOS).exp().clamp(0.0, 0.95);
            previous * weight + sample * (1.0 - weight)
        };
        // Concurrent updates race; the loser's sample is lost, which an average can afford.
        self.ewma.store(ewma.to_bits(), Ordering::Relaxed);
        self.stamp.store(now, Ordering::Relaxed);
    }

    /// Records a failed call: charged as a slow one, so that failing fast does not attract work.
    pub fn observe_failure(&self, now: u64) {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        self.observe(FAILURE_PENALTY_NANOS as u64, now);
    }

    /// Keeps work away until `until` (the endpoint's own pushback or `Retry-After`).
    pub fn penalize_until(&self, until: u64) {
        self.penalty_until.fetch_max(until, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn cost_grows_with_latency_and_calls_in_flight() {
        let now = clock::now();
        let fast = Load::default();
        let slow = Load::default();
        fast.observe(MS, now);
        slow.observe(50 * MS, now);
        assert!(slow.cost(now) > 10.0 * fast.cost(now));
        let _calls: Vec<_> = (0..9).map(|_| fast.start()).collect();
        assert!((fast.cost(now) / fast.latency(now) - 10.0).abs() < 1e-9);
    }

    #[test]
    fn a_slow_sample_counts_at_once_and_fades_with_time() {
        let now = clock::now();
        let load = Load::default();
        load.observe(MS, now);
        load.observe(100 * MS, now);
        assert!(load.latency(now) >= 99.0 * MS as f64);
        let later = now + 20_000 * MS;
        assert!(load.latency(later) < 20.0 * MS as f64, "{}", load.latency(later));
    }

    #[test]
    fn failures_look_slow_and_pushback_keeps_work_away() {
        let now = clock::now();
        let load = Load::default();
        load.observe(MS, now);
        load.observe_failure(now);
        assert!(load.latency(now) >= FAILURE_PENALTY_NANOS);
        load.penalize_until(now + 100 * MS);
        assert!(load.penalized(now + 50 * MS));
        assert!(!load.penalized(now + 150 * MS));
    }
}
