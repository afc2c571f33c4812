//! `rampart-load`: the command.

#![allow(clippy::print_stderr)] // a command-line tool: the terminal is its interface

use anyhow::Context as _;
use clap::Parser as _;
use rampart_loadgen::{
    cli::Args,
    connect, plot,
    record::Progress,
    report::Report,
    run::{self, Plan, Protocol},
    target::{RequestSpec, Target},
};
use std::{
    io::{IsTerminal as _, Write as _},
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

/// mimalloc: the tool allocates little, but never let the allocator be what it measures.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let threads = args.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        |threads| usize::try_from(threads).unwrap_or(1),
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("rampart-load: cannot start: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    match runtime.block_on(load(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("rampart-load: {error:#}");
            std::process::ExitCode::from(1)
        }
    }
}

async fn load(args: Args) -> anyhow::Result<()> {
    let target = Target::resolve(&args.url).await?;
    let body = match &args.body_file {
        Some(path) => bytes::Bytes::from(
            std::fs::read(path).with_context(|| format!("cannot read the body file {}", path.display()))?,
        ),
        None => bytes::Bytes::from(args.body.clone().unwrap_or_default()),
    };
    let request = RequestSpec::new(&args.method, &args.headers, body)?;
    let (protocol, protocol_name) = if args.grpc {
        anyhow::ensure!(!target.secure, "--grpc speaks to workers over plain TCP; use an http:// URL");
        serde_json::from_str::<serde_json::Value>(&args.payload).context("--payload must be JSON")?;
        (Protocol::Grpc { kind: args.kind.clone(), payload: bytes::Bytes::from(args.payload.clone()) }, "grpc")
    } else if args.http2 {
        (Protocol::Http2, if target.secure { "h2" } else { "h2c" })
    } else {
        (Protocol::Http1, if target.secure { "http/1.1+tls" } else { "http/1.1" })
    };
    let connector = if target.secure {
        let verify = match (&args.cacert, args.insecure) {
            (Some(bundle), _) => connect::Verify::Bundle(bundle.clone()),
            (None, true) => connect::Verify::Insecure,
            (None, false) => {
                anyhow::bail!("an https:// target needs --cacert FILE (or --insecure for a test certificate)")
            }
        };
        let alpn: &[u8] = if args.http2 { b"h2" } else { b"http/1.1" };
        connect::Connector::tls(target.address, &target.host, &verify, alpn)?
    } else {
        connect::Connector::plain(target.address)
    };
    let plan = Plan {
        connector,
        target,
        request,
        protocol,
        connections: args.connections,
        time_limit: args.time_limit(),
        requests: args.requests,
        rate: args.rate,
        timeout: args.timeout,
    };
    run::probe(&plan).await?;
    let progress = Arc::new(Progress::default());
    let live = !args.json && !args.no_progress && std::io::stderr().is_terminal();
    let ticker = live.then(|| tokio::spawn(show_progress(Arc::clone(&progress))));
    let outcome = run::run(plan, progress).await;
    if let Some(ticker) = ticker {
        ticker.abort();
        eprint!("\r\x1b[2K");
    }
    let report = Report::new(&args.url, protocol_name, args.connections, args.rate, &outcome.records, outcome.elapsed);
    if let Some(path) = &args.plot {
        std::fs::write(path, plot::svg(&report))
            .with_context(|| format!("cannot write the plot {}", path.display()))?;
    }
    let mut stdout = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut stdout, &report)?;
        writeln!(stdout)?;
    } else {
        write!(stdout, "{}", report.text())?;
        if let Some(path) = &args.plot {
            writeln!(stdout, "  Plot         {}", path.display())?;
        }
    }
    Ok(())
}

/// A live line on the terminal: elapsed time, requests, current rate, failures.
async fn show_progress(progress: Arc<Progress>) {
    let started = tokio::time::Instant::now();
    let mut last = 0;
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    loop {
        ticker.tick().await;
        let done = progress.done.load(Ordering::Relaxed);
        let failed = progress.failed.load(Ordering::Relaxed);
        #[allow(clippy::cast_precision_loss)]
        let rate = (done - last) as f64 * 4.0;
        last = done;
        eprint!(
            "\r\x1b[2K  {:>6.1} s  {done:>10} requests  {rate:>10.0}/s  {failed} failed",
            started.elapsed().as_secs_f64()
        );
    }
}
