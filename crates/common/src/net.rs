//! Who a client is on the network: address blocks (CIDR), trusted proxies, and the client
//! address behind them from `X-Forwarded-For`.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// This machine's host name, if it has a readable one.
pub fn host_name() -> Option<String> {
    nix::unistd::gethostname().ok().and_then(|name| name.into_string().ok())
}

/// How a process names a listener of its to others: its address, with the host name in place
/// of an unspecified one (`0.0.0.0` reaches nobody).
pub fn advertised(address: SocketAddr) -> String {
    match host_name() {
        Some(host) if address.ip().is_unspecified() => format!("{host}:{}", address.port()),
        _ => address.to_string(),
    }
}

/// An address block such as `10.0.0.0/8` or `2001:db8::/32`; a bare address is a block of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `ADDRESS[/PREFIX]`, refusing host bits set past the prefix (a likely typo).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("{text:?} is not an address or CIDR block (like 10.0.0.0/8 or 2001:db8::/32)"))?;
        let network = network.to_canonical();
        let width = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|prefix| *prefix <= width)
                .ok_or_else(|| format!("{text:?} has a prefix length that is not 0 to {width}"))?,
        };
        let block = Self { network, prefix };
        if block.mask(network) != network {
            return Err(format!("{text:?} has bits set past its /{prefix} prefix"));
        }
        Ok(block)
    }

    fn mask(&self, address: IpAddr) -> IpAddr {
        match address {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4) & u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                IpAddr::V4(bits.into())
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6) & u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                IpAddr::V6(bits.into())
            }
        }
    }

    /// Whether `address` is in the block.
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        address.is_ipv4() == self.network.is_ipv4() && self.mask(address) == self.network
    }
}

/// The proxies whose `X-Forwarded-For` the gateway believes.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// The blocks `texts` name (already validated; invalid ones are skipped).
    pub fn new<'a>(texts: impl IntoIterator<Item = &'a str>) -> Self {
        Self(texts.into_iter().filter_map(|text| Cidr::parse(text).ok()).collect())
    }

    /// Whether no proxy is trusted (then every client is its connection's peer).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `address` is a trusted proxy.
    pub fn trusts(&self, address: IpAddr) -> bool {
        self.0.iter().any(|block| block.contains(address))
    }

    /// The client a request came from: the peer itself unless it is a trusted proxy; behind
    /// trusted proxies, the right-most `X-Forwarded-For` address that is not one (each proxy
    /// appends the address it heard from, so anything further left was written by the client
    /// and proves nothing). `forwarded_for` holds the header's values in order.
    pub fn client<'a>(&self, peer: IpAddr, forwarded_for: impl DoubleEndedIterator<Item = &'a [u8]>) -> IpAddr {
        let mut client = peer.to_canonical();
        if self.0.is_empty() || !self.trusts(client) {
            return client;
        }
        for value in forwarded_for.rev() {
            let Ok(text) = std::str::from_utf8(value) else { return client };
            for hop in text.rsplit(',') {
                let Some(address) = parse_hop(hop) else { return client };
                client = address;
                if !self.trusts(address) {
                    return client;
                }
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, perhaps bracketed or with a port.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(address) = hop.parse::<IpAddr>() {
        return Some(address.to_canonical());
    }
    if let Ok(socket) = hop.parse::<std::net::SocketAddr>() {
        return Some(socket.ip().to_canonical());
    }
    hop.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')).and_then(|inner| inner.parse().ok())
}

/// The part of an address that names one client for rate limiting: the whole IPv4 address, or
/// the /64 of an IPv6 one (a single host is routinely given a whole /64, so counting its
/// addresses apart would give one client billions of buckets).
pub fn client_block(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or(IpAddr::V4(0.into()))
    }

    #[test]
    fn blocks_parse_and_match() {
        let block = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(block.contains(ip("10.200.1.2")) && !block.contains(ip("11.0.0.1")));
        assert!(block.contains(ip("::ffff:10.1.1.1")), "IPv4-mapped addresses are their IPv4 selves");
        assert!(Cidr::parse("127.0.0.1").unwrap().contains(ip("127.0.0.1")));
        assert!(Cidr::parse("2001:db8::/32").unwrap().contains(ip("2001:db8:1::5")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        for bad in ["10.0.0.1/8", "10.0.0.0/33", "nope", "10.0.0.0/x", "::/129"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_client_is_the_last_untrusted_hop() {
        let proxies = TrustedProxies::new(["10.0.0.0/8"]);
        let header = |values: &'static [&'static str]| values.iter().map(|value| value.as_bytes());
        assert_eq!(proxies.client(ip("1.2.3.4"), header(&["9.9.9.9"])), ip("1.2.3.4"), "untrusted peers lie");
        assert_eq!(proxies.client(ip("10.0.0.1"), header(&["9.9.9.9, 5.6.7.8, 10.0.0.2"])), ip("5.6.7.8"));
        assert_eq!(proxies.client(ip("10.0.0.1"), header(&["9.9.9.9", "5.6.7.8"])), ip("5.6.7.8"));
        assert_eq!(proxies.client(ip("10.0.0.1"), header(&[])), ip("10.0.0.1"));
        assert_eq!(proxies.client(ip("10.0.0.1"), header(&["junk, 10.0.0.3"])), ip("10.0.0.3"));
        assert_eq!(proxies.client(ip("10.0.0.1"), header(&["[2001:db8::1]:443"])), ip("2001:db8::1"));
        assert_eq!(TrustedProxies::default().client(ip("10.0.0.1"), header(&["5.6.7.8"])), ip("10.0.0.1"));
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        assert_eq!(client_block(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(client_block(ip("192.0.2.7")), ip("192.0.2.7"));
    }
}
