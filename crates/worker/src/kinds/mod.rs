//! The built-in job kinds, mirroring the article's demos: `echo`, `sleep`, `cpu`, `hash`,
//! `pipeline`, `fail`.

mod cpu;
mod echo;
mod fail;
mod hash;
mod pipeline;
mod sleep;

pub use cpu::Cpu;
pub use echo::Echo;
pub use fail::Fail;
pub use hash::Hash;
pub use pipeline::Pipeline;
pub use sleep::Sleep;

use crate::JobHandler;
use std::sync::Arc;

/// Every built-in kind, ready to register.
pub fn builtin() -> Vec<Arc<dyn JobHandler>> {
    vec![Arc::new(Echo), Arc::new(Sleep), Arc::new(Cpu), Arc::new(Hash), Arc::new(Pipeline), Arc::new(Fail)]
}

/// How many loop iterations a CPU job runs between cancellation checks: small enough to stop
/// within about a millisecond, large enough that checking costs nothing measurable.
const CANCEL_CHECK_EVERY: u64 = 1 << 16;
