//! The public listener: its own accept loop over hyper, for what `axum::serve` does not offer —
//! a cap on connections, a deadline for request headers (slowloris), HTTP/1.1 and h2c on one
//! port, and a graceful drain on shutdown. Paths under a `[[routes]]` prefix go straight to the
//! proxy; everything else to the REST API router.

use crate::{AppState, proxy};
use axum::{Router, body::Body, extract::ConnectInfo, response::Response};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
};
use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// Whether the gateway itself answers `path` (the job API and the probes), whatever the routes.
fn gateway_path(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/") || path == "/health" || path == "/ready"
}

/// Answers one request: proxied if a route claims its path, else by the API router.
async fn handle(state: AppState, router: Router, request: http::Request<Incoming>, peer: SocketAddr) -> Response {
    let path = request.uri().path();
    if !gateway_path(path)
        && let Some(route) = state.routes.find(path)
    {
        return proxy::forward(&state, route, request.map(Body::new), Some(peer)).await;
    }
    let mut request = request.map(Body::new);
    request.extensions_mut().insert(ConnectInfo(peer));
    match router.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// Serves `listener` until `stop`, then stops accepting and gives connections up to the drain
/// timeout to finish the requests they carry.
pub async fn serve(listener: TcpListener, state: AppState, router: Router, stop: CancellationToken) {
    let config = Arc::clone(&state.config);
    let connections = Arc::new(Semaphore::new(config.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(config.header_read_timeout).keep_alive(true);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(Some(Duration::from_secs(20)));
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors or the like: wait a moment rather than spin.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            metrics::counter!("rampart_rejections_total", "reason" => "connection_limit").increment(1);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (state, router) = (state.clone(), router.clone());
        let service = hyper::service::service_fn(move |request| {
            let (state, router) = (state.clone(), router.clone());
            async move { Ok::<_, Infallible>(handle(state, router, request, peer).await) }
        });
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("every connection finished its requests"),
        () = tokio::time::sleep(config.drain_timeout) => {
            tracing::warn!(timeout_ms = config.drain_timeout.as_millis(), "connections still busy after the drain timeout");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_and_probes_are_never_proxied() {
        for path in ["/api", "/api/process", "/api/jobs/1", "/health", "/ready"] {
            assert!(gateway_path(path), "{path}");
        }
        for path in ["/", "/apix", "/healthz", "/app/api/process"] {
            assert!(!gateway_path(path), "{path}");
        }
    }
}
