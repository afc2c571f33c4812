//! Talking to a gateway the way a hostile client does: raw bytes on a socket, no client library
//! to tidy them up first, and a raw-socket backend that records exactly what reaches it.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

/// An answer read off a socket.
#[derive(Debug, Clone)]
pub(crate) struct RawAnswer {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl RawAnswer {
    /// A header's value, by case-insensitive name.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    /// The body as JSON.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// Checks the answer is problem details with `status` and `code`.
    pub(crate) fn expect_problem(&self, status: u16, code: &str) -> serde_json::Value {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.header("content-type"), Some("application/problem+json"), "{self:?}");
        let problem = self.json();
        assert_eq!(problem["code"], code, "{problem}");
        assert_eq!(problem["status"], status, "{problem}");
        problem
    }
}

/// Parses every complete HTTP/1.1 answer in `bytes` (bodies framed by `Content-Length`, by
/// chunks, or to the end).
pub(crate) fn parse_answers(mut bytes: &[u8]) -> Vec<RawAnswer> {
    let mut answers = Vec::new();
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(head)) = response.parse(bytes) else { return answers };
        let status = response.code.unwrap_or(0);
        let headers: Vec<(String, String)> = response
            .headers
            .iter()
            .map(|header| (header.name.to_owned(), String::from_utf8_lossy(header.value).into_owned()))
            .collect();
        let rest = &bytes[head..];
        let find = |name: &str| headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
        let (body, used) = if let Some(length) = find("content-length") {
            let length: usize = length.trim().parse().unwrap_or(0);
            if rest.len() < length {
                answers.push(RawAnswer { status, headers, body: rest.to_vec() });
                return answers;
            }
            (rest[..length].to_vec(), length)
        } else if find("transfer-encoding").is_some_and(|coding| coding.contains("chunked")) {
            let (body, used) = dechunk(rest);
            (body, used)
        } else {
            (rest.to_vec(), rest.len())
        };
        answers.push(RawAnswer { status, headers, body });
        bytes = &rest[used..];
        if bytes.is_empty() {
            return answers;
        }
    }
}

/// The data of a chunked body and the bytes it took; what is there of an unfinished one.
fn dechunk(mut bytes: &[u8]) -> (Vec<u8>, usize) {
    let total = bytes.len();
    let mut body = Vec::new();
    loop {
        let Some(line_end) = bytes.windows(2).position(|pair| pair == b"\r\n") else { return (body, total) };
        let size_text = String::from_utf8_lossy(&bytes[..line_end]);
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16) else {
            return (body, total);
        };
        bytes = &bytes[line_end + 2..];
        if size == 0 {
            let trailer_end = bytes.windows(2).position(|pair| pair == b"\r\n").map_or(bytes.len(), |at| at + 2);
            return (body, total - (bytes.len() - trailer_end));
        }
        if bytes.len() < size + 2 {
            body.extend_from_slice(&bytes[..size.min(bytes.len())]);
            return (body, total);
        }
        body.extend_from_slice(&bytes[..size]);
        bytes = &bytes[size + 2..];
    }
}

/// Sends `bytes` on a new connection to `address` and reads until the peer closes or `wait`
/// passes with nothing more; returns every answer.
pub(crate) async fn exchange(address: &str, bytes: &[u8], wait: Duration) -> Vec<RawAnswer> {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    parse_answers(&read_until_quiet(&mut stream, wait).await)
}

/// One request, one answer (the connection is closed by the request's `Connection: close`, or
/// after `wait` of quiet).
pub(crate) async fn one(address: &str, bytes: &[u8]) -> RawAnswer {
    let answers = exchange(address, bytes, Duration::from_secs(5)).await;
    answers.into_iter().next().unwrap_or_else(|| panic!("no answer to {}", String::from_utf8_lossy(bytes)))
}

/// Everything `stream` sends until it closes or is quiet for `wait`.
pub(crate) async fn read_until_quiet(stream: &mut TcpStream, wait: Duration) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buffer = [0_u8; 65536];
    loop {
        match tokio::time::timeout(wait, stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) | Err(_) => return received,
            Ok(Ok(read)) => received.extend_from_slice(&buffer[..read]),
        }
    }
}

/// What `stream` sends until `marker` appears in it (or it closes, or `limit` passes).
pub(crate) async fn read_until(stream: &mut TcpStream, marker: &[u8], limit: Duration) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buffer = [0_u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    while !received.windows(marker.len()).any(|window| window == marker) {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) | Err(_) => break,
            Ok(Ok(read)) => received.extend_from_slice(&buffer[..read]),
        }
    }
    received
}

/// A request as the raw backend received it.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

/// A plain-HTTP backend over raw sockets that parses requests strictly, as RFC 9112 says a
/// server must (chunked wins over a length; conflicting or malformed framing closes the
/// connection), records each one and answers `200` with its path. `GET /health` answers too but
/// is not recorded.
pub(crate) struct RawBackend {
    pub(crate) url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl RawBackend {
    /// Starts the backend on a free port.
    pub(crate) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, Arc::clone(&log)));
            }
        });
        Self { url, received }
    }

    /// Every request received so far.
    pub(crate) fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// Serves one connection until it closes or its framing is broken.
async fn serve(mut stream: TcpStream, log: Arc<Mutex<Vec<Received>>>) {
    let mut buffer = Vec::new();
    let mut chunk = [0_u8; 65536];
    loop {
        let Some((request, used)) = parse_request(&buffer) else {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(read) => buffer.extend_from_slice(&chunk[..read]),
            }
            continue;
        };
        let Ok(request) = request else {
            let _ =
                stream.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
            return;
        };
        buffer.drain(..used);
        let body = serde_json::json!({"path": request.path, "body_len": request.body.len()}).to_string();
        if !(request.method == "GET" && request.path == "/health") {
            log.lock().unwrap().push(request);
        }
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// One request from the front of `bytes`: `None` if incomplete, `Some(Err)` if its framing is
/// broken, else the request and the bytes it took.
fn parse_request(bytes: &[u8]) -> Option<(Result<Received, ()>, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut request = httparse::Request::new(&mut headers);
    let head = match request.parse(bytes) {
        Ok(httparse::Status::Complete(head)) => head,
        Ok(httparse::Status::Partial) => return None,
        Err(_) => return Some((Err(()), bytes.len())),
    };
    let headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|header| (header.name.to_ascii_lowercase(), String::from_utf8_lossy(header.value).into_owned()))
        .collect();
    let values = |name: &str| headers.iter().filter(|(key, _)| key == name).map(|(_, v)| v.clone()).collect::<Vec<_>>();
    let rest = &bytes[head..];
    let codings = values("transfer-encoding");
    let lengths = values("content-length");
    let (body, used) = if !codings.is_empty() {
        let last = codings.join(",").rsplit(',').next().unwrap_or("").trim().to_ascii_lowercase();
        if last != "chunked" {
            return Some((Err(()), bytes.len()));
        }
        match strict_dechunk(rest) {
            None => return None,
            Some(Err(())) => return Some((Err(()), bytes.len())),
            Some(Ok(done)) => done,
        }
    } else if !lengths.is_empty() {
        let parsed: Vec<Option<usize>> = lengths
            .iter()
            .map(|value| value.bytes().all(|byte| byte.is_ascii_digit()).then(|| value.parse().ok()).flatten())
            .collect();
        let Some(Some(length)) = parsed.first().copied() else { return Some((Err(()), bytes.len())) };
        if parsed.iter().any(|other| *other != Some(length)) {
            return Some((Err(()), bytes.len()));
        }
        if rest.len() < length {
            return None;
        }
        (rest[..length].to_vec(), length)
    } else {
        (Vec::new(), 0)
    };
    let received = Received {
        method: request.method.unwrap_or("").to_owned(),
        path: request.path.unwrap_or("").to_owned(),
        headers,
        body,
    };
    Some((Ok(received), head + used))
}

/// A chunked body, strictly: `None` if incomplete, `Some(Err)` if malformed.
fn strict_dechunk(mut bytes: &[u8]) -> Option<Result<(Vec<u8>, usize), ()>> {
    let total = bytes.len();
    let mut body = Vec::new();
    loop {
        let line_end = bytes.windows(2).position(|pair| pair == b"\r\n")?;
        let line = &bytes[..line_end];
        let size_part = line.split(|byte| *byte == b';').next().unwrap_or(b"");
        if size_part.is_empty() || size_part.len() > 8 || !size_part.iter().all(u8::is_ascii_hexdigit) {
            return Some(Err(()));
        }
        let size = usize::from_str_radix(std::str::from_utf8(size_part).ok()?, 16).ok()?;
        bytes = &bytes[line_end + 2..];
        if size == 0 {
            if bytes.len() < 2 {
                return None;
            }
            if &bytes[..2] != b"\r\n" {
                return Some(Err(()));
            }
            return Some(Ok((body, total - bytes.len() + 2)));
        }
        if bytes.len() < size + 2 {
            return None;
        }
        if &bytes[size..size + 2] != b"\r\n" {
            return Some(Err(()));
        }
        body.extend_from_slice(&bytes[..size]);
        bytes = &bytes[size + 2..];
    }
}
