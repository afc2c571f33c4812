//! A client's request head as the lean path reads it: parsed in place, and taken only when it is
//! the plain case the lean path serves (HTTP/1.1, no body, no upgrade, nothing to wait for);
//! anything else is left for hyper, which answers it as it always has.

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};
use rampart_common::http::http1::contains_token;
use std::ops::Range;

/// The most header fields a request may have: hyper's limit, so both paths refuse alike.
pub(super) const MAX_FIELDS: usize = 100;

/// What the bytes read so far hold.
#[derive(Debug)]
pub(super) enum Head {
    /// Not a whole head yet.
    Partial,
    /// A head the lean path does not serve (a body, an upgrade, another version, or anything
    /// malformed): hyper takes the connection from here.
    NotLean,
    /// A head the lean path serves: its length, and whether the client asked to close after it.
    Lean {
        /// Bytes of the head, its final empty line included.
        length: usize,
        /// `Connection: close`.
        closes: bool,
    },
}

/// Where each field lies in the head, kept between requests so that reading one allocates
/// nothing once the connection has seen its largest head.
#[derive(Debug, Default)]
pub(super) struct Fields {
    spans: Vec<(Range<usize>, Range<usize>)>,
    method: Range<usize>,
    target: Range<usize>,
}

fn span(whole: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - whole.as_ptr() as usize;
    start..start + part.len()
}

impl Fields {
    /// Reads the head at the front of `bytes`.
    pub(super) fn parse(&mut self, bytes: &[u8]) -> Head {
        let mut headers = [httparse::EMPTY_HEADER; MAX_FIELDS];
        let mut request = httparse::Request::new(&mut headers);
        let length = match request.parse(bytes) {
            Ok(httparse::Status::Complete(length)) => length,
            Ok(httparse::Status::Partial) => return Head::Partial,
            Err(_) => return Head::NotLean,
        };
        let (Some(method), Some(target), Some(1)) = (request.method, request.path, request.version) else {
            return Head::NotLean;
        };
        if method == "CONNECT" || !target.starts_with('/') {
            return Head::NotLean;
        }
        self.spans.clear();
        let mut closes = false;
        for field in request.headers.iter() {
            let name = field.name;
            let body_or_upgrade = (name.eq_ignore_ascii_case("content-length") && field.value != b"0")
                || name.eq_ignore_ascii_case("transfer-encoding")
                || name.eq_ignore_ascii_case("upgrade")
                || name.eq_ignore_ascii_case("expect");
            if body_or_upgrade {
                return Head::NotLean;
            }
            if name.eq_ignore_ascii_case("connection") {
                if contains_token(field.value, b"upgrade") {
                    return Head::NotLean;
                }
                closes |= contains_token(field.value, b"close");
            }
            self.spans.push((span(bytes, name.as_bytes()), span(bytes, field.value)));
        }
        self.method = span(bytes, method.as_bytes());
        self.target = span(bytes, target.as_bytes());
        Head::Lean { length, closes }
    }

    /// The request of the head last parsed, which `head` holds, sharing its bytes; `None` if a
    /// part of it is not valid for `http` (hyper would refuse it too).
    pub(super) fn request(&self, head: &Bytes) -> Option<Request<Body>> {
        let method = Method::from_bytes(&head[self.method.clone()]).ok()?;
        let uri = Uri::from_maybe_shared(head.slice(self.target.clone())).ok()?;
        let mut headers = HeaderMap::with_capacity(self.spans.len());
        for (name, value) in &self.spans {
            let name = HeaderName::from_bytes(&head[name.clone()]).ok()?;
            let value = HeaderValue::from_maybe_shared(head.slice(value.clone())).ok()?;
            headers.append(name, value);
        }
        let mut request = Request::new(Body::empty());
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = headers;
        Some(request)
    }
}

/// Takes the first `length` bytes of `buffer` as a shared head.
pub(super) fn take_head(buffer: &mut BytesMut, length: usize) -> Bytes {
    buffer.split_to(length).freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Head, Fields) {
        let mut fields = Fields::default();
        (fields.parse(text.as_bytes()), fields)
    }

    #[test]
    fn plain_requests_are_lean_and_the_rest_are_left_to_hyper() {
        let (head, fields) = parse("GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Y: z\r\nConnection: close\r\n\r\nGET");
        let Head::Lean { length, closes } = head else { panic!("{head:?}") };
        assert!(closes);
        let text = "GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Y: z\r\nConnection: close\r\n\r\n";
        assert_eq!(length, text.len());
        let request = fields.request(&Bytes::from(text)).unwrap();
        assert_eq!((request.method(), request.uri().path(), request.uri().query()), (&Method::GET, "/a", Some("b=1")));
        assert_eq!(request.headers()["x-y"], "z");
        assert_eq!(request.headers().len(), 3);

        assert!(matches!(parse("GET / HTTP/1.1\r\nHost: x\r\n").0, Head::Partial));
        for other in [
            "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            "GET / HTTP/1.1\r\nConnection: upgrade\r\n\r\n",
            "PUT / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            "GET / HTTP/1.0\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "CONNECT x:1 HTTP/1.1\r\n\r\n",
            "GET http://x/ HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        ] {
            assert!(matches!(parse(other).0, Head::NotLean), "{other}");
        }
        let too_many: String = (0..=MAX_FIELDS).map(|n| format!("x-{n}: 1\r\n")).collect();
        assert!(matches!(parse(&format!("GET / HTTP/1.1\r\n{too_many}\r\n")).0, Head::NotLean));
        assert!(matches!(parse("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").0, Head::Lean { .. }));
    }
}
