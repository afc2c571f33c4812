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
async fn handle(state: AppState, router: Router, request: http::Request<Incoming>, peer: proxy::Client) -> Response {
    let path = request.uri().path();
    if !gateway_path(path)
        && let Some(route) = state.routes.find(path)
    {
        return proxy::forward(&state, route, request.map(Body::new), Some(&peer)).await;
    }
    let mut request = request.map(Body::new);
    request.extensions_mut().insert(ConnectInfo(peer.address));
    match router.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// Binds the public listener with `SO_REUSEPORT`, so that each serving thread can open its own
/// socket on the same address and the kernel spreads connections over them.
pub async fn bind(address: &str) -> std::io::Result<TcpListener> {
    let target = tokio::net::lookup_host(address)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, "the name resolves to no address"))?;
    reuseport_listener(target)
}

fn reuseport_listener(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.set_nodelay(true)?;
    socket.bind(address)?;
    socket.listen(4096)
}

/// Serves `listener` until `stop` on one thread per core (or `serving_threads`), each with its
/// own current-thread runtime, its own socket on the address (`SO_REUSEPORT`) and its own
/// upstream connection pool, so that a request is accepted, proxied and answered without waking
/// another thread. Then stops accepting and gives connections up to the drain timeout to finish
/// their requests.
pub async fn serve(listener: TcpListener, state: AppState, router: Router, stop: CancellationToken) {
    let threads = match state.config.serving_threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        threads => threads,
    };
    let connections = Arc::new(Semaphore::new(state.config.max_connections));
    let address = match listener.local_addr() {
        Ok(address) => address,
        Err(error) => {
            tracing::error!(%error, "the public listener has no address");
            return;
        }
    };
    let mut first = listener.into_std().ok();
    let mut handles = Vec::new();
    for index in 0..threads {
        let socket = first.take();
        let (state, router, stop, connections) =
            (state.clone(), router.clone(), stop.clone(), Arc::clone(&connections));
        let spawned = std::thread::Builder::new().name(format!("rampart-http-{index}")).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(error) => return tracing::error!(%error, "cannot start a serving thread"),
            };
            runtime.block_on(async move {
                rampart_common::runtime_stats::register(rampart_common::metrics::intern(&format!("serving-{index}")));
                let listener = match socket {
                    Some(socket) => TcpListener::from_std(socket),
                    None => reuseport_listener(address),
                };
                match listener {
                    Ok(listener) => accept_loop(listener, state, router, stop, connections).await,
                    Err(error) => tracing::error!(%error, %address, "cannot open a listening socket"),
                }
            });
        });
        match spawned {
            Ok(handle) => handles.push(handle),
            Err(error) => tracing::error!(%error, "cannot start a serving thread"),
        }
    }
    for handle in handles {
        let _ = tokio::task::spawn_blocking(move || handle.join()).await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    state: AppState,
    router: Router,
    stop: CancellationToken,
    connections: Arc<Semaphore>,
) {
    // This thread's own pool of upstream connections, driven by this thread's runtime.
    let state = state.with_http(proxy::client::new());
    let config = Arc::clone(&state.config);
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
        let (state, router, peer) = (state.clone(), router.clone(), proxy::Client::new(peer));
        let service = hyper::service::service_fn(move |request| {
            let (state, router, peer) = (state.clone(), router.clone(), peer.clone());
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
        () = graceful.shutdown() => {}
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
