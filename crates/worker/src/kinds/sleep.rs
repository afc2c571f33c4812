//! `sleep {"ms"}`: waits, like a job blocked on a slow service. Runs on the I/O pool.

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
}

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
        Ok(Work::io(async move {
            tokio::time::sleep(Duration::from_millis(input.ms)).await;
            json_output(&Output { slept_ms: input.ms })
        }))
    }
}
