//! The lean path's upstream side: one serving thread's keep-alive connections to each upstream,
//! a request head written in one write, and the answer's head read in place (the body is passed
//! on by [`super::answer`] as it arrives).

use rampart_balance::endpoint::Endpoint;
use rampart_common::http::http1::{AnswerFraming, answer_framing};
use std::{
    collections::HashMap,
    io,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

/// Idle connections kept per upstream (as the hyper client keeps).
const MAX_IDLE_PER_UPSTREAM: usize = 512;
/// How long an idle connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The largest answer head read.
const MAX_ANSWER_HEAD: usize = 64 * 1024;
/// The most fields an answer head may have.
const MAX_ANSWER_FIELDS: usize = 128;
/// Room read into at a time.
const READ_ROOM: usize = 16 * 1024;

/// One open connection to an upstream, with what has been read from it.
#[derive(Debug)]
pub struct Connection {
    pub(super) stream: TcpStream,
    /// Bytes read and not yet passed on.
    pub(super) buffer: Vec<u8>,
}

impl Connection {
    /// Whether a pooled connection can still carry a request: the upstream has neither closed
    /// it nor sent anything unasked.
    fn reusable(&self) -> bool {
        let mut probe = [0_u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(error) if error.kind() == io::ErrorKind::WouldBlock)
    }

    /// Reads more into the buffer; `Ok(0)` at the end of the stream.
    pub(super) async fn fill(&mut self) -> io::Result<usize> {
        self.buffer.reserve(READ_ROOM);
        self.stream.read_buf(&mut self.buffer).await
    }
}

/// An answer whose head has arrived.
#[derive(Debug)]
pub struct Answer {
    /// Its status.
    pub status: http::StatusCode,
    /// How long the upstream asked to be left alone (`Retry-After` in seconds on 429 and 5xx).
    pub retry_after: Option<Duration>,
    /// How its body ends and whether the connection closes after it.
    pub framing: AnswerFraming,
    /// The length of its head at the front of the connection's buffer.
    pub head_length: usize,
    /// The upstream it came from, for putting the connection back.
    pub upstream: u64,
    /// The connection, its buffer holding the head and what of the body came with it.
    pub connection: Connection,
}

/// Why an upstream gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection could be opened: the request never reached it.
    #[error("cannot connect: {0}")]
    Connect(io::Error),
    /// The connection failed after the request was (perhaps) sent.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The answer is not valid HTTP/1.1.
    #[error("the answer is malformed: {0}")]
    Malformed(&'static str),
}

/// What an exchange on a connection came to.
enum Exchanged {
    Answer(Answer),
    /// A reused connection closed before any byte of an answer: the upstream had dropped it.
    Stale,
    Failed(SendError),
}

/// An idle connection and since when.
#[derive(Debug)]
struct Idle {
    connection: Connection,
    since: Instant,
}

/// One serving thread's idle upstream connections, by endpoint.
#[derive(Debug, Default)]
pub struct Pool {
    idle: Mutex<HashMap<u64, Vec<Idle>>>,
}

impl Pool {
    /// An empty pool.
    pub fn new() -> Self {
        Self::default()
    }

    fn take(&self, upstream: u64) -> Option<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let waiting = idle.get_mut(&upstream)?;
        while let Some(Idle { connection, since }) = waiting.pop() {
            if since.elapsed() < IDLE_TIMEOUT && connection.reusable() {
                return Some(connection);
            }
        }
        None
    }

    /// Keeps `connection` (its answer fully read) for the next request to `upstream`.
    pub fn put(&self, upstream: u64, mut connection: Connection) {
        connection.buffer.clear();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let waiting = idle.entry(upstream).or_default();
        // Oldest first: those past their time go, and a full pool keeps the newest.
        let expired = waiting.iter().take_while(|idle| idle.since.elapsed() >= IDLE_TIMEOUT).count();
        let over = (waiting.len() + 1).saturating_sub(MAX_IDLE_PER_UPSTREAM);
        waiting.drain(..expired.max(over).min(waiting.len()));
        waiting.push(Idle { connection, since: Instant::now() });
    }

    /// Sends the request `head` to `upstream` and reads its answer's head. A pooled connection
    /// the upstream had closed is replaced by a new one when the request may be repeated
    /// (`idempotent`, RFC 9110 §9.2.2).
    pub async fn send(
        &self,
        upstream: &Endpoint,
        head: &[u8],
        head_request: bool,
        idempotent: bool,
    ) -> Result<Answer, SendError> {
        if let Some(connection) = self.take(upstream.id()) {
            match exchange(connection, head, head_request, upstream.id(), true).await {
                Exchanged::Answer(answer) => return Ok(answer),
                Exchanged::Failed(error) => return Err(error),
                Exchanged::Stale if idempotent => {}
                Exchanged::Stale => {
                    return Err(SendError::Io(io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        "the upstream closed a kept-alive connection as the request went out",
                    )));
                }
            }
        }
        let connection = connect(upstream).await.map_err(SendError::Connect)?;
        match exchange(connection, head, head_request, upstream.id(), false).await {
            Exchanged::Answer(answer) => Ok(answer),
            Exchanged::Failed(error) => Err(error),
            Exchanged::Stale => Err(SendError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the upstream closed the connection without answering",
            ))),
        }
    }
}

async fn connect(upstream: &Endpoint) -> io::Result<Connection> {
    let authority = upstream
        .authority()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{} has no address", upstream.url())))?;
    let address = (authority.host().trim_start_matches('[').trim_end_matches(']'), authority.port_u16().unwrap_or(80));
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connecting took over a second"))??;
    stream.set_nodelay(true)?;
    Ok(Connection { stream, buffer: Vec::with_capacity(READ_ROOM) })
}

/// Writes `head` and reads the answer's head (past any 1xx interim answers).
async fn exchange(
    mut connection: Connection,
    head: &[u8],
    head_request: bool,
    upstream: u64,
    reused: bool,
) -> Exchanged {
    if let Err(error) = connection.stream.write_all(head).await {
        return if reused { Exchanged::Stale } else { Exchanged::Failed(error.into()) };
    }
    let mut answered_any = false;
    loop {
        match parse_head(&connection.buffer, head_request) {
            Ok(Some(parsed)) if parsed.status.is_informational() => {
                if parsed.status == http::StatusCode::SWITCHING_PROTOCOLS {
                    return Exchanged::Failed(SendError::Malformed("101 to a request that asked no upgrade"));
                }
                connection.buffer.drain(..parsed.head_length);
                continue;
            }
            Ok(Some(parsed)) => {
                let Parsed { status, retry_after, framing, head_length } = parsed;
                return Exchanged::Answer(Answer { status, retry_after, framing, head_length, upstream, connection });
            }
            Ok(None) if connection.buffer.len() >= MAX_ANSWER_HEAD => {
                return Exchanged::Failed(SendError::Malformed("the head is over 64 KiB"));
            }
            Ok(None) => {}
            Err(reason) => return Exchanged::Failed(SendError::Malformed(reason)),
        }
        match connection.fill().await {
            Ok(0) | Err(_) if reused && !answered_any && connection.buffer.is_empty() => return Exchanged::Stale,
            Ok(0) => {
                return Exchanged::Failed(SendError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the upstream closed the connection mid-answer",
                )));
            }
            Ok(_) => answered_any = true,
            Err(error) => return Exchanged::Failed(error.into()),
        }
    }
}

/// An answer head's meaning.
struct Parsed {
    status: http::StatusCode,
    retry_after: Option<Duration>,
    framing: AnswerFraming,
    head_length: usize,
}

fn parse_head(bytes: &[u8], head_request: bool) -> Result<Option<Parsed>, &'static str> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let mut fields = [httparse::EMPTY_HEADER; MAX_ANSWER_FIELDS];
    let mut answer = httparse::Response::new(&mut fields);
    let head_length = match answer.parse(bytes) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err("not an HTTP/1.1 answer head"),
    };
    let code = answer.code.ok_or("no status")?;
    let status = http::StatusCode::from_u16(code).map_err(|_| "its status is not a valid code")?;
    let framing = answer_framing(code, answer.version == Some(0), head_request, answer.headers)
        .ok_or("its length fields are unreadable or disagree")?;
    let retry_after = crate::proxy::upstream_refused(status)
        .then(|| answer.headers.iter().find(|field| field.name.eq_ignore_ascii_case("retry-after")))
        .flatten()
        .and_then(|field| crate::proxy::retry_after_value(field.value));
    Ok(Some(Parsed { status, retry_after, framing, head_length }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_common::http::http1::Framing;

    #[test]
    fn answer_heads_give_status_framing_and_pushback() {
        let head = b"HTTP/1.1 503 Busy\r\nRetry-After: 7\r\nContent-Length: 2\r\n\r\nok";
        let parsed = parse_head(head, false).unwrap().unwrap();
        assert_eq!((parsed.status.as_u16(), parsed.head_length), (503, head.len() - 2));
        assert_eq!(parsed.retry_after, Some(Duration::from_secs(7)));
        assert_eq!(parsed.framing.framing, Framing::Length(2));
        assert!(parse_head(b"HTTP/1.1 200 OK\r\n", false).unwrap().is_none());
        assert!(parse_head(b"garbage\r\n\r\n", false).is_err());
        let ok = parse_head(b"HTTP/1.1 200 OK\r\nRetry-After: 7\r\n\r\n", false).unwrap().unwrap();
        assert_eq!(ok.retry_after, None, "only a refusal's Retry-After is pushback");
    }
}
