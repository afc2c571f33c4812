//! The sliding window: outcomes per time slot, and calls in flight by the slot they started in.

/// Slots per window length; the window's resolution is a tenth of it.
pub(super) const SLOTS_PER_WINDOW: u64 = 10;

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    slot: u64,
    successes: u32,
    failures: u32,
    /// Calls that started in this slot and have not finished.
    in_flight: u32,
}

/// Counts over a ring of time slots long enough to cover both the window and `slow_call`.
#[derive(Debug)]
pub(super) struct Window {
    slot_nanos: u64,
    window_slots: u64,
    buckets: Vec<Bucket>,
    /// Calls in flight that started before the oldest slot in the ring.
    ancient_in_flight: u32,
}

/// Sums over the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Totals {
    pub(super) successes: u32,
    pub(super) failures: u32,
}

impl Window {
    /// A window of `window_nanos`, keeping in-flight calls by start time for at least
    /// `slow_call_nanos`.
    pub(super) fn new(window_nanos: u64, slow_call_nanos: u64) -> Self {
        let slot_nanos = (window_nanos / SLOTS_PER_WINDOW).max(1);
        let span = window_nanos.max(slow_call_nanos);
        let ring = usize::try_from(span.div_ceil(slot_nanos) + 1).unwrap_or(usize::MAX).min(100_000);
        Self {
            slot_nanos,
            window_slots: SLOTS_PER_WINDOW,
            buckets: vec![Bucket { slot: u64::MAX, ..Bucket::default() }; ring],
            ancient_in_flight: 0,
        }
    }

    /// The slot a time falls in.
    pub(super) fn slot(&self, now: u64) -> u64 {
        now / self.slot_nanos
    }

    fn index(&self, slot: u64) -> usize {
        #[allow(clippy::cast_possible_truncation)] // reduced modulo the ring length
        let index = (slot % self.buckets.len() as u64) as usize;
        index
    }

    /// The bucket for `slot`, recycling whatever older slot held its place.
    fn bucket(&mut self, slot: u64) -> &mut Bucket {
        let index = self.index(slot);
        let bucket = &mut self.buckets[index];
        if bucket.slot != slot {
            if bucket.slot != u64::MAX {
                self.ancient_in_flight += bucket.in_flight;
            }
            *bucket = Bucket { slot, ..Bucket::default() };
        }
        &mut self.buckets[index]
    }

    /// A call starts now; returns the slot to hand back when it ends.
    pub(super) fn start(&mut self, now: u64) -> u64 {
        let slot = self.slot(now);
        self.bucket(slot).in_flight += 1;
        slot
    }

    /// A call that started in `started` ends now with `success` (or with no outcome at all).
    pub(super) fn finish(&mut self, started: u64, now: u64, outcome: Option<bool>) {
        let index = self.index(started);
        let bucket = &mut self.buckets[index];
        if bucket.slot == started {
            bucket.in_flight = bucket.in_flight.saturating_sub(1);
        } else {
            self.ancient_in_flight = self.ancient_in_flight.saturating_sub(1);
        }
        let current = self.bucket(self.slot(now));
        match outcome {
            Some(true) => current.successes += 1,
            Some(false) => current.failures += 1,
            None => {}
        }
    }

    /// Successes and failures recorded within the window ending now.
    pub(super) fn totals(&self, now: u64) -> Totals {
        let current = self.slot(now);
        let oldest = current.saturating_sub(self.window_slots - 1);
        self.buckets
            .iter()
            .filter(|bucket| bucket.slot != u64::MAX && bucket.slot >= oldest && bucket.slot <= current)
            .fold(Totals::default(), |totals, bucket| Totals {
                successes: totals.successes + bucket.successes,
                failures: totals.failures + bucket.failures,
            })
    }

    /// Calls in flight now, and how many of them started at least `age` nanoseconds ago.
    /// Slot granularity makes the age check err towards younger (a call counts as stuck only once
    /// its whole slot is older than `age`).
    pub(super) fn in_flight(&self, now: u64, age: u64) -> (u32, u32) {
        let cutoff = now.saturating_sub(age);
        let mut all = self.ancient_in_flight;
        let mut stuck = self.ancient_in_flight;
        for bucket in self.buckets.iter().filter(|bucket| bucket.slot != u64::MAX) {
            all += bucket.in_flight;
            // The slot's end is the latest any of its calls started.
            if (bucket.slot + 1) * self.slot_nanos <= cutoff {
                stuck += bucket.in_flight;
            }
        }
        (all, stuck)
    }

    /// Forgets everything (a new generation starts).
    pub(super) fn reset(&mut self) {
        for bucket in &mut self.buckets {
            *bucket = Bucket { slot: u64::MAX, ..Bucket::default() };
        }
        self.ancient_in_flight = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn outcomes_leave_the_window_as_it_slides() {
        let mut window = Window::new(10 * S, 10 * S);
        let first = window.start(0);
        window.finish(first, 0, Some(false));
        let second = window.start(5 * S);
        window.finish(second, 5 * S, Some(true));
        assert_eq!(window.totals(9 * S), Totals { successes: 1, failures: 1 });
        assert_eq!(window.totals(11 * S), Totals { successes: 1, failures: 0 });
        assert_eq!(window.totals(16 * S), Totals::default());
    }

    #[test]
    fn calls_in_flight_turn_stuck_with_age_even_past_the_ring() {
        let mut window = Window::new(S, 3 * S);
        let slot = window.start(0);
        assert_eq!(window.in_flight(S, 2 * S), (1, 0));
        assert_eq!(window.in_flight(3 * S, 2 * S), (1, 1));
        // Long after the ring has wrapped, the call is still in flight and stuck.
        for t in 4..40 {
            let other = window.start(t * S);
            window.finish(other, t * S, Some(true));
        }
        assert_eq!(window.in_flight(40 * S, 2 * S), (1, 1));
        window.finish(slot, 40 * S, Some(true));
        assert_eq!(window.in_flight(40 * S, 2 * S), (0, 0));
    }
}
