//! Balancing calls over sets of interchangeable endpoints, whatever carries the calls.
//!
//! A service that sends work to other processes keeps them here: an [`set::EndpointSet`] of
//! [`endpoint::Endpoint`]s filled by [`discovery`] (static URLs or DNS names) and watched by
//! [`checks`]; [`call::call`] is the one loop every call goes through: pick an endpoint
//! (P2C or round robin), take its breaker permit, count it in flight, hold the deadline, send,
//! classify the outcome and retry under the [`retry`] budget. A transport (gRPC to workers, HTTP
//! to upstreams) supplies only how a request is sent and what its answer means.
//!
//! Nothing here knows what is being sent: no jobs, no HTTP client, no gRPC.

pub mod call;
pub mod checks;
pub mod config;
pub mod discovery;
pub mod endpoint;
pub mod retry;
pub mod set;

/// The clock for load and health bookkeeping (nanoseconds on the process clock).
use rampart_common::clock;
