//! `Upgrade` proxying on `[[routes]]` (WebSocket, and any other protocol an HTTP/1.1 client and
//! upstream agree to switch to). The handshake is a proxied request like any other (the same
//! protection stack, balancing and breakers); once the upstream answers `101`, both connections
//! are handed over and their bytes relayed both ways until either side closes, bounded by the
//! route's `[routes.websocket]`: a connection idle for `idle_timeout` is closed (close 1001), and
//! a WebSocket message longer than `max_message_bytes` closes it (close 1009), its frames metered
//! as they pass ([`frames`]). A relay belongs to no configuration generation: a reload leaves
//! every open one as it is.

pub mod frames;

use super::Route;
use crate::{
    AppState,
    client::{ClientAddr, Peer},
    config::WebSocketConfig,
    protect::protect,
};
use axum::{body::Body, response::Response};
use frames::{FrameMeter, close_frame};
use http::{HeaderMap, HeaderValue, Request, StatusCode, Version, header};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use metrics::Counter;
use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    time::Instant,
};

/// Bytes read at a time, each way.
const RELAY_BUFFER: usize = 8 * 1024;

/// Whether `request` asks to switch protocols (HTTP/1.1 `Connection: upgrade` with `Upgrade`).
pub fn is_upgrade<B>(request: &Request<B>) -> bool {
    request.version() == Version::HTTP_11
        && request.headers().contains_key(header::UPGRADE)
        && request
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// Sets the fields of a switch to `protocol` on a message whose hop-by-hop fields are gone.
pub(super) fn mark(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
}

/// Proxies an upgrade request on `route`: the handshake through the protection stack, then, on
/// `101`, a relay between the client and the upstream on a task of its own.
pub async fn forward(
    state: &AppState,
    route: &Route,
    mut request: Request<Body>,
    peer: &Peer,
    client: ClientAddr,
) -> Response {
    let from_client = hyper::upgrade::on(&mut request);
    let websocket = request
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|protocol| protocol.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let mut response = protect(state, route.guard(), Some(client.0), request, |request| {
        super::forward_upgrade_inner(state, route, request, peer)
    })
    .await;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let from_upstream = hyper::upgrade::on(&mut response);
        let relay = Relay { route: route.label, limits: route.websocket.clone(), websocket };
        tokio::spawn(relay.run(from_client, from_upstream));
    }
    response
}

/// One upgraded connection's relay.
struct Relay {
    route: &'static str,
    limits: WebSocketConfig,
    /// Whether the bytes are WebSocket frames (metered), or another protocol's (passed as they are).
    websocket: bool,
}

/// Why a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Both sides closed.
    Closed,
    /// Nothing passed for the idle timeout.
    Idle,
    /// A message over the limit, from the client or the upstream.
    TooLarge,
    /// A read or write failed.
    Failed,
}

impl End {
    fn label(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Idle => "idle",
            Self::TooLarge => "message_too_large",
            Self::Failed => "failed",
        }
    }
}

impl Relay {
    async fn run(self, from_client: OnUpgrade, from_upstream: OnUpgrade) {
        let (client, upstream) = match tokio::try_join!(from_client, from_upstream) {
            Ok(both) => both,
            Err(error) => {
                tracing::debug!(%error, route = self.route, "an upgrade did not complete");
                return;
            }
        };
        let open = metrics::gauge!("rampart_websocket_connections", "route" => self.route);
        metrics::counter!("rampart_websocket_connections_total", "route" => self.route).increment(1);
        open.increment(1.0);
        let end = self.relay(TokioIo::new(client), TokioIo::new(upstream)).await;
        open.decrement(1.0);
        tracing::debug!(route = self.route, reason = end.label(), "an upgraded connection ended");
    }

    async fn relay(
        &self,
        client: impl AsyncRead + AsyncWrite + Unpin,
        upstream: impl AsyncRead + AsyncWrite + Unpin,
    ) -> End {
        let (mut client_read, mut client_write) = tokio::io::split(client);
        let (mut upstream_read, mut upstream_write) = tokio::io::split(upstream);
        let started = Instant::now();
        let last = AtomicU64::new(0);
        let meter = || self.websocket.then(|| FrameMeter::new(self.limits.max_message_bytes));
        let counter = |direction: &'static str| metrics::counter!("rampart_websocket_messages_total", "route" => self.route, "direction" => direction);
        let end = {
            let up = Pump { meter: meter(), messages: counter("to_upstream"), started, last: &last };
            let down = Pump { meter: meter(), messages: counter("to_client"), started, last: &last };
            let both = async {
                tokio::try_join!(
                    up.run(&mut client_read, &mut upstream_write),
                    down.run(&mut upstream_read, &mut client_write)
                )
            };
            tokio::select! {
                ended = both => ended.map_or_else(|end| end, |_| End::Closed),
                () = idle(&last, started, self.limits.idle_timeout) => End::Idle,
            }
        };
        // Counted before the client hears of it, so whoever it tells sees the count.
        metrics::counter!("rampart_websocket_closed_total", "route" => self.route, "reason" => end.label())
            .increment(1);
        // The client is told why, when the gateway ends it: 1009 (message too big), 1001 (going away).
        let code = match end {
            End::TooLarge => Some(1009),
            End::Idle => Some(1001),
            End::Closed | End::Failed => None,
        };
        if let Some(code) = code.filter(|_| self.websocket) {
            let _ = client_write.write_all(&close_frame(code)).await;
        }
        let _ = client_write.shutdown().await;
        let _ = upstream_write.shutdown().await;
        end
    }
}

/// One direction of a relay.
struct Pump<'a> {
    meter: Option<FrameMeter>,
    messages: Counter,
    started: Instant,
    /// When bytes last passed either way, in milliseconds since `started`.
    last: &'a AtomicU64,
}

impl Pump<'_> {
    /// Passes bytes from `from` to `to` until `from` ends (then ends `to`'s side too).
    async fn run(mut self, from: &mut (impl AsyncRead + Unpin), to: &mut (impl AsyncWrite + Unpin)) -> Result<(), End> {
        let mut buffer = vec![0_u8; RELAY_BUFFER];
        loop {
            let read = from.read(&mut buffer).await.map_err(|_| End::Failed)?;
            if read == 0 {
                let _ = to.shutdown().await;
                return Ok(());
            }
            let since = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.last.store(since, Ordering::Relaxed);
            if let Some(meter) = &mut self.meter {
                let metered = meter.feed(&buffer[..read]).map_err(|_| End::TooLarge)?;
                self.messages.increment(metered.messages);
            }
            to.write_all(&buffer[..read]).await.map_err(|_| End::Failed)?;
        }
    }
}

/// Resolves once nothing has passed for `limit`.
async fn idle(last: &AtomicU64, started: Instant, limit: Duration) {
    loop {
        let until = started + Duration::from_millis(last.load(Ordering::Relaxed)) + limit;
        if Instant::now() >= until {
            return;
        }
        tokio::time::sleep_until(until).await;
    }
}
