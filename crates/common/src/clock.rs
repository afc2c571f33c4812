//! Time as the rate limiter and circuit breaker see it: nanoseconds on a monotonic clock, behind
//! a trait so tests can drive it by hand.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

/// A monotonic source of time in nanoseconds since an arbitrary epoch.
pub trait Clock: Send + Sync + 'static {
    /// Nanoseconds since this clock's epoch; never goes backwards.
    fn now_nanos(&self) -> u64;
}

/// The real monotonic clock, counting from its creation.
///
/// It reads the CPU's time-stamp counter where that is reliable (through `quanta`), which costs a
/// few nanoseconds against twenty or more for a system call-free `Instant::now()`; this matters
/// on paths that read the time on every request.
#[derive(Debug, Clone)]
pub struct MonotonicClock {
    clock: quanta::Clock,
    epoch: u64,
}

impl MonotonicClock {
    /// A clock whose epoch is now.
    pub fn new() -> Self {
        let clock = quanta::Clock::new();
        let epoch = clock.raw();
        Self { clock, epoch }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    fn now_nanos(&self) -> u64 {
        self.clock.delta_as_nanos(self.epoch, self.clock.raw())
    }
}

/// A clock that moves only when told to; clones share the same time. For tests.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at time zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(nanos, Ordering::SeqCst);
    }

    /// The current time as a duration since the epoch.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
}

impl Clock for ManualClock {
    fn now_nanos(&self) -> u64 {
        self.nanos.load(Ordering::SeqCst)
    }
}

/// The process's one real clock, started on first use.
static PROCESS_CLOCK: std::sync::LazyLock<MonotonicClock> = std::sync::LazyLock::new(MonotonicClock::new);

/// Nanoseconds on the process's clock: cheap to read, shared by every module that stamps times
/// to compare them later (endpoint load, connection idleness).
pub fn now() -> u64 {
    PROCESS_CLOCK.now_nanos()
}

/// Converts a duration to whole nanoseconds, saturating.
pub fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_monotonic_clock_tracks_real_time() {
        let clock = MonotonicClock::new();
        let started = std::time::Instant::now();
        let first = clock.now_nanos();
        std::thread::sleep(Duration::from_millis(50));
        let elapsed = clock.now_nanos() - first;
        let real = nanos(started.elapsed());
        assert!(elapsed >= 45_000_000 && elapsed <= real + 5_000_000, "{elapsed} ns vs {real} ns");
    }

    #[test]
    fn the_manual_clock_moves_only_when_told_and_clones_share_it() {
        let clock = ManualClock::new();
        let copy = clock.clone();
        assert_eq!(copy.now_nanos(), 0);
        clock.advance(Duration::from_millis(3));
        assert_eq!(copy.now_nanos(), 3_000_000);
        assert_eq!(copy.elapsed(), Duration::from_millis(3));
    }
}
