//! A connection's socket as hyper sees it, with one change: the bare answers hyper writes on its
//! own when an HTTP/1.1 request head cannot be parsed (400, 414, 431, with an empty body) go out
//! as problem details instead, so a client always learns what was wrong, in the same format as
//! every other error.
//!
//! hyper offers no hook for those answers. They are recognised by their exact shape: a status
//! line and nothing but `content-length: 0`, `date` and `connection` fields. No answer a Rampart
//! service produces has that shape (API answers carry a `content-type`; proxied answers a
//! `via`), so only hyper's own are ever replaced.

use super::problem::http1_message;
use http::StatusCode;
use std::{
    io::{self, IoSlice},
    pin::Pin,
    task::{Context, Poll, ready},
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The first bytes of an HTTP/2 connection (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Unknown,
    Http1,
    Http2,
}

/// A replacement answer being written in place of hyper's.
#[derive(Debug)]
struct Replacement {
    bytes: Vec<u8>,
    written: usize,
    /// The length of hyper's answer, reported written once the replacement is out.
    replaces: usize,
}

/// A socket whose hyper-made error answers are rewritten as problem details.
#[derive(Debug)]
pub struct ProblemIo<T> {
    inner: T,
    protocol: Protocol,
    replacement: Option<Replacement>,
}

impl<T> ProblemIo<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> Self {
        Self { inner, protocol: Protocol::Unknown, replacement: None }
    }
}

/// The problem a bare hyper answer stands for: its status, code, title and detail.
fn problem_for(status: StatusCode) -> (&'static str, &'static str, &'static str) {
    match status {
        StatusCode::URI_TOO_LONG => ("uri_too_long", "The URI is too long", "the request target is over the limit"),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => (
            "headers_too_large",
            "The request headers are too large",
            "the request's header section is over the limit (too many fields or too many bytes)",
        ),
        StatusCode::REQUEST_TIMEOUT => {
            ("request_timeout", "The request took too long to arrive", "the request was not received in time")
        }
        _ => (
            "invalid_request",
            "The request is invalid",
            "the request is not valid HTTP/1.1 (malformed request line, header field or framing)",
        ),
    }
}

/// The problem-details answer, closing the connection, that stands for one of hyper's bare
/// error answers with `status` (400, 408, 414 or 431): for readers that answer such requests
/// themselves in hyper's place.
pub fn bare_problem(status: StatusCode) -> Vec<u8> {
    let (code, title, detail) = problem_for(status);
    http1_message(status, code, title, detail)
}

/// The status of `bytes` if they are exactly one of hyper's bare error answers.
fn bare_error_status(bytes: &[u8]) -> Option<StatusCode> {
    if !bytes.starts_with(b"HTTP/1.1 4") || !bytes.ends_with(b"\r\n\r\n") {
        return None;
    }
    let mut headers = [httparse::EMPTY_HEADER; 4];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(length) = response.parse(bytes).ok()? else { return None };
    if length != bytes.len() {
        return None;
    }
    let status = StatusCode::from_u16(response.code?).ok()?;
    if !matches!(status.as_u16(), 400 | 408 | 414 | 431) {
        return None;
    }
    let mut empty = false;
    for header in response.headers.iter() {
        match header.name.to_ascii_lowercase().as_str() {
            "content-length" if header.value == b"0" => empty = true,
            "date" | "connection" => {}
            _ => return None,
        }
    }
    empty.then_some(status)
}

impl<T: AsyncWrite + Unpin> ProblemIo<T> {
    /// Writes the replacement under way; ready with the length of the answer it replaces.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        while let Some(replacement) = &mut self.replacement {
            if replacement.written == replacement.bytes.len() {
                let replaces = replacement.replaces;
                self.replacement = None;
                return Poll::Ready(Ok(replaces));
            }
            let written = ready!(Pin::new(&mut self.inner).poll_write(cx, &replacement.bytes[replacement.written..]))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            replacement.written += written;
        }
        Poll::Ready(Ok(0))
    }

    /// Starts replacing `bytes` if they are a bare hyper error answer.
    fn start_replacing(&mut self, bytes: &[u8]) -> bool {
        if self.protocol != Protocol::Http1 {
            return false;
        }
        let Some(status) = bare_error_status(bytes) else { return false };
        self.replacement = Some(Replacement { bytes: bare_problem(status), written: 0, replaces: bytes.len() });
        true
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ProblemIo<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if this.protocol == Protocol::Unknown {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                let compared = new.len().min(H2_PREFACE.len());
                this.protocol =
                    if new[..compared] == H2_PREFACE[..compared] { Protocol::Http2 } else { Protocol::Http1 };
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ProblemIo<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.replacement.is_some() || this.start_replacing(buf) {
            let replaced = ready!(this.poll_replacement(cx))?;
            return Poll::Ready(Ok(replaced.min(buf.len())));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut filled = bufs.iter().filter(|slice| !slice.is_empty());
        if let (Some(only), None) = (filled.next(), filled.next())
            && (this.replacement.is_some() || this.start_replacing(only))
        {
            let replaced = ready!(this.poll_replacement(cx))?;
            return Poll::Ready(Ok(replaced.min(only.len())));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_replacement(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bare_hyper_answers_are_recognised() {
        let bare = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 09:00:00 GMT\r\n\r\n";
        assert_eq!(bare_error_status(bare), Some(StatusCode::BAD_REQUEST));
        let closing = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(bare_error_status(closing), Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
        for other in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\nvia: 1.1 rampart\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad",
        ] {
            assert_eq!(bare_error_status(other), None, "{}", String::from_utf8_lossy(other));
        }
    }
}
