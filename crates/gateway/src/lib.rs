//! Rampart's gateway: the REST front door that validates requests and runs them as jobs on a
//! fleet of workers over gRPC.
//!
//! [`Gateway::bind`] opens the listeners (port 0 works, for tests) and [`Gateway::serve`] runs
//! until a shutdown signal; [`run`] does both for a binary.

pub mod admin;
pub mod api;
pub mod backends;
pub mod cli;
pub mod config;
pub mod dispatch;
pub mod health_check;
pub mod observe;
pub mod pools;
pub mod problem;
pub mod rate_limit;

use anyhow::Context as _;
use axum::{Router, routing::get};
use cli::GatewayArgs;
use config::GatewayConfig;
use http::{Method, StatusCode, Uri};
use problem::{Problem, ProblemCode};
use std::{net::SocketAddr, sync::Arc};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The gateway's configuration.
    pub config: Arc<GatewayConfig>,
    /// The worker pools and their endpoints.
    pub pools: Arc<pools::Pools>,
    /// The rate limiters, when `[rate_limit]` is configured.
    pub rate_limits: Option<Arc<rate_limit::RateLimits>>,
    /// Running totals for the admin pages.
    pub stats: Arc<observe::Stats>,
}

/// Routes of the public listener.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/process", get(api::process::get).post(api::process::post))
        .route("/health", get(api::health::live))
        .route("/ready", get(api::health::ready))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Layers run outside-in in reverse order of these calls: metrics see every answer,
        // rate-limited ones included.
        .layer(axum::middleware::from_fn_with_state(state.clone(), rate_limit::limit))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe::track))
        .with_state(state)
}

/// The answer for a path no route serves.
async fn not_found(uri: Uri) -> Problem {
    Problem::new(StatusCode::NOT_FOUND, ProblemCode::NotFound, format!("no route serves {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ProblemCode::MethodNotAllowed,
        format!("{} does not accept {method}", uri.path()),
    )
}

/// A gateway with its listeners bound, ready to serve.
pub struct Gateway {
    state: AppState,
    listener: TcpListener,
    admin_listener: TcpListener,
}

impl Gateway {
    /// Binds the public and admin listeners and prepares the worker endpoints.
    pub async fn bind(config: GatewayConfig) -> anyhow::Result<Self> {
        let listener =
            TcpListener::bind(&config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
        let admin_listener = TcpListener::bind(&config.admin_listen)
            .await
            .with_context(|| format!("cannot listen on {} (admin)", config.admin_listen))?;
        rampart_common::metrics::install()?;
        let pools = pools::Pools::new(&config).context("invalid worker URL")?;
        let rate_limits = match &config.rate_limit {
            Some(limits) => Some(Arc::new(rate_limit::RateLimits::new(limits).context("invalid rate limit")?)),
            None => None,
        };
        let state = AppState {
            config: Arc::new(config),
            pools: Arc::new(pools),
            rate_limits,
            stats: Arc::new(observe::Stats::new()),
        };
        Ok(Self { state, listener, admin_listener })
    }

    /// The public listener's address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The admin listener's address.
    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.admin_listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then finishes the requests in flight and returns.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Self { state, listener, admin_listener } = self;
        let stop = CancellationToken::new();
        let health =
            tokio::spawn(health_check::run(Arc::clone(&state.pools), state.config.health_check_interval, stop.clone()));
        tokio::spawn(metrics_upkeep(stop.clone()));
        let admin = axum::serve(admin_listener, admin::router(state.clone()))
            .with_graceful_shutdown(stop.clone().cancelled_owned());
        let admin = tokio::spawn(async move { admin.await });
        let public = axum::serve(listener, router(state).into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown({
                let stop = stop.clone();
                async move {
                    shutdown.await;
                    stop.cancel();
                }
            });
        let served = public.await.context("public listener failed");
        stop.cancel();
        admin.await.context("admin task panicked")?.context("admin listener failed")?;
        health.await.context("health checker panicked")?;
        served
    }
}

/// Drains the metrics recorder's histogram buffers every few seconds, so memory stays flat
/// however rarely `/metrics` is scraped.
async fn metrics_upkeep(stop: CancellationToken) {
    let mut ticker = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => rampart_common::metrics::upkeep(),
        }
    }
}

/// Runs a gateway process until SIGINT or SIGTERM (or, with `--exit-with-parent`, until
/// standard input closes). Prints `rampart-gateway listening on ADDR (admin ADDR)` on standard
/// output once it accepts requests.
pub async fn run(args: GatewayArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    rampart_common::process::raise_open_files_limit();
    let gateway = Gateway::bind(config.clone()).await?;
    let address = gateway.local_addr()?;
    let admin = gateway.admin_addr()?;
    tracing::info!(%address, %admin, workers = ?config.workers, "gateway ready");
    let shutdown = rampart_common::process::stop_requested(args.exit_with_parent);
    println!("rampart-gateway listening on {address} (admin {admin})");
    gateway.serve(shutdown).await?;
    tracing::info!("gateway stopped");
    Ok(())
}
