//! Command-line options of `rampart-load`.

use std::{path::PathBuf, time::Duration};

fn duration(text: &str) -> Result<Duration, String> {
    let parsed = rampart_common::duration::parse(text)?;
    if parsed.is_zero() { Err("must be more than zero".into()) } else { Ok(parsed) }
}

fn positive_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text.parse().map_err(|_| format!("{text:?} is not a number"))?;
    if rate.is_finite() && rate > 0.0 { Ok(rate) } else { Err("must be more than zero".into()) }
}

/// Load-tests an HTTP/1.1, HTTP/2 (h2c) or gRPC endpoint and reports throughput, success and a
/// latency distribution measured from when each request was due (coordinated omission
/// corrected, as wrk2 does).
///
/// Closed loop (default): each of `-c` connections sends its next request as soon as the last
/// answer arrives. Open loop (`--rate R`): requests are due at R per second whatever the server
/// does, and a request that waits for a free connection is charged that wait.
///
/// Runs for `-d` (default 10s) or `-n` requests, whichever ends first.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "rampart-load", version, about, long_about = None)]
pub struct Args {
    /// The target: http://HOST:PORT/PATH (HTTP/1.1, or h2c with --http2); with --grpc, a worker's
    /// http://HOST:PORT.
    pub url: String,

    /// Connections (HTTP/1.1), or requests in flight at once (HTTP/2, gRPC).
    #[arg(short = 'c', long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub connections: u64,

    /// How long to run [default: 10s unless -n is given].
    #[arg(short = 'd', long, value_parser = duration)]
    pub duration: Option<Duration>,

    /// How many requests to send in all.
    #[arg(short = 'n', long, value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,

    /// Open loop: send this many requests per second, measuring each from when it was due.
    #[arg(long, value_parser = positive_rate)]
    pub rate: Option<f64>,

    /// HTTP method.
    #[arg(short = 'm', long, default_value = "GET")]
    pub method: String,

    /// Request body.
    #[arg(short = 'b', long, conflicts_with = "body_file")]
    pub body: Option<String>,

    /// Request body read from a file.
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<PathBuf>,

    /// A request header, `Name: value` (repeat for more).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,

    /// Speak HTTP/2 over cleartext (prior knowledge), multiplexing requests on a few connections.
    #[arg(long, conflicts_with = "grpc")]
    pub http2: bool,

    /// For `https://` URLs: trust the certificates in this PEM bundle.
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    pub cacert: Option<PathBuf>,

    /// For `https://` URLs: do not check the server's certificate (self-signed test setups).
    #[arg(long)]
    pub insecure: bool,

    /// Call a Rampart worker's `Execute` over gRPC instead of HTTP.
    #[arg(long)]
    pub grpc: bool,

    /// Job kind for --grpc.
    #[arg(long, default_value = "echo")]
    pub kind: String,

    /// Job payload (JSON) for --grpc.
    #[arg(long, default_value = "null")]
    pub payload: String,

    /// Time limit of each request; a request over it counts as a `timeout` error.
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub timeout: Duration,

    /// Threads sending requests [default: the cores this process may use].
    #[arg(short = 't', long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub threads: Option<u64>,

    /// Print the report as JSON (on standard output) instead of text.
    #[arg(long)]
    pub json: bool,

    /// Write an SVG with the latency distribution and throughput over time.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,

    /// No live progress line, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
}

impl Args {
    /// How long the run may last, if bounded by time.
    pub fn time_limit(&self) -> Option<Duration> {
        match (self.duration, self.requests) {
            (Some(duration), _) => Some(duration),
            (None, Some(_)) => None,
            (None, None) => Some(Duration::from_secs(10)),
        }
    }
}
