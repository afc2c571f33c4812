//! `fail {"rate", "mode"}`: fails on purpose, for breaker, retry and isolation tests.
//!
//! With probability `rate` (default 1.0) the job fails: `mode = "error"` (default) returns an
//! error, `"panic"` panics inside an I/O task and `"cpu_panic"` panics on a CPU pool thread.
//! Otherwise it succeeds with `{"failed": false}`.

use crate::{InvalidPayload, JobFailure, JobHandler, JobOutput, PoolKind, Work, json_output, parse_payload};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The `fail` kind.
pub struct Fail;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    #[serde(default = "always")]
    rate: f64,
    #[serde(default)]
    mode: Mode,
}

fn always() -> f64 {
    1.0
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum Mode {
    #[default]
    Error,
    Panic,
    CpuPanic,
}

#[derive(Serialize)]
struct Output {
    failed: bool,
}

impl JobHandler for Fail {
    fn kind(&self) -> &str {
        "fail"
    }

    fn pool(&self) -> PoolKind {
        PoolKind::Io
    }

    fn prepare(&self, payload: Bytes) -> Result<Work, InvalidPayload> {
        let Input { rate, mode } = parse_payload(self.kind(), &payload)?;
        if !(0.0..=1.0).contains(&rate) {
            return Err(InvalidPayload {
                kind: self.kind().to_owned(),
                reason: format!("rate is {rate}; it must be between 0 and 1"),
            });
        }
        let fails = fastrand::f64() < rate;
        let outcome = move || -> JobOutput {
            if !fails {
                return json_output(&Output { failed: false });
            }
            match mode {
                Mode::Error => Err(JobFailure::new("failed on purpose")),
                Mode::Panic | Mode::CpuPanic => panic!("panicked on purpose"),
            }
        };
        Ok(match mode {
            Mode::CpuPanic => Work::cpu(move |_| outcome()),
            Mode::Error | Mode::Panic => Work::io(async move { outcome() }),
        })
    }
}
