//! The gateway's one clock for load and health bookkeeping: the process clock of
//! [`rampart_common::clock`], in nanoseconds, cheap to read.

use std::time::Duration;

/// Nanoseconds on the process clock.
pub fn now() -> u64 {
    rampart_common::clock::now()
}

/// `duration` in nanoseconds, saturating.
pub fn nanos(duration: Duration) -> u64 {
    rampart_common::clock::nanos(duration)
}
