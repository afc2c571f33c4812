//! `fail {"rate", "mode"}`: fails on purpose, for breaker, retry and isolation tests.
//!
//! With probability `rate` (default 1.0) the job fails: `mode = "error"` (default) returns an
//! error, `"panic"` panics inside an I/O task and `"cpu_panic"` panics on a CPU pool thread.
//! `"cpu_hang"` first keeps a CPU thread busy for `ms` milliseconds (default 10,000) whatever the
//! rate, ignoring cancellation (what the pool's abandonment is for), then fails or not as above.
//! Otherwise it succeeds with `{"failed": false}`. With `until_unix_ms`, it fails only before
//! that moment (an outage that ends: the same job succeeds when run again after it).

use crate::{JobFailure, JobKind, JobOutput, PoolKind, Work, json_output};
use serde::{Deserialize, Serialize};

/// The `fail` kind.
pub struct Fail;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
/// The payload.
pub struct Input {
    #[serde(default = "always")]
    rate: f64,
    #[serde(default)]
    mode: Mode,
    #[serde(default = "ten_seconds")]
    ms: u64,
    #[serde(default)]
    until_unix_ms: Option<u64>,
}

fn ten_seconds() -> u64 {
    10_000
}

/// The longest a `cpu_hang` job may spin.
const MAX_HANG_MS: u64 = 600_000;

fn always() -> f64 {
    1.0
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Mode {
    #[default]
    Error,
    Panic,
    CpuPanic,
    CpuHang,
}

#[derive(Serialize)]
struct Output {
    failed: bool,
}

impl JobKind for Fail {
    type Payload = Input;
    const NAME: &'static str = "fail";
    const POOL: PoolKind = PoolKind::Io;

    fn work(&self, Input { rate, mode, ms, until_unix_ms }: Input) -> Result<Work, String> {
        if ms > MAX_HANG_MS {
            return Err(format!("ms must be at most {MAX_HANG_MS}"));
        }
        if !(0.0..=1.0).contains(&rate) {
            return Err(format!("rate is {rate}; it must be between 0 and 1"));
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX));
        let over = until_unix_ms.is_some_and(|until| now_ms >= until);
        let fails = !over && fastrand::f64() < rate;
        let outcome = move || -> JobOutput {
            if mode == Mode::CpuHang {
                // Deliberately deaf to cancellation.
                let until = std::time::Instant::now() + std::time::Duration::from_millis(ms);
                while std::time::Instant::now() < until {
                    std::hint::spin_loop();
                }
            }
            if !fails {
                return json_output(&Output { failed: false });
            }
            match mode {
                Mode::Error => Err(JobFailure::new("failed on purpose")),
                Mode::Panic | Mode::CpuPanic => panic!("panicked on purpose"),
                Mode::CpuHang => Err(JobFailure::new("hung on purpose")),
            }
        };
        Ok(match mode {
            Mode::CpuPanic | Mode::CpuHang => Work::cpu(move |_| outcome()),
            Mode::Error | Mode::Panic => Work::io(async move { outcome() }),
        })
    }
}
