//! Who sent a request: the connection's peer, and the client it stands for.

use http::HeaderValue;
use std::net::{IpAddr, SocketAddr};

/// Who sent a request, decided once per request: the peer, or behind a trusted proxy the client
/// that `X-Forwarded-For` names. Handlers read it from the request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// The peer of a connection, as the proxy reports it upstream.
#[derive(Clone)]
pub struct Peer {
    /// Its address.
    pub address: SocketAddr,
    /// Its address as an `X-Forwarded-For` value.
    pub forwarded_for: HeaderValue,
    /// Whether it reached the gateway over TLS (`X-Forwarded-Proto: https`).
    pub secure: bool,
}

impl Peer {
    /// The peer at `address`, over TLS if `secure`.
    pub fn new(address: SocketAddr, secure: bool) -> Self {
        Self { address, forwarded_for: forwarded_for(address.ip()), secure }
    }
}

/// An address as an `X-Forwarded-For` value; made once per connection.
pub fn forwarded_for(client: IpAddr) -> HeaderValue {
    HeaderValue::try_from(client.to_string()).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}
