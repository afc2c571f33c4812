//! Writing answers on the lean path: an upstream's answer passed on as it came (its head copied
//! field by field without the hop-by-hop ones, with the fields the protection stack added, and
//! its body bytes untouched), or the gateway's own answer (a problem, a preflight) encoded.

use super::upstream::{Answer, Pool};
use axum::{body::Body, response::Response};
use http::HeaderMap;
use rampart_common::http::http1::{ChunkedEnd, Framing, contains_token};
use std::io;
use tokio::io::{AsyncWrite, AsyncWriteExt as _};

/// A body smaller than this goes out in the same write as the head.
const COALESCE: usize = 16 * 1024;

fn put_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn put_status_line(out: &mut Vec<u8>, status: http::StatusCode, reason: &[u8]) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason);
    out.extend_from_slice(b"\r\n");
}

thread_local! {
    /// The current second's `Date` value, made once a second per serving thread.
    static DATE: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((0, String::new())) };
}

/// Adds a `date` field for now.
fn put_date(out: &mut Vec<u8>) {
    let now = std::time::SystemTime::now();
    let second = now.duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_secs());
    DATE.with_borrow_mut(|(made, value)| {
        if *made != second {
            *made = second;
            *value = httpdate::fmt_http_date(now);
        }
        put_field(out, b"date", value.as_bytes());
    });
}

/// The upstream's head as the client gets it, into `out`; an answer that came without a `Date`
/// gets one (RFC 9110 §6.6.1: a recipient with a clock adds it when forwarding).
fn put_upstream_head(out: &mut Vec<u8>, answer: &Answer, added: &HeaderMap, close: bool) {
    let head = &answer.connection.buffer[..answer.head_length];
    let mut fields = [httparse::EMPTY_HEADER; 128];
    let mut parsed = httparse::Response::new(&mut fields);
    // Parsed once already when it arrived: this cannot fail.
    let _ = parsed.parse(head);
    put_status_line(out, answer.status, parsed.reason.unwrap_or("").as_bytes());
    let named_by_connection = |name: &str| {
        parsed
            .headers
            .iter()
            .any(|field| field.name.eq_ignore_ascii_case("connection") && contains_token(field.value, name.as_bytes()))
    };
    let mut dated = false;
    for field in parsed.headers.iter() {
        let name = field.name;
        dated |= name.eq_ignore_ascii_case("date");
        // `Transfer-Encoding` stays: the body goes on with the coding it came with.
        let hop = super::super::headers::is_hop_by_hop_name(name) && !name.eq_ignore_ascii_case("transfer-encoding");
        if hop || added.contains_key(name) || named_by_connection(name) {
            continue;
        }
        put_field(out, name.as_bytes(), field.value);
    }
    for (name, value) in added {
        put_field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if !dated {
        put_date(out);
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Passes `answer` on to `client`: its head with the fields the stack `added`, then its body as
/// it arrives. The upstream connection goes back to `pool` once its answer is complete and it
/// can carry another. Returns whether the client connection must close after it (the body ran
/// to the upstream's close, or `close` was asked).
pub(super) async fn pass_on<C: AsyncWrite + Unpin>(
    client: &mut C,
    out: &mut Vec<u8>,
    mut answer: Answer,
    added: &HeaderMap,
    close: bool,
    pool: &Pool,
) -> io::Result<bool> {
    let close = close || answer.framing.framing == Framing::UntilClose;
    out.clear();
    put_upstream_head(out, &answer, added, close);
    let connection = &mut answer.connection;
    let arrived = connection.buffer.len() - answer.head_length;
    let mut chunks = ChunkedEnd::new();
    // Body bytes still to come after those that arrived with the head (`None`: until the end
    // of the chunks, or of the stream).
    let (first, mut left, surplus) = match answer.framing.framing {
        Framing::Length(length) => {
            let length = usize::try_from(length).unwrap_or(usize::MAX);
            let first = arrived.min(length);
            (first, Some(length - first), arrived > length)
        }
        Framing::Chunked => {
            let found = chunks.feed(&connection.buffer[answer.head_length..]).map_err(io::Error::other)?;
            let first = found.unwrap_or(arrived);
            (first, found.map(|_| 0), first < arrived)
        }
        Framing::UntilClose => (arrived, None, false),
    };
    let body = answer.head_length..answer.head_length + first;
    if first <= COALESCE {
        out.extend_from_slice(&connection.buffer[body]);
        client.write_all(out).await?;
    } else {
        client.write_all(out).await?;
        client.write_all(&connection.buffer[body]).await?;
    }
    loop {
        if left == Some(0) {
            break;
        }
        connection.buffer.clear();
        let read = connection.fill().await?;
        if read == 0 {
            if answer.framing.framing == Framing::UntilClose {
                return Ok(true);
            }
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the upstream closed mid-body"));
        }
        let take = match (answer.framing.framing, left) {
            (Framing::Length(_), Some(remaining)) => {
                let take = read.min(remaining);
                left = Some(remaining - take);
                take
            }
            (Framing::Chunked, _) => match chunks.feed(&connection.buffer).map_err(io::Error::other)? {
                Some(end) => {
                    left = Some(0);
                    end
                }
                None => read,
            },
            _ => read,
        };
        client.write_all(&connection.buffer[..take]).await?;
        if take < read {
            // The upstream sent more than its answer: its connection is not trusted again.
            return Ok(close);
        }
    }
    if !answer.framing.closes && !surplus {
        pool.put(answer.upstream, answer.connection);
    }
    Ok(close)
}

/// Writes the gateway's own `response` (a problem, a preflight, a refusal) to `client`; no body
/// for a `HEAD` request. Its body is in memory: the gateway's answers are small documents.
pub(super) async fn write_response<C: AsyncWrite + Unpin>(
    client: &mut C,
    out: &mut Vec<u8>,
    response: Response,
    head_request: bool,
    close: bool,
) -> io::Result<()> {
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(Body::new(body), usize::MAX).await.map_err(io::Error::other)?;
    out.clear();
    put_status_line(out, parts.status, parts.status.canonical_reason().unwrap_or("").as_bytes());
    for (name, value) in &parts.headers {
        if name != http::header::CONTENT_LENGTH && name != http::header::CONNECTION {
            put_field(out, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    if !parts.headers.contains_key(http::header::DATE) {
        put_date(out);
    }
    put_field(out, b"content-length", body.len().to_string().as_bytes());
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_request {
        out.extend_from_slice(&body);
    }
    client.write_all(out).await
}
