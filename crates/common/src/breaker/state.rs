//! The breaker's state machine.

use super::{
    BreakerConfig,
    window::{StartMark, Window},
};
use crate::clock::{Clock, MonotonicClock, nanos};
use serde::Serialize;
use std::{
    sync::{Mutex, MutexGuard, PoisonError},
    time::Duration,
};

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Calls flow; outcomes are counted.
    Closed,
    /// Calls are refused until the open timeout passes.
    Open,
    /// A few probe calls test whether the endpoint has recovered.
    HalfOpen,
}

impl State {
    /// The state's name in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    /// A number for gauges: 0 closed, 1 half-open, 2 open.
    pub fn as_gauge(self) -> f64 {
        match self {
            Self::Closed => 0.0,
            Self::HalfOpen => 1.0,
            Self::Open => 2.0,
        }
    }
}

/// Why a breaker opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TripReason {
    /// Too many failures in a row (calls stuck in flight included).
    ConsecutiveFailures,
    /// Too large a share of failures in the window.
    FailureRatio,
    /// A half-open probe failed.
    ProbeFailed,
}

/// A change of state, as the hook hears it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The state left.
    pub from: State,
    /// The state entered.
    pub to: State,
    /// The generation entered; every transition starts a new one.
    pub generation: u64,
    /// Why the breaker opened, for transitions to open.
    pub reason: Option<TripReason>,
    /// How long it stays open, for transitions to open.
    pub open_for: Option<Duration>,
}

/// A call refused because the breaker is open or has all its probes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker is {}; retry in {} ms", state.as_str(), retry_after.as_millis())]
pub struct Rejected {
    /// The state that refused.
    pub state: State,
    /// When a call may be admitted again (at the earliest).
    pub retry_after: Duration,
}

/// What a breaker looks like now, for admin pages and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BreakerSnapshot {
    /// The state.
    pub state: State,
    /// The generation.
    pub generation: u64,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Successes in the window.
    pub window_successes: u32,
    /// Failures in the window.
    pub window_failures: u32,
    /// Calls in flight in this generation.
    pub in_flight: u32,
    /// Of those, calls unanswered past their own time budget (or `slow_call`).
    pub stuck: u32,
    /// Opens since the breaker was last closed.
    pub reopens: u32,
    /// Milliseconds until an open breaker lets a probe through.
    pub open_remaining_ms: u64,
}

type Hook = Box<dyn Fn(&Transition) + Send + Sync>;

/// A circuit breaker; see the [module docs](super).
pub struct CircuitBreaker<C: Clock = MonotonicClock> {
    config: BreakerConfig,
    clock: C,
    inner: Mutex<Inner>,
    hook: Option<Hook>,
}

#[derive(Debug)]
struct Inner {
    state: State,
    generation: u64,
    consecutive_failures: u32,
    /// Opens since the last close; grows the open timeout.
    reopens: u32,
    open_until: u64,
    probes_in_flight: u32,
    probe_successes: u32,
    window: Window,
}

/// The right to make one call. Report its outcome with [`Permit::success`] or
/// [`Permit::failure`]; dropping it unreported (the caller went away) records no outcome.
#[must_use = "report the call's outcome, or drop the permit if the call was abandoned"]
pub struct Permit<'a, C: Clock = MonotonicClock> {
    breaker: &'a CircuitBreaker<C>,
    generation: u64,
    started: StartMark,
    probe: bool,
    reported: bool,
}

impl<C: Clock> Permit<'_, C> {
    /// The call succeeded (or failed in a way that is no fault of the endpoint).
    pub fn success(mut self) {
        self.reported = true;
        self.breaker.finish(self.generation, self.started, self.probe, Some(true));
    }

    /// The call failed in a way that counts against the endpoint.
    pub fn failure(mut self) {
        self.reported = true;
        self.breaker.finish(self.generation, self.started, self.probe, Some(false));
    }

    /// Whether this call is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// The breaker generation the call was admitted in; its outcome counts only while the
    /// breaker is still in that generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

impl<C: Clock> Drop for Permit<'_, C> {
    fn drop(&mut self) {
        if !self.reported {
            self.breaker.finish(self.generation, self.started, self.probe, None);
        }
    }
}

impl CircuitBreaker<MonotonicClock> {
    /// A breaker on the real clock. The config should have passed
    /// [`BreakerConfig::validate`].
    pub fn new(config: BreakerConfig) -> Self {
        Self::with_clock(config, MonotonicClock::new())
    }
}

impl<C: Clock> CircuitBreaker<C> {
    /// A breaker on the given clock.
    pub fn with_clock(config: BreakerConfig, clock: C) -> Self {
        let window = Window::new(nanos(config.window));
        let inner = Inner {
            state: State::Closed,
            generation: 0,
            consecutive_failures: 0,
            reopens: 0,
            open_until: 0,
            probes_in_flight: 0,
            probe_successes: 0,
            window,
        };
        Self { config, clock, inner: Mutex::new(inner), hook: None }
    }

    /// Calls `hook` on every change of state, in order. The hook runs under the breaker's lock,
    /// which is what keeps the order (a metrics gauge never ends on a stale state): keep it
    /// short, and do not call this breaker from it.
    pub fn on_transition(mut self, hook: impl Fn(&Transition) + Send + Sync + 'static) -> Self {
        self.hook = Some(Box::new(hook));
        self
    }

    /// The settings.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // No code panics while holding the lock, so a poisoned lock still holds consistent state.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks to make a call with no time budget of its own: it turns stuck (a failure while it
    /// stays in flight) after `slow_call` if that is set, else never.
    pub fn try_acquire(&self) -> Result<Permit<'_, C>, Rejected> {
        self.admit_call(None)
    }

    /// Asks to make a call that has `budget` to be answered in: it turns stuck once that passes
    /// unanswered (or `slow_call`, if set and sooner). A call is slow relative to its own
    /// deadline, never to a flat default shorter than the calls the caller allows.
    pub fn try_acquire_within(&self, budget: Duration) -> Result<Permit<'_, C>, Rejected> {
        self.admit_call(Some(budget))
    }

    fn admit_call(&self, budget: Option<Duration>) -> Result<Permit<'_, C>, Rejected> {
        let stuck_after = match (budget, self.config.slow_call) {
            (Some(budget), Some(cap)) => Some(budget.min(cap)),
            (budget, cap) => budget.or(cap),
        }
        .map(nanos);
        let now = self.clock.now_nanos();
        let mut transitions = Vec::new();
        let outcome = {
            let mut inner = self.lock();
            let outcome = self.admit(&mut inner, now, stuck_after, &mut transitions);
            self.announce(&transitions);
            outcome
        };
        let (generation, started, probe) = outcome?;
        Ok(Permit { breaker: self, generation, started, probe, reported: false })
    }

    fn admit(
        &self,
        inner: &mut Inner,
        now: u64,
        stuck_after: Option<u64>,
        transitions: &mut Vec<Transition>,
    ) -> Result<(u64, StartMark, bool), Rejected> {
        if inner.state == State::Open {
            if now < inner.open_until {
                return Err(Rejected { state: State::Open, retry_after: Duration::from_nanos(inner.open_until - now) });
            }
            transitions.push(self.enter(inner, State::HalfOpen, None, now));
        }
        match inner.state {
            State::Closed => {
                // Calls stuck in flight may have tipped the balance since the last outcome.
                if let Some(reason) = self.should_trip(inner, now) {
                    transitions.push(self.open(inner, reason, now));
                    return Err(Rejected {
                        state: State::Open,
                        retry_after: Duration::from_nanos(inner.open_until - now),
                    });
                }
                Ok((inner.generation, inner.window.start(now, stuck_after), false))
            }
            State::HalfOpen => {
                if inner.probes_in_flight >= self.config.half_open_probes {
                    // A probe's answer is due soon; a short wait is the honest hint.
                    let retry_after = (self.config.open_timeout / 10).max(Duration::from_millis(10));
                    return Err(Rejected { state: State::HalfOpen, retry_after });
                }
                inner.probes_in_flight += 1;
                Ok((inner.generation, inner.window.start(now, stuck_after), true))
            }
            State::Open => unreachable_open(),
        }
    }

    fn finish(&self, generation: u64, started: StartMark, probe: bool, outcome: Option<bool>) {
        let now = self.clock.now_nanos();
        let mut transitions = Vec::new();
        {
            let mut inner = self.lock();
            // An answer from an earlier generation says nothing about the current state.
            if generation != inner.generation {
                return;
            }
            inner.window.finish(started, now, outcome);
            if probe {
                inner.probes_in_flight = inner.probes_in_flight.saturating_sub(1);
            }
            match (inner.state, outcome) {
                (_, None) => {}
                (State::Closed, Some(true)) => inner.consecutive_failures = 0,
                (State::Closed, Some(false)) => {
                    inner.consecutive_failures += 1;
                    if let Some(reason) = self.should_trip(&inner, now) {
                        transitions.push(self.open(&mut inner, reason, now));
                    }
                }
                (State::HalfOpen, Some(true)) => {
                    inner.probe_successes += 1;
                    if inner.probe_successes >= self.config.half_open_probes {
                        inner.reopens = 0;
                        transitions.push(self.enter(&mut inner, State::Closed, None, now));
                    }
                }
                (State::HalfOpen, Some(false)) => transitions.push(self.open(&mut inner, TripReason::ProbeFailed, now)),
                (State::Open, Some(_)) => {}
            }
            self.announce(&transitions);
        }
    }

    fn should_trip(&self, inner: &Inner, now: u64) -> Option<TripReason> {
        let (_, stuck) = inner.window.in_flight(now);
        let threshold = self.config.consecutive_failures;
        if threshold > 0 && inner.consecutive_failures + stuck >= threshold {
            return Some(TripReason::ConsecutiveFailures);
        }
        let totals = inner.window.totals(now);
        let failures = totals.failures + stuck;
        let volume = totals.successes + failures;
        let ratio_met = f64::from(failures) >= self.config.failure_ratio * f64::from(volume);
        (volume >= self.config.min_requests && volume > 0 && ratio_met).then_some(TripReason::FailureRatio)
    }

    fn open(&self, inner: &mut Inner, reason: TripReason, now: u64) -> Transition {
        let growth = 2_u32.saturating_pow(inner.reopens.min(20));
        let base = self.config.open_timeout.saturating_mul(growth).min(self.config.max_open_timeout);
        let spread = 1.0 + self.config.jitter * (2.0 * fastrand::f64() - 1.0);
        let open_for = base.mul_f64(spread);
        inner.reopens = inner.reopens.saturating_add(1);
        inner.open_until = now.saturating_add(nanos(open_for));
        let mut transition = self.enter(inner, State::Open, Some(reason), now);
        transition.open_for = Some(open_for);
        transition
    }

    /// Moves to `to`, starting a new generation with fresh counts.
    fn enter(&self, inner: &mut Inner, to: State, reason: Option<TripReason>, _now: u64) -> Transition {
        let from = inner.state;
        inner.state = to;
        inner.generation += 1;
        inner.consecutive_failures = 0;
        inner.probes_in_flight = 0;
        inner.probe_successes = 0;
        inner.window.reset();
        Transition { from, to, generation: inner.generation, reason, open_for: None }
    }

    fn announce(&self, transitions: &[Transition]) {
        if let Some(hook) = &self.hook {
            for transition in transitions {
                hook(transition);
            }
        }
    }

    /// The current state, moving open to half-open if its timeout has passed.
    pub fn state(&self) -> State {
        self.snapshot().state
    }

    /// A view of the breaker now.
    pub fn snapshot(&self) -> BreakerSnapshot {
        let now = self.clock.now_nanos();
        let inner = self.lock();
        let (in_flight, stuck) = inner.window.in_flight(now);
        let totals = inner.window.totals(now);
        // An expired open breaker is half-open in effect; it turns so on the next call.
        let expired = inner.state == State::Open && now >= inner.open_until;
        BreakerSnapshot {
            state: if expired { State::HalfOpen } else { inner.state },
            generation: inner.generation,
            consecutive_failures: inner.consecutive_failures,
            window_successes: totals.successes,
            window_failures: totals.failures,
            in_flight,
            stuck,
            reopens: inner.reopens,
            open_remaining_ms: if inner.state == State::Open {
                Duration::from_nanos(inner.open_until.saturating_sub(now)).as_millis().try_into().unwrap_or(u64::MAX)
            } else {
                0
            },
        }
    }
}

/// `admit` turns an open breaker half-open or returns before matching; kept out of line so the
/// match stays exhaustive without a panic on a path that cannot be taken.
#[cold]
fn unreachable_open() -> Result<(u64, StartMark, bool), Rejected> {
    Err(Rejected { state: State::Open, retry_after: Duration::ZERO })
}
