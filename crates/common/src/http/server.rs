//! Serving HTTP/1.1 and h2c on a listener with every connection bounded: the hardened hyper
//! settings every Rampart listener uses, and a complete server for the small listeners (admin,
//! metrics) that need no more than an axum router.

use super::{
    connection::{ConnectionLimits, Connections, GuardedBody, Registration, drive},
    io::ProblemIo,
};
use axum::{Router, body::Body, response::Response};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
};
use tower::ServiceExt as _;

/// The largest request head (request line and header fields) read; longer ones get 431.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// An HTTP/1.1 + h2c connection builder held to `limits`: header read timeout, head size (and
/// hyper's own cap of 100 header fields, left at its default because that is its fast path),
/// HTTP/2 streams per connection, header list size and reset-stream limits (the
/// rapid-reset and CONTINUATION-flood defences), and keep-alive pings.
pub fn builder(limits: &ConnectionLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_streams_per_connection)
        .max_header_list_size(u32::try_from(MAX_HEAD_BYTES).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(Some(20))
        .max_local_error_reset_streams(Some(256))
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

/// The next connection on `listener`; an accept that fails (out of file descriptors, say) is
/// logged and tried again after a moment rather than in a spin.
pub async fn accept(listener: &TcpListener, name: &'static str) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                return (stream, peer);
            }
            Err(error) => {
                tracing::warn!(%error, listener = name, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves one admitted connection on a task of its own until it ends: each request goes to
/// `handle`, and counts in flight on the connection until its answer has been sent.
pub fn spawn_connection<H, F>(
    builder: &auto::Builder<TokioExecutor>,
    stream: TcpStream,
    registration: Registration,
    handle: H,
) where
    H: Fn(http::Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    tokio::spawn(serve_io(builder, stream, registration, handle));
}

/// Like [`spawn_connection`], over TLS: the handshake comes first, on the connection's own task,
/// and must end within the header read timeout (a client that opens a socket and says nothing
/// holds it no longer over TLS than over plain HTTP); a connection the listener evicts or drains
/// meanwhile is closed.
pub fn spawn_tls_connection<H, F>(
    builder: &auto::Builder<TokioExecutor>,
    stream: TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    registration: Registration,
    handle: H,
) where
    H: Fn(http::Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    let builder = builder.clone();
    tokio::spawn(async move {
        let tracked = Arc::clone(registration.connection());
        let timeout = registration.limits().header_read_timeout;
        let listener = registration.listener();
        let handshake = tokio::select! {
            handshake = tokio::time::timeout(timeout, acceptor.accept(stream)) => handshake,
            () = tracked.close_requested() => return,
        };
        match handshake {
            Ok(Ok(tls)) => serve_io(&builder, tls, registration, handle).await,
            Ok(Err(error)) => {
                metrics::counter!("rampart_tls_handshake_errors_total", "listener" => listener).increment(1);
                tracing::debug!(%error, listener, "TLS handshake failed");
            }
            Err(_) => {
                metrics::counter!("rampart_connections_closed_total", "listener" => listener, "reason" => "silent")
                    .increment(1);
            }
        }
    });
}

/// The task that serves one connection over `io` with hyper until it ends, bounded like every
/// other (see [`drive`]); for a connection some other reader began (the proxy's lean path hands
/// over what it does not serve itself).
pub fn serve_io<S, H, F>(
    builder: &auto::Builder<TokioExecutor>,
    io: S,
    registration: Registration,
    handle: H,
) -> impl Future<Output = ()> + Send + 'static
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(http::Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    let tracked = Arc::clone(registration.connection());
    let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
        let guard = tracked.begin_request();
        let answer = handle(request);
        async move { Ok::<_, Infallible>(answer.await.map(|body| GuardedBody::new(body, guard))) }
    });
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(ProblemIo::new(io)), service).into_owned();
    async move {
        drive(connection, |connection| connection.graceful_shutdown(), &registration).await;
    }
}

/// After a listener stops accepting: asks the connections of serving thread `shard` to finish
/// and close, and waits up to `drain` for them.
pub async fn drain(connections: &Connections, shard: usize, drain: Duration) {
    connections.drain(shard);
    if !connections.drained(shard, drain).await {
        tracing::warn!(timeout_ms = drain.as_millis(), "connections still open after the drain timeout");
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets the requests in flight
/// finish for up to `drain`. Every connection is bounded as `limits` say; hyper's own error
/// answers are problem details; a client that goes away cancels its request.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    name: &'static str,
    limits: ConnectionLimits,
    drain_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let connections = Connections::new(name, limits, 1);
    let builder = builder(connections.limits());
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = accept(&listener, name) => accepted,
        };
        let Some(registration) = connections.admit(0) else { continue };
        let router = router.clone();
        spawn_connection(&builder, stream, registration, move |request| {
            let router = router.clone();
            async move {
                match router.oneshot(request.map(Body::new)).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            }
        });
    }
    drop(listener);
    drain(&connections, 0, drain_timeout).await;
}
