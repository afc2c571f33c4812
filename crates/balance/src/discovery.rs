//! Where endpoints come from: static `http://HOST:PORT` URLs, and `dns://NAME:PORT` names
//! resolved again every `dns_refresh`, so `docker compose --scale worker=3` and a Kubernetes
//! headless Service work without configuration changes.

use crate::{endpoint::Endpoint, set::EndpointSet};
use rampart_common::shutdown::{Every, FirstTick};
use std::{sync::Arc, time::Duration};
use tokio_util::sync::CancellationToken;

/// One configured endpoint entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A fixed URL.
    Static(String),
    /// Every address a name resolves to, at this port.
    Dns {
        /// The name, for example `worker`.
        host: String,
        /// The port.
        port: u16,
    },
}

impl Source {
    /// Reads a validated endpoint URL.
    pub fn parse(url: &str) -> Self {
        match url.strip_prefix("dns://") {
            Some(rest) => {
                let rest = rest.trim_end_matches('/');
                let (host, port) = rest.rsplit_once(':').unwrap_or((rest, "80"));
                Self::Dns { host: host.to_owned(), port: port.parse().unwrap_or(80) }
            }
            None => Self::Static(url.trim_end_matches('/').to_owned()),
        }
    }
}

/// The URLs `specs` stand for now. A name that fails to resolve contributes nothing this round
/// (logged), so one bad name does not empty the whole set.
pub async fn resolve(specs: &[Source]) -> Vec<String> {
    let mut urls = Vec::new();
    for spec in specs {
        match spec {
            Source::Static(url) => urls.push(url.clone()),
            Source::Dns { host, port } => match tokio::net::lookup_host((host.as_str(), *port)).await {
                Ok(addresses) => {
                    let mut found: Vec<String> = addresses.map(|address| format!("http://{address}")).collect();
                    found.sort();
                    found.dedup();
                    urls.extend(found);
                }
                Err(error) => tracing::warn!(%host, %error, "cannot resolve endpoint name"),
            },
        }
    }
    urls.dedup();
    urls
}

/// Resolves `specs` into `set` now; returns the endpoints that joined.
pub async fn refresh(set: &EndpointSet, specs: &[Source]) -> Vec<Arc<Endpoint>> {
    let urls = resolve(specs).await;
    match set.replace(&urls) {
        Ok(added) => added,
        Err(error) => {
            tracing::error!(set = set.name(), %error, "cannot create endpoints");
            Vec::new()
        }
    }
}

/// Keeps `set` in step with `specs` until `stop`, calling `joined` for endpoints that appear.
/// Does nothing when every spec is static.
pub async fn run(
    set: Arc<EndpointSet>,
    specs: Vec<Source>,
    every: Duration,
    joined: impl Fn(Arc<Endpoint>) + Send,
    stop: CancellationToken,
) {
    if specs.iter().all(|spec| matches!(spec, Source::Static(_))) {
        return;
    }
    let mut every = Every::new(every, FirstTick::AfterOnePeriod, stop);
    while every.tick().await {
        for endpoint in refresh(&set, &specs).await {
            joined(endpoint);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_read_static_and_dns_entries() {
        assert_eq!(Source::parse("http://10.0.0.1:50051/"), Source::Static("http://10.0.0.1:50051".into()));
        assert_eq!(Source::parse("dns://worker:50051"), Source::Dns { host: "worker".into(), port: 50051 });
    }

    #[tokio::test]
    async fn names_resolve_to_one_url_per_address() {
        let urls = resolve(&[Source::parse("dns://localhost:7"), Source::parse("http://10.1.1.1:8")]).await;
        assert!(urls.iter().any(|url| url == "http://127.0.0.1:7" || url == "http://[::1]:7"), "{urls:?}");
        assert_eq!(urls.last().map(String::as_str), Some("http://10.1.1.1:8"));
        let none = resolve(&[Source::parse("dns://no-such-host.invalid:7")]).await;
        assert!(none.is_empty());
    }
}
