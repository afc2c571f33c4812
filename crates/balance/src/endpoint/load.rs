//! An endpoint's load as the balancer sees it: calls in flight and a peak-sensitive EWMA of their
//! latency, with penalties for answers that say "not now". An endpoint that has calls in flight
//! but has answered none of them for a while costs more with every `SILENCE_SCALE_NANOS` of that
//! silence, so one that stops answering (a hung process, a cut network) is avoided within a
//! fraction of a second, long before a timeout or a health check says so, even when long jobs
//! have made every endpoint's average latency long.

use crate::clock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// How fast old latency samples fade: after this long without traffic an endpoint's cost is
/// down to a third, so an endpoint avoided for being slow is tried again in time.
const DECAY_NANOS: f64 = 2e9;

/// Latency charged for a failed call, so that an endpoint failing fast does not look fast.
const FAILURE_PENALTY_NANOS: f64 = 500e6;

/// Each this much silence (calls in flight, no answer) adds the endpoint's base cost once more.
const SILENCE_SCALE_NANOS: f64 = 100e6;

/// Silence shorter than this never makes an endpoint suspect (scheduling hiccups, GC pauses of
/// the callers' own making).
const SUSPECT_FLOOR_NANOS: f64 = 50e6;

/// Latency assumed for an endpoint with no samples: cheap enough to be tried.
const UNKNOWN_LATENCY_NANOS: f64 = 1e6;

/// Calls in flight and latency of one endpoint.
#[derive(Debug)]
pub struct Load {
    in_flight: AtomicU32,
    /// The EWMA in nanoseconds, as `f64` bits.
    ewma: AtomicU64,
    /// When the EWMA was last updated: the last answer or failure seen.
    stamp: AtomicU64,
    /// When the endpoint last answered (a failure such as a timeout is no answer).
    answered: AtomicU64,
    /// When the calls in flight last went from none to some.
    busy_since: AtomicU64,
    /// Until when the endpoint asked not to be sent work (pushback, `Retry-After`).
    penalty_until: AtomicU64,
}

impl Default for Load {
    fn default() -> Self {
        Self {
            in_flight: AtomicU32::new(0),
            ewma: AtomicU64::new(UNKNOWN_LATENCY_NANOS.to_bits()),
            stamp: AtomicU64::new(clock::now()),
            answered: AtomicU64::new(clock::now()),
            busy_since: AtomicU64::new(0),
            penalty_until: AtomicU64::new(0),
        }
    }
}

/// How the balancer ranks an endpoint at one moment: see [`Load::rank`].
#[derive(Debug, Clone, Copy)]
pub struct Rank {
    /// Silent for longer than its calls usually take: loses to any endpoint that is not.
    pub suspect: bool,
    /// Between endpoints equally suspect, the lower wins.
    pub cost: f64,
}

impl Rank {
    /// Whether an endpoint ranked `self` should be chosen over one ranked `other`.
    pub fn beats(self, other: Self) -> bool {
        match (self.suspect, other.suspect) {
            (false, true) => true,
            (true, false) => false,
            _ => self.cost < other.cost,
        }
    }
}

/// Counts one call in flight until dropped.
pub struct CallInFlight<'a>(&'a Load);

impl Drop for CallInFlight<'_> {
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
    /// Marks a call sent at `now` in flight for as long as the guard lives.
    pub fn start(&self, now: u64) -> CallInFlight<'_> {
        if self.in_flight.fetch_add(1, Ordering::Relaxed) == 0 {
            self.busy_since.store(now, Ordering::Relaxed);
        }
        CallInFlight(self)
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

    /// How long, as of `now`, the endpoint has had calls in flight without answering any, in
    /// nanoseconds (0 with none in flight).
    pub fn silence(&self, now: u64) -> u64 {
        self.silence_with(self.in_flight(), now)
    }

    fn silence_with(&self, in_flight: u32, now: u64) -> u64 {
        if in_flight == 0 {
            return 0;
        }
        // Both are recent timestamps, so a racing update moves this by little, never by a lot.
        let silent_since = self.answered.load(Ordering::Relaxed).max(self.busy_since.load(Ordering::Relaxed));
        now.saturating_sub(silent_since)
    }

    /// Whether the endpoint has been silent for longer than a call to it usually takes (and at
    /// least `SUSPECT_FLOOR_NANOS`): it has probably stopped answering. The balancer prefers any
    /// endpoint that is not, whatever the costs say, because a latency average mixing short and
    /// long jobs can make a dead endpoint look twenty times cheaper than a live one.
    pub fn suspect(&self, now: u64) -> bool {
        self.rank(now).suspect
    }

    /// The balancer's cost: EWMA latency × (calls in flight + 1) × (1 + silence / 100 ms).
    pub fn cost(&self, now: u64) -> f64 {
        self.rank(now).cost
    }

    /// Suspicion and cost together, from one read of the counters (the balancer's hot path).
    #[allow(clippy::cast_precision_loss)] // nanosecond spans far below 2^52
    pub fn rank(&self, now: u64) -> Rank {
        let in_flight = self.in_flight();
        let latency = self.latency(now);
        let silence = self.silence_with(in_flight, now) as f64;
        Rank {
            suspect: silence > 0.0 && silence > latency.max(SUSPECT_FLOOR_NANOS),
            cost: latency * f64::from(in_flight + 1) * (1.0 + silence / SILENCE_SCALE_NANOS),
        }
    }

    /// Whether the endpoint asked for no work until later than `now`.
    pub fn penalized(&self, now: u64) -> bool {
        self.penalty_until.load(Ordering::Relaxed) > now
    }

    /// Records an answer and its latency. Peak-sensitive: a slower sample replaces the average at
    /// once, faster ones pull it down gradually.
    pub fn observe(&self, latency_nanos: u64, now: u64) {
        self.sample(latency_nanos, now);
        self.answered.store(now, Ordering::Relaxed);
    }

    /// Folds one latency sample into the EWMA.
    #[allow(clippy::cast_precision_loss)]
    fn sample(&self, latency_nanos: u64, now: u64) {
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
    /// It is no answer: a call that timed out does not end the endpoint's silence.
    pub fn observe_failure(&self, now: u64) {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        self.sample(FAILURE_PENALTY_NANOS as u64, now);
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
        let _calls: Vec<_> = (0..9).map(|_| fast.start(now)).collect();
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
    fn an_endpoint_that_stops_answering_looks_as_slow_as_its_silence() {
        let now = clock::now();
        let (silent, answering) = (Load::default(), Load::default());
        silent.observe(MS, now);
        answering.observe(MS, now);
        let _hung = silent.start(now + MS);
        assert!(silent.silence(now + 2 * MS) <= MS, "one fresh call is no sign of trouble");
        let later = now + 500 * MS;
        assert_eq!(silent.silence(later), 499 * MS);
        // Twice the calls in flight, and five times the cost again for half a second of silence.
        assert!(
            silent.cost(later) > 11.0 * answering.cost(later),
            "{} vs {}",
            silent.cost(later),
            answering.cost(later)
        );
    }

    #[test]
    fn silence_longer_than_a_call_usually_takes_makes_an_endpoint_suspect() {
        let now = clock::now();
        let (quick, slow) = (Load::default(), Load::default());
        quick.observe(MS, now);
        slow.observe(2_000 * MS, now);
        let _quick_call = quick.start(now);
        let _slow_call = slow.start(now);
        assert!(!quick.suspect(now + 40 * MS), "below the floor");
        assert!(quick.suspect(now + 60 * MS));
        assert!(!slow.suspect(now + 60 * MS), "its calls take seconds");
        assert!(slow.suspect(now + 2_500 * MS));
        assert!(!Load::default().suspect(now + 60_000 * MS), "nothing in flight, nothing to suspect");
    }

    #[test]
    fn a_call_that_times_out_does_not_end_the_silence() {
        let now = clock::now();
        let load = Load::default();
        load.observe(MS, now);
        let hung = load.start(now);
        let _next = load.start(now + MS);
        load.observe_failure(now + 500 * MS);
        drop(hung);
        assert_eq!(load.silence(now + 501 * MS), 501 * MS);
        assert!(load.suspect(now + 501 * MS));
        load.observe(MS, now + 502 * MS);
        assert!(!load.suspect(now + 503 * MS), "an answer ends it");
    }

    #[test]
    fn a_busy_endpoint_that_keeps_answering_is_not_penalized() {
        let now = clock::now();
        let load = Load::default();
        let _long: Vec<_> = (0..8).map(|_| load.start(now)).collect();
        for ms in 1..=500 {
            let _short = load.start(now + ms * MS);
            load.observe(MS, now + ms * MS + MS / 2);
        }
        assert!(load.silence(now + 501 * MS) <= MS, "{}", load.silence(now + 501 * MS));
        assert!(!load.suspect(now + 501 * MS));
    }

    #[test]
    fn a_call_after_a_long_idle_spell_starts_with_a_clean_slate() {
        let now = clock::now();
        let load = Load::default();
        load.observe(MS, now);
        let start = now + 600_000 * MS;
        let _call = load.start(start);
        assert_eq!(load.silence(start + MS), MS);
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
