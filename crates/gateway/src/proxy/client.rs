//! The gateway's pooled HTTP/1.1 client for upstreams: keep-alive connections reused across
//! requests, no Nagle delay.

use axum::body::Body;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use std::time::Duration;

/// A client shared by every route (and by the upstream health checks).
pub type HttpClient = Client<HttpConnector, Body>;

/// Idle connections kept per upstream: enough for a busy route, bounded so a burst does not
/// leave thousands of sockets open.
const MAX_IDLE_PER_UPSTREAM: usize = 512;

/// A client with pooled keep-alive connections.
pub fn new() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(1)));
    connector.set_keepalive(Some(Duration::from_secs(60)));
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(MAX_IDLE_PER_UPSTREAM)
        .build(connector)
}

/// Asks an upstream's `GET /health` whether it is healthy: any 2xx is.
#[derive(Clone)]
pub struct UpstreamProbe(pub HttpClient);

impl rampart_balance::checks::Probe for UpstreamProbe {
    async fn probe(&self, endpoint: &rampart_balance::endpoint::Endpoint) -> Result<(), String> {
        let uri = format!("{}/health", endpoint.url());
        let request = http::Request::get(uri).body(Body::empty()).map_err(|error| error.to_string())?;
        match self.0.request(request).await {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(format!("GET /health answered {}", response.status())),
            Err(error) => Err(error.to_string()),
        }
    }
}
