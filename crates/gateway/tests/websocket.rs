//! WebSocket proxying on a real gateway process: messages pass both ways, connections stay open
//! through hot reloads, and the route's limits close a connection with the reason.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)] // a failed unwrap is a failed test

mod support;

use futures_util::{SinkExt as _, StreamExt as _};
use rampart_testkit::{Process, admin_addr, closed_port, spawn_gateway};
use reqwest::{Client, StatusCode};
use serde_json::Value;
use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};
use support::{peers::Upstream, resident_bytes, websocket::EchoUpstream};
use tokio_tungstenite::{
    connect_async,
    tungstenite::{Message, protocol::frame::coding::CloseCode},
};

/// The gateway's config: WebSocket routes to `echo`, a plain route to `shop`, and `extra` more
/// plain routes (to add and remove).
fn config(echo: &EchoUpstream, shop: &Upstream, extra: usize) -> String {
    let mut text = format!(
        "[health]\ninterval = \"200ms\"\n\n\
         [[routes]]\nprefix = \"/ws\"\nupstreams = [\"{echo}\"]\n[routes.websocket]\nmax_message_bytes = 65536\n\n\
         [[routes]]\nprefix = \"/idle\"\nupstreams = [\"{echo}\"]\n[routes.websocket]\nidle_timeout = \"300ms\"\n\n\
         [[routes]]\nprefix = \"/shop\"\nupstreams = [\"{shop}\"]\n\n",
        echo = echo.url,
        shop = shop.url,
    );
    for index in 0..extra {
        text.push_str(&format!("[[routes]]\nprefix = \"/extra-{index}\"\nupstreams = [\"{}\"]\n\n", shop.url));
    }
    text
}

fn write_config(path: &Path, text: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, text).unwrap();
    std::fs::rename(&next, path).unwrap();
}

async fn gateway(dir: &Path, text: &str) -> Process {
    let path = dir.join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    let nobody = format!("http://127.0.0.1:{}", closed_port());
    spawn_gateway(&[nobody], &["--config", path.to_str().unwrap()]).await
}

#[tokio::test]
async fn two_hundred_websockets_stay_open_through_a_hundred_reloads_and_no_request_fails() {
    let (echo, shop) = (EchoUpstream::start().await, Upstream::start("shop"));
    let dir = tempfile::tempdir().unwrap();
    let gateway = gateway(dir.path(), &config(&echo, &shop, 0)).await;
    let (address, admin, http) = (gateway.listen_addr(), admin_addr(&gateway), Client::new());

    let stop = Arc::new(AtomicBool::new(false));
    let mut sockets = Vec::new();
    for index in 0..200 {
        let (mut socket, _) = connect_async(format!("ws://{address}/ws/chat")).await.unwrap();
        let stop = Arc::clone(&stop);
        sockets.push(tokio::spawn(async move {
            let mut exchanged = 0_usize;
            while !stop.load(Ordering::Relaxed) || exchanged == 0 {
                let text = format!("{index}:{exchanged}");
                socket.send(Message::text(text.clone())).await.expect("the socket stays open");
                let echoed = socket.next().await.expect("the socket stays open").expect("a message");
                assert_eq!(echoed, Message::text(text), "each message comes back as sent");
                exchanged += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            socket.close(None).await.unwrap();
            exchanged
        }));
    }
    assert_eq!(echo.accepted(), 200);

    let failed = Arc::new(AtomicUsize::new(0));
    let requests = tokio::spawn({
        let (http, base, stop, failed) =
            (http.clone(), format!("http://{address}"), Arc::clone(&stop), Arc::clone(&failed));
        async move {
            let mut sent = 0_usize;
            while !stop.load(Ordering::Relaxed) {
                let answer = http.get(format!("{base}/shop/item")).send().await;
                if !answer.is_ok_and(|answer| answer.status() == StatusCode::OK) {
                    failed.fetch_add(1, Ordering::SeqCst);
                }
                sent += 1;
            }
            sent
        }
    });

    // 100 reloads, one every 100 ms, adding and removing routes.
    let path = dir.path().join("gateway.toml");
    let (mut warmed, mut took) = (0, Vec::new());
    for round in 1..=100 {
        write_config(&path, &config(&echo, &shop, round % 7));
        let answer = http.post(format!("http://{admin}/admin/reload")).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        let applied: Value = answer.json().await.unwrap();
        took.push(applied["took_ms"].as_f64().unwrap());
        if round == 20 {
            warmed = resident_bytes(&gateway);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let grown = resident_bytes(&gateway).saturating_sub(warmed);
    let metrics = http.get(format!("http://{admin}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("rampart_websocket_connections{route=\"/ws\"} 200"), "{metrics}");
    stop.store(true, Ordering::Relaxed);

    let mut exchanged = 0;
    for socket in sockets {
        exchanged += socket.await.expect("no WebSocket was closed under it");
    }
    let sent = requests.await.unwrap();
    let config: Value = http.get(format!("http://{admin}/admin/config")).send().await.unwrap().json().await.unwrap();
    took.sort_by(f64::total_cmp);
    eprintln!(
        "{exchanged} messages echoed on 200 WebSockets and {sent} HTTP requests during 100 reloads \
         (each took p50 {:.2} ms, max {:.2} ms); RSS grew {} KiB after the 20th",
        took[50],
        took[99],
        grown / 1024
    );
    assert_eq!(failed.load(Ordering::SeqCst), 0, "no HTTP request failed");
    assert!(config["version"].as_u64().unwrap() > 80, "the reloads applied: {}", config["version"]);
    assert!(grown < 8 << 20, "memory stays flat: grew {grown} bytes");
}

#[tokio::test]
async fn a_message_over_the_limit_or_an_idle_connection_is_closed_with_its_reason() {
    let (echo, shop) = (EchoUpstream::start().await, Upstream::start("shop"));
    let dir = tempfile::tempdir().unwrap();
    let gateway = gateway(dir.path(), &config(&echo, &shop, 0)).await;
    let address = gateway.listen_addr();

    let (mut socket, handshake) = connect_async(format!("ws://{address}/ws/big")).await.unwrap();
    assert_eq!(handshake.status(), 101);
    socket.send(Message::binary(vec![7_u8; 65536])).await.unwrap();
    assert_eq!(socket.next().await.unwrap().unwrap().len(), 65536, "a message at the limit passes");
    socket.send(Message::binary(vec![7_u8; 65537])).await.unwrap();
    match socket.next().await {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Size),
        other => panic!("expected close 1009, got {other:?}"),
    }

    // Timed from before the handshake: the relay's clock starts after it.
    let started = std::time::Instant::now();
    let (mut idle, _) = connect_async(format!("ws://{address}/idle/quiet")).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(5), idle.next()).await.unwrap() {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Away),
        other => panic!("expected close 1001, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(300), "not before the idle timeout");

    let admin = admin_addr(&gateway);
    let metrics = reqwest::get(format!("http://{admin}/metrics")).await.unwrap().text().await.unwrap();
    for expected in [
        "rampart_websocket_closed_total{route=\"/ws\",reason=\"message_too_large\"} 1",
        "rampart_websocket_closed_total{route=\"/idle\",reason=\"idle\"} 1",
        "rampart_websocket_messages_total{route=\"/ws\",direction=\"to_client\"} 1",
    ] {
        assert!(metrics.contains(expected), "{expected} in {metrics}");
    }
}
