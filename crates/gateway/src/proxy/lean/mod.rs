//! The lean HTTP/1.1 path for proxied routes on the plain listener. A request head is parsed in
//! place; a plain request (HTTP/1.1, no body, no upgrade) for a `[[routes]]` prefix passes the
//! same protection stack as every request ([`crate::protect`]) and is forwarded on this serving
//! thread's own keep-alive upstream connections, its head written in one write and the answer
//! passed back as it came, with no per-request task, channel or body stream in between.
//!
//! Everything else (the API, a request with a body, h2c, an upgrade, a malformed head) is left
//! to hyper: the connection, with the bytes already read put back in front, goes to the same
//! hyper server every other connection gets, for the rest of its life. Both paths refuse alike:
//! a head that does not arrive within the header read timeout gets the same 408 problem, too many
//! or too large fields are hyper's to refuse, and idle, evicted and draining connections are
//! closed by the same [`drive`] loop.

mod answer;
mod request;
mod rewound;
pub mod upstream;

use crate::{AppState, client::Peer, server};
use axum::response::Response;
use bytes::BytesMut;
use http::StatusCode;
use hyper::body::Incoming;
use hyper_util::{rt::TokioExecutor, server::conn::auto};
use rampart_common::http::{
    connection::{Registration, drive},
    io::bare_problem,
    server::serve_io,
};
use request::{Fields, Head};
use rewound::Rewound;
use std::{io, sync::Arc};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
    time::Instant,
};
use tokio_util::sync::CancellationToken;

pub use upstream::Pool;

/// Room kept for reading request heads; a head longer than this goes to hyper.
const READ_ROOM: usize = 8 * 1024;
/// Bytes read ahead while a request is being answered (pipelined requests), at most.
const MAX_READ_AHEAD: usize = 64 * 1024;

/// The raw upstream answer a lean response stands for, carried in its extensions so that the
/// protection stack can add its fields before the answer is passed on.
#[derive(Clone)]
pub struct RawAnswer(pub Arc<std::sync::Mutex<Option<upstream::Answer>>>);

/// What the lean path does with a connection it stops reading.
enum Ending {
    /// Closed (the client left, asked to close, or the connection failed).
    Closed,
    /// Given to hyper, with the bytes already read.
    Handover(Vec<u8>),
}

impl Ending {
    /// Hyper takes over with `head` (a head already taken off the buffer, or nothing) and the
    /// rest of what was read.
    fn handover(head: &[u8], rest: &[u8]) -> Self {
        Self::Handover([head, rest].concat())
    }
}

/// Serves a plain connection on a task of its own: lean while its requests are plain proxied
/// ones, then hyper (through `handle`, as [`server`] would have) from the first that is not.
pub fn spawn<H, F>(
    builder: &auto::Builder<TokioExecutor>,
    stream: TcpStream,
    registration: Registration,
    state: AppState,
    peer: Peer,
    handle: H,
) where
    H: Fn(http::Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    let builder = builder.clone();
    tokio::spawn(async move {
        let mut stream = stream;
        let stop = CancellationToken::new();
        let mut ending = Ending::Closed;
        {
            let lean = serve(&mut stream, &registration, &state, &peer, &stop, &mut ending);
            let graceful = |_: std::pin::Pin<&mut _>| stop.cancel();
            drive(lean, graceful, &registration).await;
        }
        if let Ending::Handover(read) = ending {
            serve_io(&builder, Rewound::new(read, stream), registration, handle).await;
        }
    });
}

/// The lean loop: one request at a time, until the connection ends or hyper must take it.
async fn serve(
    stream: &mut TcpStream,
    registration: &Registration,
    state: &AppState,
    peer: &Peer,
    stop: &CancellationToken,
    ending: &mut Ending,
) -> io::Result<()> {
    let tracked = Arc::clone(registration.connection());
    let header_timeout = registration.limits().header_read_timeout;
    let mut buffer = BytesMut::with_capacity(READ_ROOM);
    let mut fields = Fields::default();
    let mut out = Vec::with_capacity(READ_ROOM);
    let mut waiting_since = Instant::now();
    loop {
        if stop.is_cancelled() {
            return Ok(());
        }
        let (length, closes) = match fields.parse(&buffer) {
            Head::Lean { length, closes } => (length, closes),
            Head::NotLean => {
                *ending = Ending::handover(&[], &buffer);
                return Ok(());
            }
            Head::Partial if buffer.len() >= READ_ROOM => {
                *ending = Ending::handover(&[], &buffer);
                return Ok(());
            }
            Head::Partial => {
                // As hyper does: the next head must be whole within the header read timeout
                // of the connection's start or of the previous answer. A connection that sent
                // nothing is closed; one caught mid-head is told why.
                let until = waiting_since + header_timeout;
                let read = tokio::select! {
                    () = stop.cancelled(), if buffer.is_empty() => return Ok(()),
                    read = tokio::time::timeout_at(until, stream.read_buf(&mut buffer)) => read,
                };
                match read {
                    Ok(Ok(0)) => return Ok(()),
                    Ok(Ok(_)) => continue,
                    Ok(Err(error)) => return Err(error),
                    Err(_) if buffer.is_empty() => return Ok(()),
                    Err(_) => {
                        let _ = stream.write_all(&bare_problem(StatusCode::REQUEST_TIMEOUT)).await;
                        return Ok(());
                    }
                }
            }
        };
        let head = request::take_head(&mut buffer, length);
        let Some(mut request) = fields.request(&head) else {
            *ending = Ending::handover(&head, &buffer);
            return Ok(());
        };
        let head_request = request.method() == http::Method::HEAD;
        // Each request works from the generation in force as it starts.
        let state = &state.latest();
        let route = match server::route_of(state, &mut request) {
            // Answers whose fields change are hyper's to pass on.
            server::Routing::Proxied(route) if route.changes_answers() => {
                *ending = Ending::handover(&head, &buffer);
                return Ok(());
            }
            server::Routing::Proxied(route) => route,
            server::Routing::Refused(problem) => {
                let response = axum::response::IntoResponse::into_response(problem);
                answer::write_response(stream, &mut out, response, head_request, closes).await?;
                if closes {
                    return Ok(());
                }
                waiting_since = Instant::now();
                continue;
            }
            server::Routing::Gateway => {
                *ending = Ending::handover(&head, &buffer);
                return Ok(());
            }
        };
        let _in_flight = tracked.begin_request();
        let client = server::client_addr(state, peer, request.headers());
        // Boxed, as on hyper's path: an idle connection's task would otherwise keep room for it.
        let mut answering = Box::pin(super::forward_lean(state, route, request, peer, client));
        // Read on while it is answered, so a client that goes away is noticed (its request is
        // then dropped and counted as 499) and pipelined requests wait in the buffer.
        let response = loop {
            if buffer.len() >= MAX_READ_AHEAD {
                break answering.await;
            }
            tokio::select! {
                biased;
                response = &mut answering => break response,
                read = stream.read_buf(&mut buffer) => {
                    if read? == 0 {
                        return Ok(());
                    }
                }
            }
        };
        let close = closes || stop.is_cancelled();
        let raw = response.extensions().get::<RawAnswer>().and_then(|raw| raw.0.lock().ok()?.take());
        let close = match raw {
            Some(answer) => {
                let added = response.headers();
                answer::pass_on(stream, &mut out, answer, added, close, state.upstream_pool()).await?
            }
            None => {
                answer::write_response(stream, &mut out, response, head_request, close).await?;
                close
            }
        };
        if close {
            let _ = stream.shutdown().await;
            return Ok(());
        }
        waiting_since = Instant::now();
    }
}
