//! `sleep {"ms"}`: waits, like a job blocked on a slow service. Runs on the I/O pool.

use crate::{InvalidPayload, JobHandler, PoolKind, Work, json_output, parse_payload};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The longest sleep a job may ask for: one hour.
const MAX_SLEEP_MS: u64 = 3_600_000;

/// The `sleep` kind.
pub struct Sleep;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    ms: u64,
}

#[derive(Serialize)]
struct Output {
    slept_ms: u64,
}

impl JobHandler for Sleep {
    fn kind(&self) -> &str {
        "sleep"
    }

    fn pool(&self) -> PoolKind {
        PoolKind::Io
    }

    fn prepare(&self, payload: Bytes) -> Result<Work, InvalidPayload> {
        let input: Input = parse_payload(self.kind(), &payload)?;
        if input.ms > MAX_SLEEP_MS {
            return Err(InvalidPayload {
                kind: self.kind().to_owned(),
                reason: format!("ms is {}, above the limit of {MAX_SLEEP_MS}", input.ms),
            });
        }
        Ok(Work::io(async move {
            tokio::time::sleep(Duration::from_millis(input.ms)).await;
            json_output(&Output { slept_ms: input.ms })
        }))
    }
}
