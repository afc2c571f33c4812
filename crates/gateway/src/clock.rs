//! The gateway's one clock for load and health bookkeeping: nanoseconds since start, cheap to read.

use rampart_common::clock::{Clock as _, MonotonicClock};
use std::{sync::LazyLock, time::Duration};

static CLOCK: LazyLock<MonotonicClock> = LazyLock::new(MonotonicClock::new);

/// Nanoseconds since the gateway's clock started.
pub fn now() -> u64 {
    CLOCK.now_nanos()
}

/// `duration` in nanoseconds, saturating.
pub fn nanos(duration: Duration) -> u64 {
    rampart_common::clock::nanos(duration)
}
