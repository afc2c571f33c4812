//! Running jobs on workers: the gateway's side of the worker contract.
//!
//! - [`workers`]: the worker pools by job kind, reached over gRPC through the one call loop of
//!   [`rampart_balance::call`], and their health probe. `/api/process` runs a job with
//!   [`workers::dispatch`] and nothing is stored.
//! - [`durable`]: durable jobs, accepted once and for all into a [`rampart_jobstore`] store and
//!   moved to the workers and back by separate loops (claim, attempt, complete, renew, sweep).
//!
//! Nothing here knows HTTP: the REST API that feeds it is the gateway's.

pub mod config;
pub mod durable;
pub mod workers;
