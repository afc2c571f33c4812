//! Mirroring: a share of a route's requests without a body is copied to a shadow upstream as it
//! goes out, on a task of its own, and the shadow's answers are thrown away. The main path never
//! waits for the shadow: copies beyond `max_in_flight` at once are dropped (and counted), so a
//! slow shadow costs a copy of the head and a spawned task, nothing more.

use crate::config::MirrorConfig;
use axum::body::Body;
use http::request::Parts;
use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

/// A route's shadow.
#[derive(Debug)]
pub struct Mirror {
    /// The shadow's authority.
    authority: http::uri::Authority,
    /// The share of requests copied, 0 to 1.
    share: f64,
    max_in_flight: usize,
    in_flight: Arc<AtomicUsize>,
    /// How long a copy may take before it is given up.
    timeout: Duration,
    route: &'static str,
}

impl Mirror {
    /// The shadow of `config`; the error says why its URL cannot be used.
    pub fn new(config: &MirrorConfig, route: &'static str, timeout: Duration) -> Result<Self, (&'static str, String)> {
        let uri: http::Uri = config.upstream.parse().map_err(|error| ("mirror.upstream", format!("{error}")))?;
        let authority = match (uri.scheme_str(), uri.authority()) {
            (Some("http"), Some(authority)) if uri.path() == "/" || uri.path().is_empty() => authority.clone(),
            _ => return Err(("mirror.upstream", format!("{:?} must be http://HOST:PORT", config.upstream))),
        };
        if !(0.0..=100.0).contains(&config.percent) {
            return Err(("mirror.percent", "must be between 0 and 100".into()));
        }
        if config.max_in_flight == 0 {
            return Err(("mirror.max_in_flight", "must be at least 1".into()));
        }
        Ok(Self {
            authority,
            share: config.percent / 100.0,
            max_in_flight: config.max_in_flight,
            in_flight: Arc::default(),
            timeout,
            route,
        })
    }

    /// Copies the request about to go upstream (`parts`, no body) to the shadow, if it is one of
    /// the share and the shadow has room; returns at once.
    pub fn copy(&self, http: &super::client::HttpClient, parts: &Parts) {
        if self.share < 1.0 && fastrand::f64() >= self.share {
            return;
        }
        if self.in_flight.fetch_add(1, Ordering::Relaxed) >= self.max_in_flight {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            metrics::counter!("rampart_mirror_requests_total", "route" => self.route, "outcome" => "dropped")
                .increment(1);
            return;
        }
        let Some(request) = self.request(parts) else {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            return;
        };
        let (http, in_flight, timeout, route) = (http.clone(), Arc::clone(&self.in_flight), self.timeout, self.route);
        tokio::spawn(async move {
            let sent = tokio::time::timeout(timeout, async {
                let answer = http.request(request).await.map_err(|_| ())?;
                // Read to the end, so the connection can be used again.
                http_body_util::BodyExt::collect(answer.into_body()).await.map(|_| ()).map_err(|_| ())
            })
            .await;
            in_flight.fetch_sub(1, Ordering::Relaxed);
            let outcome = if matches!(sent, Ok(Ok(()))) { "sent" } else { "failed" };
            metrics::counter!("rampart_mirror_requests_total", "route" => route, "outcome" => outcome).increment(1);
        });
    }

    fn request(&self, parts: &Parts) -> Option<http::Request<Body>> {
        let path = parts.uri.path_and_query().map_or("/", http::uri::PathAndQuery::as_str);
        let uri =
            http::Uri::builder().scheme("http").authority(self.authority.clone()).path_and_query(path).build().ok()?;
        let mut request = http::Request::builder().method(parts.method.clone()).uri(uri);
        if let Some(headers) = request.headers_mut() {
            headers.clone_from(&parts.headers);
            headers.remove(http::header::HOST);
        }
        request.body(Body::empty()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirror(upstream: &str, percent: f64, max_in_flight: usize) -> Result<Mirror, &'static str> {
        let config = MirrorConfig { upstream: upstream.into(), percent, max_in_flight };
        Mirror::new(&config, "/r", Duration::from_secs(1)).map_err(|(field, _)| field)
    }

    #[test]
    fn a_shadow_needs_a_plain_http_address_a_share_and_room() {
        assert!(mirror("http://shadow:8080", 100.0, 10).is_ok());
        assert_eq!(mirror("https://shadow:8080", 100.0, 10).err(), Some("mirror.upstream"));
        assert_eq!(mirror("http://shadow:8080/path", 100.0, 10).err(), Some("mirror.upstream"));
        assert_eq!(mirror("http://shadow:8080", 101.0, 10).err(), Some("mirror.percent"));
        assert_eq!(mirror("http://shadow:8080", 50.0, 0).err(), Some("mirror.max_in_flight"));
    }

    #[test]
    fn the_copy_keeps_method_target_and_fields_but_not_the_host() {
        let shadow = mirror("http://shadow:8080", 100.0, 10).unwrap();
        let parts = http::Request::post("/a/b?c=1")
            .header("host", "front")
            .header("x-id", "7")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let copy = shadow.request(&parts).unwrap();
        assert_eq!((copy.method().as_str(), copy.uri().to_string().as_str()), ("POST", "http://shadow:8080/a/b?c=1"));
        assert_eq!(copy.headers()["x-id"], "7");
        assert!(!copy.headers().contains_key("host"));
    }
}
