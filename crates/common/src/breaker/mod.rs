//! A circuit breaker that sees calls in flight.
//!
//! Closed, open and half-open states with generations, as gobreaker has, plus what it lacks:
//!
//! - it opens on N consecutive failures *or* on a failure ratio over a sliding time window once
//!   the window holds a minimum volume;
//! - calls in flight count: a call still unanswered after `slow_call` counts as a failure from
//!   then on, so an endpoint that hangs trips the breaker before a single call has returned;
//! - half-open admits a bounded number of concurrent probes and closes once that many succeed;
//! - each re-open without an intervening close doubles the open timeout (up to a maximum), with
//!   jitter so that many gateways do not probe in lockstep;
//! - a hook hears every state change, and the clock is injectable for tests.
//!
//! The caller decides what a failure is; Rampart's gateway counts only transport failures,
//! timeouts and overload answers, never a job that failed by its own logic.

mod config;
mod state;
mod window;

pub use config::{BreakerConfig, BreakerConfigError};
pub use state::{BreakerSnapshot, CircuitBreaker, Permit, Rejected, State, Transition, TripReason};
