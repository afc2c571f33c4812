//! The public listener: its own accept loop over hyper, for what `axum::serve` does not offer —
//! one thread per core with its own socket, HTTP/1.1 and h2c on one port, every connection
//! bounded (see [`rampart_common::http`]: silent and idle connections are closed and, at the
//! cap, shed before a new client is refused), request bodies held to a minimum pace, paths in
//! their normal form before routing, and a graceful drain on shutdown. Paths under a `[[routes]]`
//! prefix go straight to the proxy; everything else to the REST API router.

use crate::{
    AppState,
    client::ClientAddr,
    client_body::{BodyLimits, BodyProgress, ClientBody},
    path,
    problem::Problem,
    proxy,
};
use axum::{
    Router,
    body::Body,
    response::{IntoResponse as _, Response},
};
use hyper::body::{Body as _, Incoming};
use rampart_common::http::{
    connection::Connections,
    server::{self, builder},
};
use std::{net::SocketAddr, sync::Arc};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// Whether the gateway itself answers `path` (the job API and the probes), whatever the routes.
fn gateway_path(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/") || path == "/health" || path == "/ready"
}

/// The longest request target (path and query) read; a longer one is 414. Browsers, proxies and
/// CDNs rarely pass more than 8 KiB either.
const MAX_URI_BYTES: usize = 8 * 1024;

/// Puts the request's path in its normal form (see [`path`]), or says why it cannot be used.
fn normalise_uri<B>(request: &mut http::Request<B>) -> Result<(), Problem> {
    let target = request.uri().path_and_query().map_or(0, |target| target.as_str().len());
    if target > MAX_URI_BYTES {
        return Err(Problem::new(
            http::StatusCode::URI_TOO_LONG,
            crate::problem::ProblemCode::UriTooLong,
            format!("the request target is {target} bytes, over the limit of {MAX_URI_BYTES}"),
        ));
    }
    let normal = path::normalise(request.uri().path()).map_err(|error| Problem::bad_request(error.to_string()))?;
    let Some(normal) = normal else { return Ok(()) };
    let with_query = match request.uri().query() {
        Some(query) => format!("{normal}?{query}"),
        None => normal,
    };
    let mut parts = request.uri().clone().into_parts();
    parts.path_and_query =
        Some(with_query.parse().map_err(|_| Problem::bad_request("the normalised path is not a valid URI"))?);
    *request.uri_mut() = http::Uri::from_parts(parts).map_err(|_| Problem::bad_request("the URI cannot be rebuilt"))?;
    Ok(())
}

/// Where a request goes, once its path is in normal form.
pub(crate) enum Routing<'a> {
    /// To the proxy, on this route.
    Proxied(&'a proxy::Route),
    /// Nowhere: its target cannot be used, and this is the answer.
    Refused(Problem),
    /// To the API router (the API, the probes, and paths no route serves).
    Gateway,
}

/// Where `request` goes; puts its path in normal form first.
pub(crate) fn route_of<'a, B>(state: &'a AppState, request: &mut http::Request<B>) -> Routing<'a> {
    if let Err(problem) = normalise_uri(request) {
        return Routing::Refused(problem);
    }
    if gateway_path(request.uri().path()) {
        return Routing::Gateway;
    }
    state.routes.find(request).map_or(Routing::Gateway, Routing::Proxied)
}

/// Who sent a request with `headers` over `peer`'s connection (see [`ClientAddr`]).
pub(crate) fn client_addr(state: &AppState, peer: &crate::client::Peer, headers: &http::HeaderMap) -> ClientAddr {
    if state.trusted_proxies.is_empty() {
        ClientAddr(peer.address.ip().to_canonical())
    } else {
        let forwarded = headers.get_all(proxy::X_FORWARDED_FOR);
        ClientAddr(state.trusted_proxies.client(peer.address.ip(), forwarded.iter().map(|v| v.as_bytes())))
    }
}

/// Answers one request: proxied if a route claims its path, else by the API router. `thread`
/// is the serving thread's state; the request works from the generation in force as it starts.
async fn handle(
    thread: AppState,
    router: Router,
    mut request: http::Request<Incoming>,
    peer: crate::client::Peer,
) -> Response {
    let state = thread.latest();
    let client = client_addr(&state, &peer, request.headers());
    let limits = BodyLimits { idle: state.config.body_read_timeout, min_rate: state.config.min_body_rate };
    match route_of(&state, &mut request) {
        Routing::Refused(problem) => return problem.into_response(),
        Routing::Proxied(route) if proxy::upgrade::is_upgrade(&request) => {
            return Box::pin(proxy::upgrade::forward(&state, route, request.map(Body::new), &peer, client)).await;
        }
        Routing::Proxied(route) => {
            // A proxied body streams on to the upstream; its progress tells a client's fault
            // from the upstream's if the call fails.
            let (request, progress) = if request.body().is_end_stream() {
                (request.map(Body::new), None)
            } else {
                let progress = Arc::new(BodyProgress::default());
                let shared = Some(Arc::clone(&progress));
                (request.map(|body| Body::new(ClientBody::new(body, limits, shared))), Some(progress))
            };
            // Boxed: the proxy's future is large, and the connection keeps room for its
            // service's future even while idle, so an idle connection would pay for it.
            return Box::pin(proxy::forward(&state, route, request, &peer, client, progress.as_deref())).await;
        }
        Routing::Gateway => {}
    }
    let mut request = if request.body().is_end_stream() {
        request.map(Body::new)
    } else {
        request.map(|body| Body::new(ClientBody::new(body, limits, None)))
    };
    request.extensions_mut().insert(client);
    request.extensions_mut().insert(state);
    match Box::pin(router.oneshot(request)).await {
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

/// How a listener speaks: plain HTTP (HTTP/1.1 and h2c), or TLS with these certificates.
#[derive(Clone)]
pub enum Transport {
    /// HTTP/1.1 and h2c, told apart by the first bytes.
    Plain,
    /// TLS first, then HTTP/1.1 or h2 as ALPN agreed (or the first bytes say).
    Tls(Arc<rampart_common::tls::server::ReloadingServer>),
}

/// Serves `listener` until `stop` on one thread per core (or `serving_threads`), each with its
/// own current-thread runtime, its own socket on the address (`SO_REUSEPORT`) and its own
/// upstream connection pool, so that a request is accepted, proxied and answered without waking
/// another thread. Then stops accepting and gives connections up to the drain timeout to finish
/// their requests.
pub async fn serve(
    listener: TcpListener,
    name: &'static str,
    transport: Transport,
    state: AppState,
    router: Router,
    stop: CancellationToken,
) {
    let threads = match state.config.serving_threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        threads => threads,
    };
    let connections = Connections::new(name, state.config.connection_limits(), threads);
    let address = match listener.local_addr() {
        Ok(address) => address,
        Err(error) => {
            tracing::error!(%error, listener = name, "the listener has no address");
            return;
        }
    };
    let mut first = listener.into_std().ok();
    let mut handles = Vec::new();
    for index in 0..threads {
        let socket = first.take();
        let (state, router, stop, connections, transport) =
            (state.clone(), router.clone(), stop.clone(), Arc::clone(&connections), transport.clone());
        let spawned = std::thread::Builder::new().name(format!("rampart-{name}-{index}")).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(error) => return tracing::error!(%error, "cannot start a serving thread"),
            };
            runtime.block_on(async move {
                // `serving-N` for the public listener's runtimes, as dashboards know them.
                let runtime =
                    if name == "public" { format!("serving-{index}") } else { format!("serving-{name}-{index}") };
                rampart_common::runtime_stats::register(rampart_common::metrics::intern(&runtime));
                let listener = match socket {
                    Some(socket) => TcpListener::from_std(socket),
                    None => reuseport_listener(address),
                };
                match listener {
                    Ok(listener) => {
                        let serving = Serving { index, name, transport, state, router, stop, connections };
                        serving.accept_loop(listener).await;
                    }
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

/// One serving thread's share of a listener.
struct Serving {
    index: usize,
    name: &'static str,
    transport: Transport,
    state: AppState,
    router: Router,
    stop: CancellationToken,
    connections: Arc<Connections>,
}

impl Serving {
    async fn accept_loop(self, listener: TcpListener) {
        let Self { index, name, transport, state, router, stop, connections } = self;
        // This thread's own pool of upstream connections, driven by this thread's runtime.
        let state = state.with_own_upstream_pools();
        let lean = matches!(transport, Transport::Plain) && state.config.lean_proxy;
        let config = Arc::clone(&state.config);
        let builder = builder(connections.limits());
        let secure = matches!(transport, Transport::Tls(_));
        loop {
            let (stream, peer) = tokio::select! {
                () = stop.cancelled() => break,
                accepted = server::accept(&listener, name) => accepted,
            };
            let Some(registration) = connections.admit(index) else { continue };
            let (state, router, peer) = (state.clone(), router.clone(), crate::client::Peer::new(peer, secure));
            // Routes come and go with reloads: a connection takes the lean path if there are
            // some as it arrives.
            let lean = lean && !state.live().current().routes.all().is_empty();
            let lean_state = lean.then(|| (state.clone(), peer.clone()));
            let handle = move |request| handle(state.clone(), router.clone(), request, peer.clone());
            match &transport {
                Transport::Plain => match lean_state {
                    Some((state, peer)) => proxy::lean::spawn(&builder, stream, registration, state, peer, handle),
                    None => server::spawn_connection(&builder, stream, registration, handle),
                },
                Transport::Tls(tls) => {
                    server::spawn_tls_connection(&builder, stream, tls.acceptor(), registration, handle)
                }
            }
        }
        drop(listener);
        server::drain(&connections, index, config.drain_timeout).await;
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
