//! Which route serves a request: its path under the route's prefix (on a segment boundary), and,
//! where the route asks, its host, method and fields.

use crate::config::RouteConfig;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, header};

/// What a route asks of a request besides its prefix.
#[derive(Debug, Default)]
pub struct RouteMatch {
    hosts: Vec<HostPattern>,
    methods: Vec<Method>,
    /// A field and the value it must have (`None`: any value).
    headers: Vec<(HeaderName, Option<HeaderValue>)>,
}

/// A host name, or every name under a domain (`*.example.com`).
#[derive(Debug)]
enum HostPattern {
    Exact(String),
    Under(String),
}

impl RouteMatch {
    /// The conditions of `route`; the error names the field at fault and why.
    pub fn new(route: &RouteConfig) -> Result<Self, (&'static str, String)> {
        let hosts = route
            .hosts
            .iter()
            .map(|host| {
                let host = host.trim().to_ascii_lowercase();
                match host.strip_prefix("*.") {
                    Some(domain) if !domain.is_empty() && !domain.contains('*') => {
                        Ok(HostPattern::Under(format!(".{domain}")))
                    }
                    _ if host.is_empty() || host.contains(['*', '/', ':']) => {
                        Err(("hosts", format!("{host:?} is no host name (write api.example.com or *.example.com)")))
                    }
                    _ => Ok(HostPattern::Exact(host)),
                }
            })
            .collect::<Result<_, _>>()?;
        let methods = route
            .methods
            .iter()
            .map(|method| {
                Method::from_bytes(method.trim().to_ascii_uppercase().as_bytes())
                    .map_err(|_| ("methods", format!("{method:?} is no HTTP method")))
            })
            .collect::<Result<_, _>>()?;
        let headers = route
            .match_headers
            .iter()
            .map(|(name, value)| {
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| ("match_headers", format!("{name:?} is no field name")))?;
                let value = match value.as_str() {
                    "*" => None,
                    value => Some(
                        HeaderValue::from_str(value)
                            .map_err(|_| ("match_headers", format!("{value:?} is no field value")))?,
                    ),
                };
                Ok((name, value))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { hosts, methods, headers })
    }

    /// How many conditions it has: among routes on one prefix, the one with more is tried first.
    pub fn conditions(&self) -> usize {
        usize::from(!self.hosts.is_empty()) + usize::from(!self.methods.is_empty()) + self.headers.len()
    }

    /// Whether `request` meets every condition.
    pub fn matches<B>(&self, request: &Request<B>) -> bool {
        let host_ok = self.hosts.is_empty() || host_of(request).is_some_and(|host| self.host_matches(&host));
        host_ok
            && (self.methods.is_empty() || self.methods.contains(request.method()))
            && self.headers.iter().all(|(name, wanted)| has_field(request.headers(), name, wanted.as_ref()))
    }

    fn host_matches(&self, host: &str) -> bool {
        self.hosts.iter().any(|pattern| match pattern {
            HostPattern::Exact(name) => name == host,
            HostPattern::Under(domain) => host.ends_with(domain.as_str()),
        })
    }
}

/// The host a request names, lower case and without its port: the `Host` field, or the
/// target's authority (HTTP/2). An IPv6 literal keeps its brackets (no pattern names one).
fn host_of<B>(request: &Request<B>) -> Option<String> {
    let named = match request.headers().get(header::HOST) {
        Some(value) => value.to_str().ok()?,
        None => request.uri().host()?,
    };
    let host = match named.rsplit_once(':') {
        Some((host, port)) if !named.starts_with('[') && port.bytes().all(|byte| byte.is_ascii_digit()) => host,
        _ => named,
    };
    Some(host.to_ascii_lowercase())
}

fn has_field(headers: &HeaderMap, name: &HeaderName, wanted: Option<&HeaderValue>) -> bool {
    let mut values = headers.get_all(name).iter();
    match wanted {
        None => values.next().is_some(),
        Some(wanted) => values.any(|value| value == wanted),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(extra: &str) -> RouteMatch {
        let config: RouteConfig = toml::from_str(&format!("prefix = \"/\"\nupstreams = []\n{extra}")).unwrap();
        RouteMatch::new(&config).unwrap()
    }

    fn request(method: &str, host: &str, fields: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder().method(method).uri("/x").header("host", host);
        for (name, value) in fields {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn hosts_methods_and_fields_must_all_match() {
        let api = route("hosts = [\"api.example.com\", \"*.shop.test\"]\nmethods = [\"get\", \"POST\"]");
        assert!(api.matches(&request("GET", "API.example.com:8080", &[])));
        assert!(api.matches(&request("POST", "eu.shop.test", &[])));
        assert!(!api.matches(&request("POST", "shop.test", &[])), "*.shop.test is the names under it");
        assert!(!api.matches(&request("DELETE", "api.example.com", &[])));
        assert!(!api.matches(&request("GET", "other.example.com", &[])));
        assert_eq!(api.conditions(), 2);

        let canary = route("[match_headers]\nx-canary = \"1\"\nx-user = \"*\"");
        assert!(canary.matches(&request("GET", "h", &[("x-canary", "1"), ("x-user", "ann")])));
        assert!(!canary.matches(&request("GET", "h", &[("x-canary", "2"), ("x-user", "ann")])));
        assert!(!canary.matches(&request("GET", "h", &[("x-canary", "1")])), "x-user must be present");
        assert!(route("").matches(&request("PATCH", "anything", &[])), "no condition: every request");
    }

    #[test]
    fn bad_conditions_are_refused_naming_the_field() {
        let bad = |extra: &str| {
            let config: RouteConfig = toml::from_str(&format!("prefix = \"/\"\nupstreams = []\n{extra}")).unwrap();
            RouteMatch::new(&config).unwrap_err().0
        };
        assert_eq!(bad("hosts = [\"http://x\"]"), "hosts");
        assert_eq!(bad("methods = [\"GE T\"]"), "methods");
        assert_eq!(bad("[match_headers]\n\"bad name\" = \"1\""), "match_headers");
    }
}
