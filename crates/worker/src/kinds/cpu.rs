//! `cpu {"iterations"}`: a CPU-bound sum, the article's compute demo. Runs on the CPU pool.

use super::CANCEL_CHECK_EVERY;
use crate::{InvalidPayload, JobFailure, JobHandler, PoolKind, Work, json_output, parse_payload};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The most iterations one job may ask for (a few minutes of one core).
const MAX_ITERATIONS: u64 = 1 << 40;

/// The `cpu` kind.
pub struct Cpu;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    iterations: u64,
}

#[derive(Serialize)]
struct Output {
    iterations: u64,
    sum: u64,
}

impl JobHandler for Cpu {
    fn kind(&self) -> &str {
        "cpu"
    }

    fn pool(&self) -> PoolKind {
        PoolKind::Cpu
    }

    fn prepare(&self, payload: Bytes) -> Result<Work, InvalidPayload> {
        let Input { iterations } = parse_payload(self.kind(), &payload)?;
        if iterations > MAX_ITERATIONS {
            return Err(InvalidPayload {
                kind: self.kind().to_owned(),
                reason: format!("iterations is {iterations}, above the limit of {MAX_ITERATIONS}"),
            });
        }
        Ok(Work::cpu(move |cancel| {
            let mut sum = 0_u64;
            let mut i = 0_u64;
            while i < iterations {
                let end = iterations.min(i + CANCEL_CHECK_EVERY);
                for n in i..end {
                    // black_box keeps the optimiser from replacing the loop with a formula.
                    sum = sum.wrapping_add(std::hint::black_box(n));
                }
                i = end;
                if cancel.is_cancelled() {
                    return Err(JobFailure::new(format!("cancelled after {i} of {iterations} iterations")));
                }
            }
            json_output(&Output { iterations, sum })
        }))
    }
}
