//! Waiting for the operator's request to stop.

use std::future::Future;

/// Installs handlers for SIGINT (Ctrl-C) and SIGTERM now, and returns a future that resolves
/// when either arrives.
///
/// Call it before announcing readiness: from then on a stop request is a graceful shutdown
/// rather than the default action of killing the process. A handler that cannot be installed is
/// logged and that signal is then ignored.
pub fn signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let install = |kind: SignalKind, name: &'static str| {
        signal(kind).map_err(|error| tracing::warn!(%error, "cannot listen for {name}")).ok()
    };
    let mut interrupt = install(SignalKind::interrupt(), "SIGINT");
    let mut terminate = install(SignalKind::terminate(), "SIGTERM");
    async move {
        let interrupted = async {
            match interrupt.as_mut() {
                Some(stream) => stream.recv().await,
                None => std::future::pending().await,
            }
        };
        let terminated = async {
            match terminate.as_mut() {
                Some(stream) => stream.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = interrupted => tracing::info!("received SIGINT, shutting down"),
            _ = terminated => tracing::info!("received SIGTERM, shutting down"),
        }
    }
}
