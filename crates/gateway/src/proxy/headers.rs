//! Header rules of a forwarding proxy (RFC 9110 §7.6.1): hop-by-hop fields stay on their hop, and
//! the upstream learns who the client was.

use http::{HeaderMap, HeaderName, HeaderValue, header};

/// Fields that describe one connection, never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// `X-Forwarded-For`: the client chain.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`: the scheme the client used.
pub(super) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Whether a field name is hop-by-hop.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

/// Whether a field name, as it came on the wire, is hop-by-hop.
pub(super) fn is_hop_by_hop_name(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|hop| name.eq_ignore_ascii_case(hop.as_str()))
}

/// Removes hop-by-hop fields, including any the `Connection` field names. One pass over the
/// (few) fields present, since usually there is nothing to remove.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        if headers.contains_key(name) {
            headers.remove(name);
        }
    }
}

/// Adds the peer to `X-Forwarded-For` — appended to the chain when the peer is
/// a trusted proxy (`chained`), else in place of whatever the client wrote — and sets
/// `X-Forwarded-Proto` (`https` when the peer came over TLS, else `http`).
pub(super) fn add_forwarded(headers: &mut HeaderMap, peer: &crate::client::Peer, chained: bool) {
    let forwarded_for = &peer.forwarded_for;
    let chain = chained
        .then(|| {
            let values: Vec<&str> =
                headers.get_all(&X_FORWARDED_FOR).iter().filter_map(|value| value.to_str().ok()).collect();
            if values.is_empty() {
                return None;
            }
            let client = forwarded_for.to_str().ok()?;
            HeaderValue::try_from(format!("{}, {client}", values.join(", "))).ok()
        })
        .flatten();
    headers.insert(X_FORWARDED_FOR, chain.unwrap_or_else(|| forwarded_for.clone()));
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(if peer.secure { "https" } else { "http" }));
}

/// Makes a request that came in over HTTP/2 (or HTTP/1.0) one for the upstream hop, which is
/// HTTP/1.1: the version set, and the authority the client asked for (HTTP/2's `:authority`)
/// kept as its `Host`, as an HTTP/1.1 client's own `Host` is passed on.
pub(super) fn for_upstream_hop(parts: &mut http::request::Parts) {
    if parts.version == http::Version::HTTP_11 {
        return;
    }
    parts.version = http::Version::HTTP_11;
    if !parts.headers.contains_key(header::HOST)
        && let Some(authority) = parts.uri.authority()
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        parts.headers.insert(header::HOST, host);
    }
}

/// The HTTP/1.1 head of a request with `parts` for an upstream at `authority`: its request
/// line and fields as they are (a missing `Host` becomes the upstream's), in one buffer.
pub(super) fn encode_request_head(
    parts: &http::request::Parts,
    authority: Option<&http::uri::Authority>,
) -> Result<Vec<u8>, &'static str> {
    let target = parts.uri.path_and_query().map_or("/", http::uri::PathAndQuery::as_str);
    let fields: usize = parts.headers.iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    let mut head = Vec::with_capacity(parts.method.as_str().len() + target.len() + fields + 40);
    head.extend_from_slice(parts.method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    if !parts.headers.contains_key(header::HOST) {
        let authority = authority.ok_or("the upstream has no address")?;
        head.extend_from_slice(b"host: ");
        head.extend_from_slice(authority.as_str().as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    for (name, value) in &parts.headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Peer;

    fn peer(address: &str, secure: bool) -> Peer {
        Peer::new(std::net::SocketAddr::new(address.parse().unwrap(), 1), secure)
    }

    #[test]
    fn hop_by_hop_fields_and_those_connection_names_are_dropped() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, "keep-alive, x-secret".parse().unwrap());
        headers.insert("keep-alive", "timeout=5".parse().unwrap());
        headers.insert("x-secret", "1".parse().unwrap());
        headers.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        headers.insert(header::ACCEPT, "*/*".parse().unwrap());
        strip_hop_by_hop(&mut headers);
        let left: Vec<_> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["accept"]);
    }

    #[test]
    fn an_http2_request_goes_upstream_as_http11_with_its_authority_as_host() {
        let (mut parts, ()) =
            http::Request::get("http://shop.example/a").version(http::Version::HTTP_2).body(()).unwrap().into_parts();
        for_upstream_hop(&mut parts);
        assert_eq!(parts.version, http::Version::HTTP_11);
        assert_eq!(parts.headers[header::HOST], "shop.example");
    }

    #[test]
    fn a_request_head_keeps_its_fields_and_gains_a_host_only_when_missing() {
        let (mut parts, ()) = http::Request::get("/a?b=1").body(()).unwrap().into_parts();
        parts.headers.insert("x-a", "1".parse().unwrap());
        let authority: http::uri::Authority = "10.0.0.1:80".parse().unwrap();
        let head = encode_request_head(&parts, Some(&authority)).unwrap();
        assert_eq!(head, b"GET /a?b=1 HTTP/1.1\r\nhost: 10.0.0.1:80\r\nx-a: 1\r\n\r\n");
        parts.headers.insert(header::HOST, "example.org".parse().unwrap());
        let head = String::from_utf8(encode_request_head(&parts, None).unwrap()).unwrap();
        assert!(head.contains("host: example.org\r\n") && !head.contains("10.0.0.1"), "{head}");
    }

    #[test]
    fn a_trusted_peer_extends_the_chain_and_anyone_else_replaces_it() {
        let mut headers = HeaderMap::new();
        add_forwarded(&mut headers, &peer("10.0.0.1", false), true);
        assert_eq!(headers[&X_FORWARDED_FOR], "10.0.0.1");
        add_forwarded(&mut headers, &peer("10.0.0.2", false), true);
        assert_eq!(headers[&X_FORWARDED_FOR], "10.0.0.1, 10.0.0.2");
        assert_eq!(headers[&X_FORWARDED_PROTO], "http");
        add_forwarded(&mut headers, &peer("192.0.2.9", true), false);
        assert_eq!(headers[&X_FORWARDED_FOR], "192.0.2.9", "an untrusted peer's chain is its own say-so");
        assert_eq!(headers[&X_FORWARDED_PROTO], "https");
    }
}
