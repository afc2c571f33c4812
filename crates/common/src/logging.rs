//! Log set-up shared by the binaries.

use std::io::IsTerminal as _;
use tracing_subscriber::EnvFilter;

/// Installs a human-readable log subscriber on standard error.
///
/// The level comes from `RUST_LOG` (for example `RUST_LOG=rampart_gateway=debug`), `info` when it
/// is unset or invalid. Calling it twice keeps the first subscriber.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _already_set = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        // A process whose supervisor died has no stderr left; it must still shut down cleanly
        // rather than panic reporting that it cannot log.
        .log_internal_errors(false)
        .try_init();
}
