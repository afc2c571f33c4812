//! `echo`: returns its payload unchanged. The cheapest job there is, for benchmarks.

use crate::{InvalidPayload, JobHandler, PoolKind, Work};
use bytes::Bytes;

/// The `echo` kind: output = payload, byte for byte.
pub struct Echo;

impl JobHandler for Echo {
    fn kind(&self) -> &str {
        "echo"
    }

    fn pool(&self) -> PoolKind {
        PoolKind::Io
    }

    fn prepare(&self, payload: Bytes) -> Result<Work, InvalidPayload> {
        // An empty payload stands for JSON null, so the output is always a JSON document.
        let output = if payload.is_empty() { Bytes::from_static(b"null") } else { payload };
        Ok(Work::io(async move { Ok(output) }))
    }
}
