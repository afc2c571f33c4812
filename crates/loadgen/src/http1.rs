//! A lean HTTP/1.1 keep-alive connection for load: the request is written from bytes prepared
//! once, and the answer is parsed in place (status, headers, then a `Content-Length`, chunked or
//! read-to-close body) without allocating per request. This is what keeps the tool from being
//! the bottleneck beside wrk.

use crate::connect::{Connector, Stream};
use std::io;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The most header lines an answer may have.
const MAX_HEADERS: usize = 64;

/// The largest header block accepted.
const MAX_HEAD: usize = 64 * 1024;

/// One answer, as far as a load test cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// Bytes received, head and body.
    pub bytes: usize,
    /// The server will close the connection (`Connection: close`, or HTTP/1.0).
    pub closes: bool,
}

/// A keep-alive connection.
pub struct Connection {
    stream: Stream,
    buffer: Vec<u8>,
    /// Bytes of `buffer` that hold data.
    filled: usize,
    head_request: bool,
}

/// How a body's end is known.
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

impl Connection {
    /// Connects (over TLS if `connector` says so).
    pub async fn connect(connector: &Connector, head_request: bool) -> io::Result<Self> {
        let stream = connector.connect().await?;
        Ok(Self { stream, buffer: vec![0; 16 * 1024], filled: 0, head_request })
    }

    /// Sends `request` and reads the whole answer.
    pub async fn send(&mut self, request: &[u8]) -> io::Result<Answer> {
        self.stream.write_all(request).await?;
        let (status, head_len, framing, closes) = self.read_head().await?;
        let body = match framing {
            Framing::Length(length) => self.skip_exact(head_len, length).await?,
            Framing::Chunked => self.skip_chunked(head_len).await?,
            Framing::UntilClose => self.skip_to_close(head_len).await?,
        };
        Ok(Answer { status, bytes: head_len + body, closes: closes || matches!(framing, Framing::UntilClose) })
    }

    /// Reads more into the buffer; an end of stream is an error (the answer is incomplete).
    async fn fill(&mut self) -> io::Result<()> {
        if self.filled == self.buffer.len() {
            self.buffer.resize(self.buffer.len() * 2, 0);
        }
        let read = self.stream.read(&mut self.buffer[self.filled..]).await?;
        if read == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed the connection mid-answer"));
        }
        self.filled += read;
        Ok(())
    }

    async fn read_head(&mut self) -> io::Result<(u16, usize, Framing, bool)> {
        loop {
            if self.filled > 0 {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut response = httparse::Response::new(&mut headers);
                match response.parse(&self.buffer[..self.filled]) {
                    Ok(httparse::Status::Complete(head_len)) => {
                        let status = response.code.unwrap_or(0);
                        let mut length = None;
                        let mut chunked = false;
                        let mut closes = response.version == Some(0);
                        for header in response.headers.iter() {
                            if header.name.eq_ignore_ascii_case("content-length") {
                                length =
                                    std::str::from_utf8(header.value).ok().and_then(|text| text.trim().parse().ok());
                            } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                                chunked = contains_token(header.value, b"chunked");
                            } else if header.name.eq_ignore_ascii_case("connection") {
                                closes = contains_token(header.value, b"close");
                            }
                        }
                        let bodiless = self.head_request || status < 200 || status == 204 || status == 304;
                        let framing = match (bodiless, chunked, length) {
                            (true, _, _) => Framing::Length(0),
                            (false, true, _) => Framing::Chunked,
                            (false, false, Some(length)) => Framing::Length(length),
                            (false, false, None) => Framing::UntilClose,
                        };
                        return Ok((status, head_len, framing, closes));
                    }
                    Ok(httparse::Status::Partial) if self.filled < MAX_HEAD => {}
                    Ok(httparse::Status::Partial) => {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, "the answer's head is over 64 KiB"));
                    }
                    Err(error) => {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("bad answer: {error}")));
                    }
                }
            }
            self.fill().await?;
        }
    }

    /// Drops `count` bytes from the front of the buffer.
    fn consume(&mut self, count: usize) {
        self.buffer.copy_within(count..self.filled, 0);
        self.filled -= count;
    }

    async fn skip_exact(&mut self, head_len: usize, length: usize) -> io::Result<usize> {
        self.consume(head_len);
        let mut left = length;
        loop {
            let here = left.min(self.filled);
            self.consume(here);
            left -= here;
            if left == 0 {
                return Ok(length);
            }
            self.fill().await?;
        }
    }

    async fn skip_chunked(&mut self, head_len: usize) -> io::Result<usize> {
        self.consume(head_len);
        let mut total = 0;
        loop {
            let line_end = loop {
                if let Some(at) = self.buffer[..self.filled].windows(2).position(|pair| pair == b"\r\n") {
                    break at;
                }
                self.fill().await?;
            };
            let size_text = std::str::from_utf8(&self.buffer[..line_end]).unwrap_or("");
            let size_text = size_text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            total += line_end + 2;
            self.consume(line_end + 2);
            if size == 0 {
                // Trailers, if any, end with an empty line.
                loop {
                    let end = loop {
                        if let Some(at) = self.buffer[..self.filled].windows(2).position(|pair| pair == b"\r\n") {
                            break at;
                        }
                        self.fill().await?;
                    };
                    total += end + 2;
                    self.consume(end + 2);
                    if end == 0 {
                        return Ok(total);
                    }
                }
            }
            total += self.skip_exact(0, size + 2).await?;
        }
    }

    async fn skip_to_close(&mut self, head_len: usize) -> io::Result<usize> {
        self.consume(head_len);
        let mut total = self.filled;
        self.filled = 0;
        loop {
            let read = self.stream.read(&mut self.buffer).await?;
            if read == 0 {
                return Ok(total);
            }
            total += read;
        }
    }
}

fn contains_token(value: &[u8], token: &[u8]) -> bool {
    value.split(|byte| *byte == b',').any(|part| part.trim_ascii().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    /// A server answering each request with the next canned answer.
    async fn canned(answers: Vec<&'static [u8]>) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buffer = [0_u8; 4096];
            for answer in answers {
                let _ = stream.read(&mut buffer).await.unwrap();
                stream.write_all(answer).await.unwrap();
            }
        });
        address
    }

    #[tokio::test]
    async fn reads_length_chunked_and_bodiless_answers_on_one_connection() {
        let address = canned(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: 1\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        ])
        .await;
        let mut connection = Connection::connect(&Connector::plain(address), false).await.unwrap();
        let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let first = connection.send(request).await.unwrap();
        assert_eq!((first.status, first.bytes, first.closes), (200, 43, false));
        let second = connection.send(request).await.unwrap();
        assert_eq!(second.status, 201);
        assert_eq!(connection.send(request).await.unwrap().status, 204);
        let last = connection.send(request).await.unwrap();
        assert_eq!((last.status, last.closes), (503, true));
    }
}
