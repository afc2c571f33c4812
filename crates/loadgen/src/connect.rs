//! Opening connections to the target: plain TCP, or TLS (rustls) for `https://` targets, trusting
//! a CA bundle (`--cacert`), the certificate not checked at all (`--insecure`, for self-signed
//! test certificates), or else failing with a clear message. ALPN offers the protocol the run
//! speaks, so a TLS server picks h2 or HTTP/1.1 as asked. Sessions are never resumed: every
//! connection opened is a full handshake, so a run with `Connection: close` measures handshakes.

use rampart_common::tls::client::{Trust, client_config};
use rustls_pki_types::ServerName;
use std::{
    io,
    net::SocketAddr,
    path::PathBuf,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tokio_rustls::{TlsConnector, client::TlsStream};

/// How an `https://` target's certificate is checked.
#[derive(Debug, Clone)]
pub enum Verify {
    /// Against the certificates in this PEM bundle.
    Bundle(PathBuf),
    /// Not at all.
    Insecure,
}

/// Opens connections to one address, over TLS when configured.
#[derive(Clone)]
pub struct Connector {
    address: SocketAddr,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Connector").field("address", &self.address).field("tls", &self.tls.is_some()).finish()
    }
}

impl Connector {
    /// Plain TCP to `address`.
    pub fn plain(address: SocketAddr) -> Self {
        Self { address, tls: None }
    }

    /// TLS to `address` for the host `name`, checked as `verify` says, offering `alpn`.
    pub fn tls(address: SocketAddr, name: &str, verify: &Verify, alpn: &[u8]) -> anyhow::Result<Self> {
        let trust = match verify {
            Verify::Bundle(path) => Trust::Bundle(path),
            Verify::Insecure => Trust::Anyone,
        };
        let mut config = client_config(trust, vec![alpn.to_vec()])?;
        config.resumption = rustls::client::Resumption::disabled();
        let name = ServerName::try_from(name.to_owned())?;
        Ok(Self { address, tls: Some((TlsConnector::from(Arc::new(config)), name)) })
    }

    /// The address connections go to.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// A new connection, with Nagle's algorithm off and, over TLS, its handshake done.
    pub async fn connect(&self) -> io::Result<Stream> {
        let tcp = TcpStream::connect(self.address).await?;
        tcp.set_nodelay(true)?;
        match &self.tls {
            None => Ok(Stream::Plain(tcp)),
            Some((connector, name)) => Ok(Stream::Tls(Box::new(connector.connect(name.clone(), tcp).await?))),
        }
    }
}

/// A connection to the target.
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, context: &mut Context<'_>, buffer: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_read(context, buffer),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_read(context, buffer),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, context: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write(context, bytes),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_write(context, bytes),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_flush(context),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(context),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_shutdown(context),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(context),
        }
    }
}
