//! Rampart's durable job store: what a job is ([`model`]), what claims respect ([`rules`]:
//! tenants' turns, store-wide limits, pauses), the [`store::JobStore`] contract, and
//! its two implementations — SQLite (embedded, one gateway, one writer thread group-committing
//! every write) and PostgreSQL (many gateways, `FOR UPDATE SKIP LOCKED` claims) — with their
//! migrations — and how gateways sharing a store know and signal each other ([`cluster`]). It
//! knows no HTTP and no gRPC: the gateway drives it.

pub mod cluster;
pub mod model;
pub mod rules;
pub mod store;
