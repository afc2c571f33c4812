//! `hash {"rounds", "data"}`: SHA-256 applied `rounds` times, a realistic CPU job. Runs on the
//! CPU pool.

use super::CANCEL_CHECK_EVERY;
use crate::{JobFailure, JobKind, PoolKind, Work, json_output};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The most rounds one job may ask for.
const MAX_ROUNDS: u64 = 1 << 32;

/// The `hash` kind.
pub struct Hash;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
/// The payload.
pub struct Input {
    rounds: u64,
    #[serde(default)]
    data: String,
}

#[derive(Serialize)]
struct Output {
    rounds: u64,
    sha256: String,
}

impl JobKind for Hash {
    type Payload = Input;
    const NAME: &'static str = "hash";
    const POOL: PoolKind = PoolKind::Cpu;

    fn work(&self, Input { rounds, data }: Input) -> Result<Work, String> {
        if rounds == 0 || rounds > MAX_ROUNDS {
            return Err(format!("rounds is {rounds}; it must be between 1 and {MAX_ROUNDS}"));
        }
        Ok(Work::cpu(move |cancel| {
            let mut digest = Sha256::digest(data.as_bytes());
            for round in 1..rounds {
                digest = Sha256::digest(digest);
                if round % (CANCEL_CHECK_EVERY / 64) == 0 && cancel.is_cancelled() {
                    return Err(JobFailure::new(format!("cancelled after {round} of {rounds} rounds")));
                }
            }
            json_output(&Output { rounds, sha256: hex::encode(digest) })
        }))
    }
}
