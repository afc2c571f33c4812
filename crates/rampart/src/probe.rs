//! `rampart probe URL`: a container health check with no curl in the image. `GET`s a plain
//! `http://HOST:PORT/PATH` and succeeds on a 2xx answer within two seconds.

use anyhow::{Context as _, bail};
use std::{
    io::{Read as _, Write as _},
    net::{TcpStream, ToSocketAddrs as _},
    time::{Duration, Instant},
};

/// How long the whole check may take.
const LIMIT: Duration = Duration::from_secs(2);

/// Options of `rampart probe`.
#[derive(Debug, clap::Args)]
pub(crate) struct ProbeArgs {
    /// The URL to check, for example http://127.0.0.1:9901/health.
    url: String,
}

/// Checks the URL; an error says why it is unhealthy.
pub(crate) fn run(args: &ProbeArgs) -> anyhow::Result<()> {
    let uri: http::Uri = args.url.parse().with_context(|| format!("invalid URL {:?}", args.url))?;
    if uri.scheme_str() != Some("http") {
        bail!("only http:// URLs can be probed");
    }
    let authority = uri.authority().context("the URL has no host")?;
    let port = authority.port_u16().unwrap_or(80);
    let address = (authority.host(), port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {authority}"))?
        .next()
        .with_context(|| format!("{authority} has no address"))?;
    let deadline = Instant::now() + LIMIT;
    let mut stream =
        TcpStream::connect_timeout(&address, LIMIT).with_context(|| format!("cannot connect to {address}"))?;
    stream.set_write_timeout(Some(LIMIT))?;
    let path = uri.path_and_query().map_or("/", http::uri::PathAndQuery::as_str);
    // One write: a server may answer and close as soon as it has the head.
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    // The status line may arrive in pieces; read until its end (or the answer's).
    let mut head = Vec::with_capacity(64);
    let mut chunk = [0_u8; 64];
    while !head.contains(&b'\n') && head.len() < 1024 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("{} gave no answer within {LIMIT:?}", args.url);
        }
        stream.set_read_timeout(Some(left))?;
        let read = stream.read(&mut chunk).with_context(|| format!("{} gave no answer within {LIMIT:?}", args.url))?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..read]);
    }
    let line = String::from_utf8_lossy(&head);
    let status: u16 = line.split_whitespace().nth(1).and_then(|code| code.parse().ok()).context("no HTTP answer")?;
    if (200..300).contains(&status) { Ok(()) } else { bail!("{} answered {status}", args.url) }
}
