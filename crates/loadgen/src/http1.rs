//! A lean HTTP/1.1 keep-alive connection for load: the request is written from bytes prepared
//! once, and the answer is parsed in place (status, headers, then a `Content-Length`, chunked or
//! read-to-close body) without allocating per request. This is what keeps the tool from being
//! the bottleneck beside wrk.

use crate::connect::{Connector, Stream};
use rampart_common::http::http1::{ChunkedEnd, Framing, answer_framing};
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
            Framing::Length(length) => {
                let length = usize::try_from(length)
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "the answer's length is too large"))?;
                self.skip_exact(head_len, length).await?
            }
            Framing::Chunked => self.skip_chunked(head_len).await?,
            Framing::UntilClose => self.skip_to_close(head_len).await?,
        };
        Ok(Answer { status, bytes: head_len + body, closes })
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
                        let http10 = response.version == Some(0);
                        let framing = answer_framing(status, http10, self.head_request, response.headers)
                            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad Content-Length"))?;
                        return Ok((status, head_len, framing.framing, framing.closes));
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
        let mut end = ChunkedEnd::new();
        let mut total = 0;
        loop {
            let found = end
                .feed(&self.buffer[..self.filled])
                .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error.to_string()))?;
            let taken = found.unwrap_or(self.filled);
            total += taken;
            self.consume(taken);
            if found.is_some() {
                return Ok(total);
            }
            self.fill().await?;
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
