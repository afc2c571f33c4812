//! `sleep {"ms", "steps"}`: waits, like a job blocked on a slow service, in `steps` equal parts
//! (one unless given), reporting its progress after each. Runs on the I/O pool.

use crate::{JobKind, PoolKind, Work, json_output};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The longest sleep a job may ask for: one hour.
const MAX_SLEEP_MS: u64 = 3_600_000;

/// The `sleep` kind.
pub struct Sleep;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
/// The payload.
pub struct Input {
    ms: u64,
    #[serde(default = "one")]
    steps: u32,
}

fn one() -> u32 {
    1
}

/// The most steps a sleep may take.
const MAX_STEPS: u32 = 1000;

#[derive(Serialize)]
struct Output {
    slept_ms: u64,
}

impl JobKind for Sleep {
    type Payload = Input;
    const NAME: &'static str = "sleep";
    const POOL: PoolKind = PoolKind::Io;

    fn work(&self, input: Input) -> Result<Work, String> {
        if input.ms > MAX_SLEEP_MS {
            return Err(format!("ms is {}, above the limit of {MAX_SLEEP_MS}", input.ms));
        }
        if !(1..=MAX_STEPS).contains(&input.steps) {
            return Err(format!("steps is {}, not between 1 and {MAX_STEPS}", input.steps));
        }
        Ok(Work::io(async move {
            let (steps, ms) = (input.steps, input.ms);
            if steps == 1 {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            } else {
                for step in 1..=steps {
                    tokio::time::sleep(Duration::from_millis(ms) / steps).await;
                    crate::progress::report(f64::from(step) / f64::from(steps), format!("step {step} of {steps}"));
                }
            }
            json_output(&Output { slept_ms: ms })
        }))
    }
}
