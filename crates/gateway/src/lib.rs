//! Rampart's gateway: the REST front door that validates requests and runs them as jobs on a
//! fleet of workers over gRPC.
//!
//! [`Gateway::bind`] opens the listeners (port 0 works, for tests) and [`Gateway::serve`] runs
//! until a shutdown signal; [`run`] does both for a binary.

pub mod admin;
pub mod admission;
pub mod api;
pub mod auth;
pub mod cli;
pub mod client;
pub mod client_body;
pub mod config;
mod console;
pub mod cors;
pub mod deadline;
pub mod endpoints;
pub mod observe;
pub mod path;
pub mod problem;
pub mod protect;
pub mod proxy;
pub mod rate_limit;
pub mod reload;
pub mod server;
pub mod state;

use anyhow::Context as _;
use axum::{
    Router,
    routing::{get, post},
};
use cli::GatewayArgs;
use config::GatewayConfig;
use http::{Method, StatusCode, Uri};
use problem::{Problem, ProblemCode};
use std::{net::SocketAddr, sync::Arc};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use state::{AppState, Components};

/// Routes of the public listener. Handlers take the [`AppState`] the front door put in the
/// request's extensions (the generation it started on), so one router serves every generation.
pub fn router() -> Router {
    Router::new()
        .route("/api/process", get(api::process::get).post(api::process::post))
        .route("/api/jobs", post(api::jobs::submit).get(api::job_admin::list).delete(api::job_admin::purge))
        .route("/api/jobs/stats", get(api::job_admin::stats))
        .route("/api/jobs/retry", post(api::job_admin::retry_many))
        .route("/api/jobs/{id}", get(api::jobs::status).delete(api::jobs::cancel))
        .route("/api/jobs/{id}/retry", post(api::job_admin::retry_one))
        .route("/api/jobs/{id}/events", get(api::jobs::events))
        .route("/api/batch", post(api::batch::submit))
        .route("/api/cron", get(api::cron::list))
        .route("/api/kinds/{kind}/pause", post(api::pauses::pause_kind))
        .route("/api/kinds/{kind}/resume", post(api::pauses::resume_kind))
        .route("/api/tenants/{tenant}/pause", post(api::pauses::pause_tenant))
        .route("/api/tenants/{tenant}/resume", post(api::pauses::resume_tenant))
        .route("/api/pauses", get(api::pauses::list))
        .route("/health", get(api::probes::live))
        .route("/ready", get(api::probes::ready))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(protect::layer))
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

/// The route templates of the API: admission gates, and what `[[auth.routes]]` may name.
pub const API_ROUTES: [&str; 14] = [
    "/api/process",
    "/api/jobs",
    "/api/jobs/stats",
    "/api/jobs/retry",
    "/api/jobs/{id}",
    "/api/jobs/{id}/retry",
    "/api/jobs/{id}/events",
    "/api/batch",
    "/api/cron",
    "/api/kinds/{kind}/pause",
    "/api/kinds/{kind}/resume",
    "/api/tenants/{tenant}/pause",
    "/api/tenants/{tenant}/resume",
    "/api/pauses",
];

/// A gateway with its listeners bound, ready to serve.
pub struct Gateway {
    state: AppState,
    listener: TcpListener,
    /// The plain-HTTP listener beside a TLS one (`[tls] plain_listen`).
    plain_listener: Option<TcpListener>,
    tls: Option<Arc<rampart_common::tls::server::ReloadingServer>>,
    /// SIGHUP, caught from `bind` on (it reloads the configuration).
    hangup: Option<tokio::signal::unix::Signal>,
    admin_listener: TcpListener,
    admin_access: rampart_common::http::admin_access::AdminAccess,
}

impl Gateway {
    /// Binds the public and admin listeners, resolves every endpoint and checks its health once,
    /// so that the gateway serves from its first request. It cannot reload its configuration
    /// (see [`Gateway::bind_reloadable`]).
    pub async fn bind(config: GatewayConfig) -> anyhow::Result<Self> {
        Self::bind_reloadable(config, None).await
    }

    /// [`Gateway::bind`], reloading its configuration from `source` on SIGHUP, a change of the
    /// config file and `POST /admin/reload` (see [`reload`]).
    pub async fn bind_reloadable(config: GatewayConfig, source: Option<reload::Source>) -> anyhow::Result<Self> {
        let listener =
            server::bind(&config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
        let admin_listener = TcpListener::bind(&config.admin_listen)
            .await
            .with_context(|| format!("cannot listen on {} (admin)", config.admin_listen))?;
        let admin_access = rampart_common::http::admin_access::AdminAccess::new(
            admin_listener.local_addr()?,
            config.admin_token.as_deref(),
            config.admin_token_file.as_deref(),
        )?;
        let (tls, plain_listener) = match &config.tls {
            Some(tls) => {
                let server = rampart_common::tls::server::ReloadingServer::new(tls.files(), "public")
                    .context("cannot use the [tls] certificates")?;
                let plain = match &tls.plain_listen {
                    Some(address) => Some(
                        server::bind(address).await.with_context(|| format!("cannot listen on {address} (plain)"))?,
                    ),
                    None => None,
                };
                (Some(Arc::new(server)), plain)
            }
            None => (None, None),
        };
        rampart_common::metrics::install()?;
        let pools = rampart_jobs::workers::Pools::new(&rampart_jobs::workers::PoolsConfig {
            workers: &config.workers,
            balance: config.balance,
            pools: &config.pools,
            outlier: &config.outlier,
            breaker: &config.breaker,
            link: rampart_jobs::workers::Link {
                message_limit: rampart_proto::limits::message_bytes(config.max_body_bytes),
                tls: match &config.worker_tls {
                    Some(tls) => {
                        Some(tls.client().map_err(|(key, reason)| anyhow::anyhow!("invalid {key}: {reason}"))?)
                    }
                    None => None,
                },
            },
        });
        let pools = Arc::new(pools);
        let retry_budget = Arc::new(rampart_balance::retry::RetryBudget::new(&config.retry));
        let settings = rampart_jobs::durable::Settings {
            store: config.store.clone(),
            jobs: config.jobs.clone(),
            retry: config.retry.clone(),
            cron: config.cron.clone(),
        };
        let jobs = rampart_jobs::durable::Jobs::open(settings, Arc::clone(&pools), Arc::clone(&retry_budget))
            .await
            .context("cannot open the job store")?;
        let shared = state::Shared { pools, retry_budget, stats: Arc::new(observe::Stats::new()), jobs };
        let first = Components::assemble(config, 1, &shared, None).await?;
        metrics::gauge!("rampart_config_version").set(1.0);
        let state = AppState::new(reload::Live::new(first, source, tls.clone()));
        endpoints::first_round(&state).await;
        // Caught from here on: until a process catches SIGHUP, the signal ends it.
        let hangup = rampart_common::tls::server::hangup();
        Ok(Self { state, listener, plain_listener, tls, hangup, admin_listener, admin_access })
    }

    /// The public listener's address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The plain-HTTP listener's address, when TLS is on and `[tls] plain_listen` is set.
    pub fn plain_addr(&self) -> Option<SocketAddr> {
        self.plain_listener.as_ref().and_then(|listener| listener.local_addr().ok())
    }

    /// The admin listener's address.
    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.admin_listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then stops accepting, finishes the requests in flight
    /// (up to the drain timeout) and returns.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Self { state, listener, plain_listener, tls, hangup, admin_listener, admin_access } = self;
        let stop = CancellationToken::new();
        let mut watchers = endpoints::watch_pools(&state, &stop);
        if let Some(tls) = &tls {
            // SIGHUP reloads the whole configuration, certificates included; this watches the files.
            watchers.spawn(Arc::clone(tls).watch(None, stop.clone()));
        }
        state.live().start(&state, hangup, &stop).await;
        tokio::spawn(metrics_upkeep(stop.clone()));
        let address = listener.local_addr().map(rampart_common::net::advertised).unwrap_or_default();
        let engine = state.jobs.start(stop.clone(), &address).await;
        let admin = tokio::spawn(rampart_common::http::server::serve(
            admin_listener,
            admin_access.guard(admin::router(
                state.clone(),
                console::Console::start(state.clone(), admin_access.clone(), &stop),
            )),
            "admin",
            state.config.connection_limits().for_admin(),
            std::time::Duration::from_secs(1),
            stop.clone().cancelled_owned(),
        ));
        let public_stop = CancellationToken::new();
        tokio::spawn({
            // Cancels when dropped, so the server stops even if this task is torn down.
            let stop_serving = public_stop.clone().drop_guard();
            async move {
                shutdown.await;
                drop(stop_serving);
            }
        });
        let transport = tls.map_or(server::Transport::Plain, server::Transport::Tls);
        let plain = plain_listener.map(|plain| {
            let serving =
                server::serve(plain, "plain", server::Transport::Plain, state.clone(), router(), public_stop.clone());
            tokio::spawn(serving)
        });
        server::serve(listener, "public", transport, state.clone(), router(), public_stop).await;
        if let Some(plain) = plain {
            plain.await.context("the plain listener panicked")?;
        }
        stop.cancel();
        engine.drain(state.config.drain_timeout).await;
        admin.await.context("admin task panicked")?;
        while let Some(ended) = watchers.join_next().await {
            ended.context("an endpoint watcher panicked")?;
        }
        state.live().stopped().await;
        Ok(())
    }
}

/// Drains the metrics recorder's histogram buffers every few seconds, so memory stays flat
/// however rarely `/metrics` is scraped.
async fn metrics_upkeep(stop: CancellationToken) {
    use rampart_common::shutdown::{Every, FirstTick};
    let mut every = Every::new(std::time::Duration::from_secs(5), FirstTick::Now, stop);
    while every.tick().await {
        rampart_common::metrics::upkeep();
    }
}

/// Runs a gateway process until SIGINT or SIGTERM (or, with `--exit-with-parent`, until
/// standard input closes). Prints `rampart-gateway listening on ADDR (admin ADDR)` on standard
/// output once it accepts requests (with `(https)` after the address under `[tls]`, and
/// `(plain ADDR)` for its plain-HTTP listener).
pub async fn run(args: GatewayArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    rampart_common::process::raise_open_files_limit();
    rampart_common::runtime_stats::register("main");
    let file = args.config.clone();
    let source = reload::Source {
        load: Box::new({
            let args = args.clone();
            move || args.config()
        }),
        file,
    };
    let gateway = Gateway::bind_reloadable(config.clone(), Some(source)).await?;
    let address = gateway.local_addr()?;
    let admin = gateway.admin_addr()?;
    let scheme = if config.tls.is_some() { "https" } else { "http" };
    tracing::info!(%address, scheme, %admin, workers = ?config.workers, "gateway ready");
    let shutdown = rampart_common::process::stop_requested(args.exit_with_parent);
    let plain = gateway.plain_addr().map(|plain| format!(" (plain {plain})")).unwrap_or_default();
    let tls = if config.tls.is_some() { " (https)" } else { "" };
    println!("rampart-gateway listening on {address}{tls}{plain} (admin {admin})");
    gateway.serve(shutdown).await?;
    tracing::info!("gateway stopped");
    Ok(())
}
