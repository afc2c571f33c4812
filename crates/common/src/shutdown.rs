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

/// When [`Every`] first ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstTick {
    /// At once.
    Now,
    /// One period from now.
    AfterOnePeriod,
}

/// A ticker that ends at a stop signal, for work done every so often until shutdown:
/// `while every.tick().await { ... }`. Work that takes longer than the period delays the next
/// tick rather than making ticks bunch up.
#[derive(Debug)]
pub struct Every {
    ticker: tokio::time::Interval,
    stop: tokio_util::sync::CancellationToken,
}

impl Every {
    /// Ticks every `period`, starting as `first` says, until `stop` is cancelled.
    pub fn new(period: std::time::Duration, first: FirstTick, stop: tokio_util::sync::CancellationToken) -> Self {
        let start = match first {
            FirstTick::Now => tokio::time::Instant::now(),
            FirstTick::AfterOnePeriod => tokio::time::Instant::now() + period,
        };
        let mut ticker = tokio::time::interval_at(start, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self { ticker, stop }
    }

    /// Waits for the next tick: true then, false once the stop signal has come.
    pub async fn tick(&mut self) -> bool {
        tokio::select! {
            () = self.stop.cancelled() => false,
            _ = self.ticker.tick() => true,
        }
    }
}
