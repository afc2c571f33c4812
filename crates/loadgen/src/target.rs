//! What to load: the address, and the request to send, built once.

use bytes::Bytes;
use std::net::SocketAddr;

/// A target that cannot be used, with why.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The URL is malformed or not plain HTTP.
    #[error("invalid URL {url:?}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The host name does not resolve.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// The host and port.
        host: String,
        /// Why.
        reason: String,
    },
    /// A header is not `Name: value`.
    #[error("invalid header {0:?}: write it as \"Name: value\"")]
    Header(String),
    /// The method is not a valid token.
    #[error("invalid method {0:?}")]
    Method(String),
    /// The body file cannot be read.
    #[error("cannot read the body file {path}: {reason}")]
    BodyFile {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// Where requests go.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL as given.
    pub url: String,
    /// The resolved address.
    pub address: SocketAddr,
    /// `HOST:PORT` as written, for the `Host` header.
    pub authority: String,
    /// Path and query, `/` at least.
    pub path: String,
    /// Whether it is an `https://` target.
    pub secure: bool,
    /// The host as written (the TLS server name).
    pub host: String,
}

impl Target {
    /// Parses `url` (`http[s]://HOST[:PORT][/PATH]`) and resolves its host.
    pub async fn resolve(url: &str) -> Result<Self, TargetError> {
        let bad = |reason: &str| TargetError::Url { url: url.to_owned(), reason: reason.to_owned() };
        let uri: http::Uri = url.parse().map_err(|error: http::uri::InvalidUri| bad(&error.to_string()))?;
        let secure = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(bad("write it like http://127.0.0.1:8080/path or https://localhost:8443/path")),
        };
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        let port = authority.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        let host_port = format!("{host}:{port}");
        let address = tokio::net::lookup_host((host, port))
            .await
            .map_err(|error| TargetError::Resolve { host: host_port.clone(), reason: error.to_string() })?
            .next()
            .ok_or_else(|| TargetError::Resolve { host: host_port, reason: "no address".into() })?;
        let path = uri.path_and_query().map_or("/", http::uri::PathAndQuery::as_str).to_owned();
        Ok(Self {
            url: url.to_owned(),
            address,
            authority: authority.as_str().to_owned(),
            path,
            secure,
            host: host.to_owned(),
        })
    }
}

/// The request every send repeats.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    /// The method.
    pub method: http::Method,
    /// Extra headers, in order.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// The body.
    pub body: Bytes,
}

impl RequestSpec {
    /// Builds the request from the command-line pieces.
    pub fn new(method: &str, headers: &[String], body: Bytes) -> Result<Self, TargetError> {
        let method = http::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
            .map_err(|_| TargetError::Method(method.to_owned()))?;
        let mut parsed = Vec::with_capacity(headers.len());
        for header in headers {
            let (name, value) = header.split_once(':').ok_or_else(|| TargetError::Header(header.clone()))?;
            let name = http::HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| TargetError::Header(header.clone()))?;
            let value = http::HeaderValue::from_str(value.trim()).map_err(|_| TargetError::Header(header.clone()))?;
            parsed.push((name, value));
        }
        Ok(Self { method, headers: parsed, body })
    }

    /// The request as HTTP/1.1 bytes, written once and sent as is every time.
    pub fn http1_bytes(&self, target: &Target) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.body.len());
        out.extend_from_slice(format!("{} {} HTTP/1.1\r\n", self.method, target.path).as_bytes());
        let has = |name: &http::HeaderName| self.headers.iter().any(|(given, _)| given == name);
        if !has(&http::header::HOST) {
            out.extend_from_slice(format!("Host: {}\r\n", target.authority).as_bytes());
        }
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let needs_length = !self.body.is_empty() || !matches!(self.method, http::Method::GET | http::Method::HEAD);
        if needs_length && !has(&http::header::CONTENT_LENGTH) {
            out.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn parses_urls_and_refuses_what_it_cannot_speak() {
        let target = Target::resolve("http://127.0.0.1:8080/api/process?data=x").await.unwrap();
        assert_eq!(target.address, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(target.path, "/api/process?data=x");
        assert_eq!(Target::resolve("http://localhost").await.unwrap().address.port(), 80);
        for url in ["ftp://x/", "127.0.0.1:80", "http://"] {
            assert!(Target::resolve(url).await.is_err(), "{url}");
        }
    }

    #[tokio::test]
    async fn writes_the_request_once() {
        let target = Target::resolve("http://127.0.0.1:9/echo").await.unwrap();
        let spec =
            RequestSpec::new("post", &["Content-Type: application/json".into()], Bytes::from_static(b"{}")).unwrap();
        let bytes = String::from_utf8(spec.http1_bytes(&target)).unwrap();
        assert_eq!(
            bytes,
            "POST /echo HTTP/1.1\r\nHost: 127.0.0.1:9\r\ncontent-type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        );
        assert!(RequestSpec::new("GET", &["no colon".into()], Bytes::new()).is_err());
    }
}
