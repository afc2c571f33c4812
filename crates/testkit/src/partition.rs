//! A TCP relay that a test can cut, as a network partition does: while cut, no byte passes in
//! either direction and new connections hang unanswered, but nothing is closed or reset, so the
//! processes on either side see only silence (the hard case: no error arrives, only timeouts).
//! Restored, held bytes flow again on the old connections and new ones are relayed.

#![allow(clippy::expect_used)]

use std::{net::SocketAddr, sync::Arc};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
};

/// A relay from a loopback port to `upstream`.
pub struct Partition {
    /// Where to connect instead of the upstream.
    pub addr: SocketAddr,
    cut: Arc<watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Partition {
    /// Starts relaying to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a relay port");
        let addr = listener.local_addr().expect("the relay's address");
        let cut = Arc::new(watch::Sender::new(false));
        let flag = Arc::clone(&cut);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, upstream, flag.subscribe()));
            }
        });
        Self { addr, cut, task }
    }

    /// Cuts the network: everything stops, nothing is closed.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Restores the network.
    pub fn restore(&self) {
        self.cut.send_replace(false);
    }
}

async fn relay(client: TcpStream, upstream: SocketAddr, mut cut: watch::Receiver<bool>) {
    if wait_restored(&mut cut).await.is_err() {
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else { return };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = tokio::spawn(pump(client_read, server_write, cut.clone()));
    pump(server_read, client_write, cut).await;
    up.abort();
}

/// Copies one direction, holding every chunk while the network is cut.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut cut: watch::Receiver<bool>,
) {
    let mut buffer = vec![0_u8; 64 * 1024];
    loop {
        if wait_restored(&mut cut).await.is_err() {
            return;
        }
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            // Cut while waiting: stop reading, so the sender's bytes pile up unread.
            changed = cut.wait_for(|cut| *cut) => match changed {
                Ok(_) => continue,
                Err(_) => return,
            },
        };
        let Ok(read) = read else { return };
        if read == 0 {
            let _ = to.shutdown().await;
            return;
        }
        if wait_restored(&mut cut).await.is_err() || to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

async fn wait_restored(cut: &mut watch::Receiver<bool>) -> Result<(), watch::error::RecvError> {
    cut.wait_for(|cut| !*cut).await.map(drop)
}
