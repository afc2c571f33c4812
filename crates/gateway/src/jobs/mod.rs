//! Durable jobs: accepted once and for all into a store, dispatched to workers under leases,
//! retried with backoff, rescued when their gateway dies.

pub mod model;
pub mod store;
