//! Building blocks shared by every Rampart service: shutdown signals, logging, configuration
//! helpers and process set-up. Nothing here depends on another Rampart crate.

pub mod breaker;
pub mod clock;
pub mod debug_routes;
pub mod duration;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod process;
pub mod profile;
pub mod rate_limit;
pub mod runtime_stats;
pub mod shutdown;
pub mod trace_context;
