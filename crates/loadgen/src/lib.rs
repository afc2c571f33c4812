//! `rampart-load`: a load generator for HTTP/1.1 and HTTP/2, plain or over TLS, and Rampart's gRPC
//! workers, closed
//! or open loop, with latencies measured from when each request was due (coordinated omission
//! corrected), HDR histograms, JSON output and an SVG plot.

pub mod cli;
pub mod connect;
pub mod http1;
pub mod plot;
pub mod record;
pub mod report;
pub mod run;
pub mod target;
