//! What every Rampart service needs, whatever it does — and nothing that only one of them needs:
//!
//! - serving HTTP safely ([`http`]: the bounded server every listener uses, problem answers) and
//!   the operator routes on every admin listener ([`debug_routes`], [`profile`]) and who may
//!   use them ([`http::admin_access`]);
//! - protecting calls and callers ([`breaker`], [`rate_limit`]), reading client addresses
//!   ([`net`]) and comparing secrets ([`secret`]);
//! - telemetry ([`logging`], [`trace_context`], [`metrics`], [`runtime_stats`]);
//! - TLS with rustls ([`tls`]: certificates by SNI, client certificates, reloading);
//! - process life ([`process`], [`shutdown`]), noticing edited files ([`files`]) and small shared
//!   readings ([`clock`], [`duration`]).
//!
//! Balancing lives in `rampart-balance`, jobs in `rampart-jobs` and `rampart-jobstore`. Nothing
//! here depends on another Rampart crate.

pub mod breaker;
pub mod clock;
pub mod debug_routes;
pub mod duration;
pub mod files;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod process;
pub mod profile;
pub mod rate_limit;
pub mod runtime_stats;
pub mod secret;
pub mod shutdown;
pub mod tls;
pub mod trace_context;
