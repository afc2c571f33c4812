//! A WebSocket upstream run inside the test process: `GET /health` is 200, and any request that
//! asks to upgrade to `websocket` is accepted and every message it sends is echoed back. Real
//! sockets, a real handshake (tungstenite), served by axum over hyper.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use axum::{Router, body::Body, extract::Request, response::Response, routing::get};
use futures_util::{SinkExt as _, StreamExt as _};
use hyper_util::rt::TokioIo;
use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};
use tokio::net::TcpListener;
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{Message, handshake::derive_accept_key, protocol::Role},
};

/// The echo upstream; it stops with the test's runtime.
pub(crate) struct EchoUpstream {
    pub(crate) url: String,
    /// WebSocket connections it accepted.
    pub(crate) accepted: Arc<AtomicUsize>,
}

impl EchoUpstream {
    pub(crate) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&accepted);
        let app = Router::new()
            .route("/health", get(|| async { "ok" }))
            .fallback(move |request: Request| upgrade(request, Arc::clone(&counted)));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, accepted }
    }

    pub(crate) fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Accepts the upgrade and echoes on a task of its own.
async fn upgrade(mut request: Request, accepted: Arc<AtomicUsize>) -> Response {
    let Some(key) = request.headers().get("sec-websocket-key").cloned() else {
        return Response::builder().status(400).body(Body::from("not a WebSocket handshake")).unwrap();
    };
    let upgraded = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let Ok(upgraded) = upgraded.await else { return };
        accepted.fetch_add(1, Ordering::SeqCst);
        let mut socket = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(Ok(message)) = socket.next().await {
            if matches!(message, Message::Text(_) | Message::Binary(_)) && socket.send(message).await.is_err() {
                return;
            }
        }
    });
    Response::builder()
        .status(101)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-accept", derive_accept_key(key.as_bytes()))
        .body(Body::empty())
        .unwrap()
}
