//! HTTP/1.1 message framing (RFC 9112 §6): how the end of a body is known, and where a chunked
//! body ends, read in place so its bytes can be passed on as they came. Shared by everything
//! that reads answers off a raw connection (the proxy's lean path, the load generator).

/// How the end of a message body is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Exactly this many bytes (0 for messages that cannot have a body).
    Length(u64),
    /// Chunked transfer coding: the body ends with its last chunk and trailers.
    Chunked,
    /// The body runs until the sender closes the connection.
    UntilClose,
}

/// Whether a comma-separated header value lists `token` (case-insensitively).
pub fn contains_token(value: &[u8], token: &[u8]) -> bool {
    value.split(|byte| *byte == b',').any(|part| part.trim_ascii().eq_ignore_ascii_case(token))
}

/// What an answer's head says of its body and its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerFraming {
    /// How its body ends.
    pub framing: Framing,
    /// Whether the server closes the connection after it (`Connection: close`, HTTP/1.0, or a
    /// body that runs to the close).
    pub closes: bool,
}

/// The framing of an answer with `status` and `headers` to a request that was a `HEAD` if
/// `head_request`; `None` when its length fields contradict each other or cannot be read (the
/// answer cannot be passed on safely).
pub fn answer_framing(
    status: u16,
    http10: bool,
    head_request: bool,
    headers: &[httparse::Header<'_>],
) -> Option<AnswerFraming> {
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut closes = http10;
    for header in headers {
        if header.name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(header.value).ok()?.trim().parse().ok()?;
            if length.is_some_and(|known| known != value) {
                return None;
            }
            length = Some(value);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = contains_token(header.value, b"chunked");
        } else if header.name.eq_ignore_ascii_case("connection") {
            closes |= contains_token(header.value, b"close");
        }
    }
    let bodiless = head_request || status < 200 || status == 204 || status == 304;
    let framing = match (bodiless, chunked, length) {
        (true, _, _) => Framing::Length(0),
        (false, true, _) => Framing::Chunked,
        (false, false, Some(length)) => Framing::Length(length),
        (false, false, None) => Framing::UntilClose,
    };
    Some(AnswerFraming { framing, closes: closes || framing == Framing::UntilClose })
}

/// Where a chunked body is, fed its bytes as they arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// In a chunk-size line: the size so far, and whether an extension (`;...`) began.
    Size { size: u64, digits: u8, extension: bool },
    /// After the size line's CR.
    SizeLf { size: u64 },
    /// Inside a chunk's data, with this many bytes left.
    Data { left: u64 },
    /// After a chunk's data, expecting its CRLF (`true` once the CR is seen).
    DataEnd { cr: bool },
    /// In the trailer section, in a line of this many bytes so far (0: at a line's start).
    Trailer { line: u64, cr: bool },
    /// The body is complete.
    Done,
}

/// Finds the end of a chunked body without copying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkedEnd {
    state: ChunkState,
}

/// A chunked body that is not valid (a bad size line, a missing CRLF, a size over 2^60).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the chunked body is malformed")]
pub struct MalformedChunks;

impl Default for ChunkedEnd {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedEnd {
    /// At the start of a chunked body.
    pub fn new() -> Self {
        Self { state: ChunkState::Size { size: 0, digits: 0, extension: false } }
    }

    /// Whether the body is complete.
    pub fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Reads the next bytes of the body; `Some(n)` when it ends after the first `n` of them.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Option<usize>, MalformedChunks> {
        let mut at = 0;
        while at < bytes.len() {
            let byte = bytes[at];
            self.state = match self.state {
                ChunkState::Done => return Ok(Some(at)),
                ChunkState::Data { left } => {
                    let take = left.min((bytes.len() - at) as u64);
                    at += usize::try_from(take).map_err(|_| MalformedChunks)?;
                    let left = left - take;
                    self.state = if left == 0 { ChunkState::DataEnd { cr: false } } else { ChunkState::Data { left } };
                    continue;
                }
                ChunkState::Size { size, digits, extension } => match byte {
                    b'\r' if digits > 0 => ChunkState::SizeLf { size },
                    _ if extension => ChunkState::Size { size, digits, extension },
                    b';' | b' ' | b'\t' if digits > 0 => ChunkState::Size { size, digits, extension: true },
                    _ => {
                        let digit = (byte as char).to_digit(16).ok_or(MalformedChunks)?;
                        if digits >= 15 {
                            return Err(MalformedChunks);
                        }
                        ChunkState::Size { size: size * 16 + u64::from(digit), digits: digits + 1, extension }
                    }
                },
                ChunkState::SizeLf { size } => match byte {
                    b'\n' if size == 0 => ChunkState::Trailer { line: 0, cr: false },
                    b'\n' => ChunkState::Data { left: size },
                    _ => return Err(MalformedChunks),
                },
                ChunkState::DataEnd { cr } => match (cr, byte) {
                    (false, b'\r') => ChunkState::DataEnd { cr: true },
                    (true, b'\n') => ChunkState::Size { size: 0, digits: 0, extension: false },
                    _ => return Err(MalformedChunks),
                },
                ChunkState::Trailer { line, cr } => match (cr, byte) {
                    (false, b'\r') => ChunkState::Trailer { line, cr: true },
                    (true, b'\n') if line == 0 => ChunkState::Done,
                    (true, b'\n') => ChunkState::Trailer { line: 0, cr: false },
                    (false, _) => ChunkState::Trailer { line: line + 1, cr: false },
                    (true, _) => return Err(MalformedChunks),
                },
            };
            at += 1;
        }
        Ok(self.done().then_some(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end_of(body: &[u8], step: usize) -> Result<Option<usize>, MalformedChunks> {
        let mut end = ChunkedEnd::new();
        let mut offset = 0;
        for piece in body.chunks(step) {
            if let Some(at) = end.feed(piece)? {
                return Ok(Some(offset + at));
            }
            offset += piece.len();
        }
        Ok(None)
    }

    #[test]
    fn finds_the_end_of_a_chunked_body_however_it_is_split() {
        let body = b"3;x=y\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer: 1\r\n\r\nNEXT";
        let end = body.len() - 4;
        for step in 1..=body.len() {
            assert_eq!(end_of(body, step), Ok(Some(end)), "pieces of {step}");
        }
        assert_eq!(end_of(b"0\r\n\r\n", 2), Ok(Some(5)));
        assert_eq!(end_of(b"5\r\nab", 64), Ok(None), "incomplete");
    }

    #[test]
    fn malformed_chunks_are_refused() {
        for bad in [&b"x\r\n"[..], b"\r\n", b"3\r\nabcX", b"3\n", b"1000000000000000\r\n", b"0\r\nTrailer\r\r"] {
            assert_eq!(end_of(bad, 64), Err(MalformedChunks), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn framing_follows_status_method_and_fields() {
        let length = [httparse::Header { name: "Content-Length", value: b"5" }];
        let chunked = [httparse::Header { name: "Transfer-Encoding", value: b"gzip, chunked" }];
        let close = [httparse::Header { name: "Connection", value: b"close" }];
        let twice = [
            httparse::Header { name: "Content-Length", value: b"5" },
            httparse::Header { name: "content-length", value: b"6" },
        ];
        let framing = |status, head, headers: &[httparse::Header<'_>]| answer_framing(status, false, head, headers);
        assert_eq!(framing(200, false, &length).map(|f| f.framing), Some(Framing::Length(5)));
        assert_eq!(framing(200, true, &length).map(|f| f.framing), Some(Framing::Length(0)));
        assert_eq!(framing(204, false, &chunked).map(|f| f.framing), Some(Framing::Length(0)));
        assert_eq!(framing(200, false, &chunked).map(|f| f.framing), Some(Framing::Chunked));
        assert_eq!(framing(200, false, &close), Some(AnswerFraming { framing: Framing::UntilClose, closes: true }));
        assert_eq!(framing(200, false, &twice), None);
        assert!(answer_framing(200, true, false, &length).is_some_and(|f| f.closes), "HTTP/1.0 closes");
    }
}
