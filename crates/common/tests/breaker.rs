//! Every transition of the circuit breaker on a controlled clock, and its invariants under
//! concurrency.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use proptest::prelude::*;
use rampart_common::{
    breaker::{BreakerConfig, CircuitBreaker, State, Transition, TripReason},
    clock::ManualClock,
};
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

fn config() -> BreakerConfig {
    BreakerConfig {
        consecutive_failures: 3,
        failure_ratio: 0.5,
        min_requests: 10,
        window: Duration::from_secs(10),
        open_timeout: Duration::from_secs(1),
        max_open_timeout: Duration::from_secs(4),
        half_open_probes: 2,
        slow_call: None,
        jitter: 0.0,
    }
}

struct Harness {
    breaker: CircuitBreaker<ManualClock>,
    clock: ManualClock,
    transitions: Arc<Mutex<Vec<Transition>>>,
}

fn harness(config: BreakerConfig) -> Harness {
    config.validate().unwrap();
    let clock = ManualClock::new();
    clock.advance(Duration::from_secs(100));
    let transitions = Arc::new(Mutex::new(Vec::new()));
    let heard = Arc::clone(&transitions);
    let breaker = CircuitBreaker::with_clock(config, clock.clone())
        .on_transition(move |transition| heard.lock().unwrap().push(*transition));
    Harness { breaker, clock, transitions }
}

impl Harness {
    fn succeed(&self, n: usize) {
        for _ in 0..n {
            self.breaker.try_acquire().unwrap().success();
        }
    }

    fn fail(&self, n: usize) {
        for _ in 0..n {
            self.breaker.try_acquire().unwrap().failure();
        }
    }

    fn states(&self) -> Vec<(State, State)> {
        self.transitions.lock().unwrap().iter().map(|t| (t.from, t.to)).collect()
    }

    fn last(&self) -> Transition {
        *self.transitions.lock().unwrap().last().unwrap()
    }
}

#[test]
fn consecutive_failures_open_it() {
    let h = harness(config());
    h.fail(2);
    assert_eq!(h.breaker.state(), State::Closed);
    h.fail(1);
    assert_eq!(h.breaker.state(), State::Open);
    assert_eq!(h.last().reason, Some(TripReason::ConsecutiveFailures));
    let rejected = h.breaker.try_acquire().err().unwrap();
    assert_eq!(rejected.state, State::Open);
    assert_eq!(rejected.retry_after, Duration::from_secs(1));
}

#[test]
fn a_success_resets_the_run_of_failures() {
    let h = harness(config());
    h.fail(2);
    h.succeed(1);
    h.fail(2);
    assert_eq!(h.breaker.state(), State::Closed);
    assert_eq!(h.breaker.snapshot().consecutive_failures, 2);
}

#[test]
fn the_failure_ratio_opens_it_once_the_window_has_volume() {
    let h = harness(BreakerConfig { consecutive_failures: 0, ..config() });
    // 5 of 9 calls failing: over the ratio but under the minimum volume.
    for _ in 0..4 {
        h.fail(1);
        h.succeed(1);
    }
    h.fail(1);
    assert_eq!(h.breaker.state(), State::Closed);
    // The tenth call brings the volume to the minimum with 6 of 10 failed.
    h.fail(1);
    assert_eq!(h.breaker.state(), State::Open);
    assert_eq!(h.last().reason, Some(TripReason::FailureRatio));
}

#[test]
fn failures_that_slid_out_of_the_window_no_longer_count() {
    let h = harness(BreakerConfig { consecutive_failures: 0, ..config() });
    for _ in 0..4 {
        h.fail(1);
        h.succeed(1);
    }
    h.clock.advance(Duration::from_secs(11));
    h.succeed(9);
    h.fail(1);
    assert_eq!(h.breaker.state(), State::Closed, "1 failure in 10 within the window");
    let snapshot = h.breaker.snapshot();
    assert_eq!((snapshot.window_successes, snapshot.window_failures), (9, 1));
}

#[test]
fn open_turns_half_open_after_its_timeout_and_probes_close_it() {
    let h = harness(config());
    h.fail(3);
    h.clock.advance(Duration::from_millis(999));
    assert!(h.breaker.try_acquire().is_err());
    h.clock.advance(Duration::from_millis(1));
    assert_eq!(h.breaker.state(), State::HalfOpen, "the snapshot shows the expiry");
    let first = h.breaker.try_acquire().unwrap();
    let second = h.breaker.try_acquire().unwrap();
    assert!(first.is_probe() && second.is_probe());
    let third = h.breaker.try_acquire().err().unwrap();
    assert_eq!(third.state, State::HalfOpen, "only two probes at once");
    first.success();
    assert_eq!(h.breaker.state(), State::HalfOpen);
    second.success();
    assert_eq!(h.breaker.state(), State::Closed);
    assert_eq!(
        h.states(),
        [(State::Closed, State::Open), (State::Open, State::HalfOpen), (State::HalfOpen, State::Closed)]
    );
}

#[test]
fn a_failed_probe_reopens_it_for_longer_each_time_up_to_the_cap() {
    let h = harness(config());
    h.fail(3);
    let mut open_for = vec![h.last().open_for.unwrap()];
    for _ in 0..4 {
        h.clock.advance(open_for.last().copied().unwrap());
        h.breaker.try_acquire().unwrap().failure();
        assert_eq!(h.last().reason, Some(TripReason::ProbeFailed));
        open_for.push(h.last().open_for.unwrap());
    }
    let seconds: Vec<_> = open_for.iter().map(Duration::as_secs).collect();
    assert_eq!(seconds, [1, 2, 4, 4, 4]);
    // Closing resets the growth.
    h.clock.advance(Duration::from_secs(4));
    h.succeed(2);
    assert_eq!(h.breaker.state(), State::Closed);
    h.fail(3);
    assert_eq!(h.last().open_for, Some(Duration::from_secs(1)));
}

#[test]
fn open_timeouts_are_jittered_within_bounds() {
    let h = harness(BreakerConfig { jitter: 0.2, ..config() });
    let mut seen = Vec::new();
    for _ in 0..200 {
        h.fail(3);
        let open_for = h.last().open_for.unwrap();
        seen.push(open_for);
        h.clock.advance(open_for);
        h.succeed(2);
    }
    assert!(seen.iter().all(|d| *d >= Duration::from_millis(800) && *d <= Duration::from_millis(1200)), "{seen:?}");
    let distinct: std::collections::HashSet<_> = seen.iter().collect();
    assert!(distinct.len() > 100, "the timeouts are spread");
}

#[test]
fn calls_stuck_in_flight_open_it_before_any_answer() {
    let h = harness(config());
    let budget = Duration::from_secs(5);
    let stuck: Vec<_> = (0..3).map(|_| h.breaker.try_acquire_within(budget).unwrap()).collect();
    h.clock.advance(Duration::from_secs(4));
    assert!(h.breaker.try_acquire().is_ok(), "not past their budget yet");
    // Stuck once their own 5 s budget has passed, noticed within 10 ms.
    h.clock.advance(Duration::from_millis(1010));
    let snapshot = h.breaker.snapshot();
    assert_eq!((snapshot.in_flight, snapshot.stuck), (3, 3));
    let rejected = h.breaker.try_acquire().err().unwrap();
    assert_eq!(rejected.state, State::Open);
    assert_eq!(h.last().reason, Some(TripReason::ConsecutiveFailures));
    // Their late answers belong to the old generation and change nothing.
    for permit in stuck {
        permit.success();
    }
    assert_eq!(h.breaker.state(), State::Open);
}

#[test]
fn long_calls_within_their_budget_never_count_as_stuck() {
    let h = harness(config());
    let _long: Vec<_> = (0..12).map(|_| h.breaker.try_acquire_within(Duration::from_secs(60)).unwrap()).collect();
    let _unbounded: Vec<_> = (0..12).map(|_| h.breaker.try_acquire().unwrap()).collect();
    h.clock.advance(Duration::from_secs(59));
    assert_eq!(h.breaker.snapshot().stuck, 0);
    assert!(h.breaker.try_acquire().is_ok());
    assert_eq!(h.breaker.state(), State::Closed, "24 calls running a minute are no failure");
}

#[test]
fn an_explicit_slow_call_caps_every_budget() {
    let h = harness(BreakerConfig { slow_call: Some(Duration::from_secs(1)), ..config() });
    let _calls: Vec<_> = (0..3).map(|_| h.breaker.try_acquire_within(Duration::from_secs(60)).unwrap()).collect();
    h.clock.advance(Duration::from_millis(1010));
    assert_eq!(h.breaker.snapshot().stuck, 3);
    assert!(h.breaker.try_acquire().is_err(), "stuck at slow_call, long before their budget");
}

#[test]
fn stuck_calls_count_in_the_failure_ratio_too() {
    let h = harness(BreakerConfig { consecutive_failures: 0, ..config() });
    h.succeed(5);
    let _stuck: Vec<_> = (0..5).map(|_| h.breaker.try_acquire_within(Duration::from_secs(5)).unwrap()).collect();
    h.clock.advance(Duration::from_millis(5010));
    assert!(h.breaker.try_acquire().is_err());
    assert_eq!(h.last().reason, Some(TripReason::FailureRatio));
}

#[test]
fn outcomes_from_an_earlier_generation_are_ignored() {
    let h = harness(config());
    let old = h.breaker.try_acquire().unwrap();
    h.fail(3);
    h.clock.advance(Duration::from_secs(1));
    let probe = h.breaker.try_acquire().unwrap();
    old.failure();
    assert_eq!(h.breaker.state(), State::HalfOpen, "the old call's failure does not reopen it");
    probe.success();
    h.succeed(1);
    assert_eq!(h.breaker.state(), State::Closed);
}

#[test]
fn an_abandoned_call_records_nothing_but_frees_its_probe_slot() {
    let h = harness(config());
    h.fail(2);
    drop(h.breaker.try_acquire().unwrap());
    assert_eq!(h.breaker.snapshot().consecutive_failures, 2);
    assert_eq!(h.breaker.snapshot().in_flight, 0);
    h.fail(1);
    h.clock.advance(Duration::from_secs(1));
    let probes: Vec<_> = (0..2).map(|_| h.breaker.try_acquire().unwrap()).collect();
    assert!(h.breaker.try_acquire().is_err());
    drop(probes);
    assert!(h.breaker.try_acquire().is_ok(), "dropped probes free their slots");
}

#[test]
fn invalid_configs_are_refused_with_the_key() {
    let bad = [
        BreakerConfig { failure_ratio: 0.0, ..config() },
        BreakerConfig { failure_ratio: 1.5, ..config() },
        BreakerConfig { half_open_probes: 0, ..config() },
        BreakerConfig { max_open_timeout: Duration::from_millis(1), ..config() },
        BreakerConfig { jitter: 1.0, ..config() },
    ];
    let keys: Vec<_> = bad.iter().map(|config| config.validate().unwrap_err().key).collect();
    assert_eq!(keys, ["failure_ratio", "failure_ratio", "half_open_probes", "max_open_timeout", "jitter"]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Threads acquire, answer, fail, abandon and move time at random. Whatever the
    /// interleaving: no more probes are ever out at once than allowed, the hook hears one valid
    /// chain of transitions with generations rising by one, and nothing is left in flight.
    #[test]
    fn invariants_hold_under_concurrency(seed in any::<u64>(), threads in 2_usize..6, calls in 50_usize..400, probes in 1_u32..4) {
        let config = BreakerConfig { half_open_probes: probes, min_requests: 5, ..config() };
        let clock = ManualClock::new();
        let transitions = Arc::new(Mutex::new(Vec::new()));
        let heard = Arc::clone(&transitions);
        let breaker = Arc::new(
            CircuitBreaker::with_clock(config, clock.clone())
                .on_transition(move |transition| heard.lock().unwrap().push(*transition)),
        );
        // Probes held per generation: each half-open generation admits at most `probes` at once.
        let probes_out = Arc::new(Mutex::new(std::collections::HashMap::<u64, u32>::new()));
        let max_probes_out = Arc::new(AtomicU32::new(0));
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                let (breaker, clock) = (Arc::clone(&breaker), clock.clone());
                let (probes_out, max_probes_out) = (Arc::clone(&probes_out), Arc::clone(&max_probes_out));
                std::thread::spawn(move || {
                    let mut rng = fastrand::Rng::with_seed(seed ^ thread as u64);
                    for _ in 0..calls {
                        if rng.u8(0..10) == 0 {
                            clock.advance(Duration::from_millis(rng.u64(0..1500)));
                        }
                        let Ok(permit) = breaker.try_acquire() else { continue };
                        let (probe, generation) = (permit.is_probe(), permit.generation());
                        if probe {
                            let mut out = probes_out.lock().unwrap();
                            let held = out.entry(generation).or_default();
                            *held += 1;
                            max_probes_out.fetch_max(*held, Ordering::SeqCst);
                        }
                        std::thread::yield_now();
                        // Uncount before reporting: the report is what frees the slot.
                        if probe {
                            *probes_out.lock().unwrap().get_mut(&generation).unwrap() -= 1;
                        }
                        match rng.u8(0..3) {
                            0 => permit.success(),
                            1 => permit.failure(),
                            _ => drop(permit),
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        prop_assert!(max_probes_out.load(Ordering::SeqCst) <= probes);
        let transitions = transitions.lock().unwrap();
        let mut state = State::Closed;
        for (index, transition) in transitions.iter().enumerate() {
            prop_assert_eq!(transition.from, state);
            prop_assert_ne!(transition.from, transition.to);
            prop_assert_eq!(transition.generation, index as u64 + 1);
            state = transition.to;
        }
        prop_assert_eq!(breaker.snapshot().in_flight, 0);
    }
}
