//! An exact, keyed rate limiter: GCRA (the generic cell rate algorithm) per key, with bounded
//! memory.
//!
//! Each key holds one number, its *theoretical arrival time* (TAT). A request at time `now` is
//! admitted when `max(TAT, now) + T <= now + τ`, where `T = 1 / rate` and `τ = burst × T`, and
//! then moves TAT forward by `T`. This is a token bucket of `burst` tokens refilled at `rate`,
//! computed on demand: nothing ticks in the background, and a decision is one atomic
//! compare-and-swap, so it stays exact however many threads decide at once. Over any window of
//! length `w` a key is admitted at most `rate × w + burst` times.
//!
//! A key whose TAT is in the past is indistinguishable from a key never seen, so idle keys can be
//! dropped without changing any decision; the limiter does so lazily while inserting, and holds a
//! hard cap on the number of keys. At the cap it makes room by dropping the keys closest to a
//! full bucket (the lowest TATs): each loses at most what it still owed, which is the least
//! anyone can lose, and a newcomer always gets a bucket of its own (a flood of new keys cannot
//! push honest clients into a shared bucket, nor reset a busy key's debt).

mod direct;
mod gcra;
mod keyed;

pub use direct::DirectRateLimiter;
pub use gcra::{Decision, Quota, QuotaError};
pub use keyed::{KeyedRateLimiter, KeyedStats};
