//! `cpu {"iterations"}`: a CPU-bound sum, the article's compute demo. Runs on the CPU pool.

use super::CANCEL_CHECK_EVERY;
use crate::{JobFailure, JobKind, PoolKind, Work, json_output};
use serde::{Deserialize, Serialize};

/// The most iterations one job may ask for (a few minutes of one core).
const MAX_ITERATIONS: u64 = 1 << 40;

/// The `cpu` kind.
pub struct Cpu;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
/// The payload.
pub struct Input {
    iterations: u64,
}

#[derive(Serialize)]
struct Output {
    iterations: u64,
    sum: u64,
}

impl JobKind for Cpu {
    type Payload = Input;
    const NAME: &'static str = "cpu";
    const POOL: PoolKind = PoolKind::Cpu;

    fn work(&self, Input { iterations }: Input) -> Result<Work, String> {
        if iterations > MAX_ITERATIONS {
            return Err(format!("iterations is {iterations}, above the limit of {MAX_ITERATIONS}"));
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
