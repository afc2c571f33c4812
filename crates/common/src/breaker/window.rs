//! The sliding window of outcomes per time slot over the failure-ratio window, and the calls in
//! flight by the moment each one turns stuck (its own time budget, or `slow_call` if sooner).

/// Slots per failure-ratio window; its resolution is a tenth of it.
const OUTCOME_SLOTS: u64 = 10;

/// The resolution of stuck times: a call counts as stuck at most this late.
const STUCK_GRAIN_NANOS: u64 = 10_000_000;

#[derive(Debug, Clone, Copy)]
struct Outcomes {
    slot: u64,
    successes: u32,
    failures: u32,
}

const EMPTY: u64 = u64::MAX;

/// Outcome counts over the window, and in-flight calls by when they turn stuck.
#[derive(Debug)]
pub(super) struct Window {
    outcome_nanos: u64,
    outcomes: [Outcomes; OUTCOME_SLOTS as usize],
    in_flight: u32,
    /// Calls in flight that can turn stuck, by the grain at which they do, sorted. Calls with the
    /// same budget started close together share an entry, so it stays short; a vector keeps its
    /// room when it empties, so a breaker allocates nothing per call.
    stuck_at: Vec<(u64, u32)>,
}

/// Sums over the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Totals {
    pub(super) successes: u32,
    pub(super) failures: u32,
}

/// Where a call's start was recorded, to find it again when the call ends: the grain at which
/// it turns stuck, if it ever does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct StartMark(Option<u64>);

impl Window {
    /// A window of `window_nanos` for outcomes.
    pub(super) fn new(window_nanos: u64) -> Self {
        Self {
            outcome_nanos: (window_nanos / OUTCOME_SLOTS).max(1),
            outcomes: [Outcomes { slot: EMPTY, successes: 0, failures: 0 }; OUTCOME_SLOTS as usize],
            in_flight: 0,
            stuck_at: Vec::new(),
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

    /// A call starts now; it turns stuck once `stuck_after` nanoseconds pass unanswered (never,
    /// if `None`).
    pub(super) fn start(&mut self, now: u64, stuck_after: Option<u64>) -> StartMark {
        self.in_flight += 1;
        let grain = stuck_after.map(|after| now.saturating_add(after).div_ceil(STUCK_GRAIN_NANOS));
        if let Some(grain) = grain {
            match self.stuck_at.binary_search_by_key(&grain, |(at, _)| *at) {
                Ok(found) => self.stuck_at[found].1 += 1,
                Err(place) => self.stuck_at.insert(place, (grain, 1)),
            }
        }
        StartMark(grain)
    }

    /// A call that started at `mark` ends now with `success` (or with no outcome at all).
    pub(super) fn finish(&mut self, mark: StartMark, now: u64, outcome: Option<bool>) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some(grain) = mark.0
            && let Ok(found) = self.stuck_at.binary_search_by_key(&grain, |(at, _)| *at)
        {
            self.stuck_at[found].1 -= 1;
            if self.stuck_at[found].1 == 0 {
                self.stuck_at.remove(found);
            }
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

    /// Calls in flight now, and how many of them have turned stuck.
    pub(super) fn in_flight(&self, now: u64) -> (u32, u32) {
        let now = now / STUCK_GRAIN_NANOS;
        let stuck = self.stuck_at.iter().take_while(|(at, _)| *at <= now).map(|(_, count)| *count).sum();
        (self.in_flight, stuck)
    }

    /// Forgets everything (a new generation starts).
    pub(super) fn reset(&mut self) {
        for bucket in &mut self.outcomes {
            bucket.slot = EMPTY;
        }
        self.in_flight = 0;
        self.stuck_at.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;
    const MS: u64 = 1_000_000;

    #[test]
    fn outcomes_leave_the_window_as_it_slides() {
        let mut window = Window::new(10 * S);
        let first = window.start(0, None);
        window.finish(first, 0, Some(false));
        let second = window.start(5 * S, None);
        window.finish(second, 5 * S, Some(true));
        assert_eq!(window.totals(9 * S), Totals { successes: 1, failures: 1 });
        assert_eq!(window.totals(11 * S), Totals { successes: 1, failures: 0 });
        assert_eq!(window.totals(16 * S), Totals::default());
    }

    #[test]
    fn each_call_turns_stuck_after_its_own_budget() {
        let mut window = Window::new(10 * S);
        let short = window.start(1000 * MS, Some(400 * MS));
        let long = window.start(1000 * MS, Some(20 * S));
        let unbounded = window.start(1000 * MS, None);
        assert_eq!(window.in_flight(1390 * MS), (3, 0));
        assert_eq!(window.in_flight(1410 * MS), (3, 1), "the short call, at most a grain late");
        assert_eq!(window.in_flight(20 * S), (3, 1), "the long call still has time");
        assert_eq!(window.in_flight(21_010 * MS), (3, 2));
        window.finish(short, 21 * S, Some(true));
        window.finish(long, 21 * S, Some(true));
        assert_eq!(window.in_flight(3600 * S), (1, 0), "a call with no budget is never stuck");
        window.finish(unbounded, 3600 * S, None);
        assert_eq!(window.in_flight(3600 * S), (0, 0));
        assert!(window.stuck_at.is_empty());
    }
}
