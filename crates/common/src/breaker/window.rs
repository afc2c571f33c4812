//! The sliding windows: outcomes per time slot over the failure-ratio window, and calls in flight
//! by the slot they started in, at a finer grain tied to `slow_call`.

/// Slots per failure-ratio window; its resolution is a tenth of it.
const OUTCOME_SLOTS: u64 = 10;

/// Slots per `slow_call`: a call counts as stuck at most a quarter of `slow_call` late.
const IN_FLIGHT_SLOTS: u64 = 4;

#[derive(Debug, Clone, Copy)]
struct Outcomes {
    slot: u64,
    successes: u32,
    failures: u32,
}

#[derive(Debug, Clone, Copy)]
struct Started {
    slot: u64,
    in_flight: u32,
}

const EMPTY: u64 = u64::MAX;

/// Outcome counts over the window, and in-flight calls by start time.
#[derive(Debug)]
pub(super) struct Window {
    outcome_nanos: u64,
    outcomes: [Outcomes; OUTCOME_SLOTS as usize],
    start_nanos: u64,
    /// Enough slots to hold a call until it is `slow_call` old; older ones move to `ancient`.
    started: [Started; IN_FLIGHT_SLOTS as usize + 1],
    /// Calls in flight that started before the oldest slot in `started`: all of them stuck.
    ancient_in_flight: u32,
}

/// Sums over the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Totals {
    pub(super) successes: u32,
    pub(super) failures: u32,
}

/// Where a call's start was recorded, to find it again when the call ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct StartMark(u64);

impl Window {
    /// A window of `window_nanos` for outcomes; in-flight calls turn stuck after
    /// `slow_call_nanos`.
    pub(super) fn new(window_nanos: u64, slow_call_nanos: u64) -> Self {
        Self {
            outcome_nanos: (window_nanos / OUTCOME_SLOTS).max(1),
            outcomes: [Outcomes { slot: EMPTY, successes: 0, failures: 0 }; OUTCOME_SLOTS as usize],
            start_nanos: (slow_call_nanos / IN_FLIGHT_SLOTS).max(1),
            started: [Started { slot: EMPTY, in_flight: 0 }; IN_FLIGHT_SLOTS as usize + 1],
            ancient_in_flight: 0,
        }
    }

    fn outcome_bucket(&mut self, now: u64) -> &mut Outcomes {
        let slot = now / self.outcome_nanos;
        #[allow(clippy::cast_possible_truncation)] // reduced modulo the ring length
        let bucket = &mut self.outcomes[(slot % OUTCOME_SLOTS) as usize];
        if bucket.slot != slot {
            *bucket = Outcomes { slot, successes: 0, failures: 0 };
        }
        bucket
    }

    fn started_index(slot: u64) -> usize {
        #[allow(clippy::cast_possible_truncation)] // reduced modulo the ring length
        let index = (slot % (IN_FLIGHT_SLOTS + 1)) as usize;
        index
    }

    /// A call starts now.
    pub(super) fn start(&mut self, now: u64) -> StartMark {
        let slot = now / self.start_nanos;
        let bucket = &mut self.started[Self::started_index(slot)];
        if bucket.slot != slot {
            if bucket.slot != EMPTY {
                self.ancient_in_flight += bucket.in_flight;
            }
            *bucket = Started { slot, in_flight: 0 };
        }
        bucket.in_flight += 1;
        StartMark(slot)
    }

    /// A call that started at `mark` ends now with `success` (or with no outcome at all).
    pub(super) fn finish(&mut self, mark: StartMark, now: u64, outcome: Option<bool>) {
        let bucket = &mut self.started[Self::started_index(mark.0)];
        if bucket.slot == mark.0 {
            bucket.in_flight = bucket.in_flight.saturating_sub(1);
        } else {
            self.ancient_in_flight = self.ancient_in_flight.saturating_sub(1);
        }
        match outcome {
            Some(true) => self.outcome_bucket(now).successes += 1,
            Some(false) => self.outcome_bucket(now).failures += 1,
            None => {}
        }
    }

    /// Successes and failures recorded within the window ending now.
    pub(super) fn totals(&self, now: u64) -> Totals {
        let current = now / self.outcome_nanos;
        let oldest = current.saturating_sub(OUTCOME_SLOTS - 1);
        self.outcomes
            .iter()
            .filter(|bucket| bucket.slot != EMPTY && bucket.slot >= oldest && bucket.slot <= current)
            .fold(Totals::default(), |totals, bucket| Totals {
                successes: totals.successes + bucket.successes,
                failures: totals.failures + bucket.failures,
            })
    }

    /// Calls in flight now, and how many of them started at least `age` nanoseconds ago. A call
    /// counts as stuck once its whole start slot is that old, so at most a quarter of `age` late.
    pub(super) fn in_flight(&self, now: u64, age: u64) -> (u32, u32) {
        let cutoff = now.saturating_sub(age);
        let mut all = self.ancient_in_flight;
        let mut stuck = self.ancient_in_flight;
        for bucket in self.started.iter().filter(|bucket| bucket.slot != EMPTY) {
            all += bucket.in_flight;
            if (bucket.slot + 1).saturating_mul(self.start_nanos) <= cutoff {
                stuck += bucket.in_flight;
            }
        }
        (all, stuck)
    }

    /// Forgets everything (a new generation starts).
    pub(super) fn reset(&mut self) {
        for bucket in &mut self.outcomes {
            bucket.slot = EMPTY;
        }
        for bucket in &mut self.started {
            *bucket = Started { slot: EMPTY, in_flight: 0 };
        }
        self.ancient_in_flight = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;
    const MS: u64 = 1_000_000;

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
    fn calls_turn_stuck_within_a_quarter_of_slow_call_even_long_after() {
        let mut window = Window::new(10 * S, 400 * MS);
        let mark = window.start(1000 * MS);
        assert_eq!(window.in_flight(1300 * MS, 400 * MS), (1, 0));
        assert_eq!(window.in_flight(1500 * MS, 400 * MS), (1, 1), "stuck by 500 ms, 100 ms late at most");
        // Long after its slot was recycled, the call is still in flight and stuck.
        for t in 2..60 {
            let other = window.start(t * 100 * MS + 2000 * MS);
            window.finish(other, t * 100 * MS + 2000 * MS, Some(true));
        }
        assert_eq!(window.in_flight(8000 * MS, 400 * MS), (1, 1));
        window.finish(mark, 8000 * MS, Some(true));
        assert_eq!(window.in_flight(8000 * MS, 400 * MS), (0, 0));
    }
}
