//! Running a worker process: bind, serve the worker and health services, drain on request.

use crate::{Engine, Registry, WorkerArgs, WorkerService};
use anyhow::Context as _;
use rampart_proto::v1::worker_server::WorkerServer;
use std::{sync::Arc, time::Duration};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

/// How long connections may stay open once every job has ended (long-lived streams such as health
/// watches never end by themselves).
const CLOSE_GRACE: Duration = Duration::from_millis(500);

use rampart_proto::health::CPU_POOL as CPU_POOL_HEALTH;

/// How often the CPU pool's health is looked at.
const CPU_HEALTH_EVERY: Duration = Duration::from_millis(200);

/// Serves `service` and `grpc.health.v1` on `listener` until `shutdown` resolves, then drains.
///
/// Draining: health turns NOT_SERVING and the server stops taking connections and streams
/// (HTTP/2 GOAWAY, so callers move to other workers knowing these calls never started); jobs
/// already running get `drain_timeout` to finish, then are cancelled and answered `ABORTED`.
pub async fn serve(
    listener: TcpListener,
    service: WorkerService,
    engine: Arc<Engine>,
    drain_timeout: Duration,
    tls: Option<tonic::transport::ServerTlsConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<WorkerServer<WorkerService>>().await;
    health.set_service_status(CPU_POOL_HEALTH, tonic_health::ServingStatus::Serving).await;
    tokio::spawn(report_cpu_pool(health.clone(), Arc::downgrade(&engine)));
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let drained = CancellationToken::new();
    let drain = {
        let (drained, engine) = (drained.clone(), Arc::clone(&engine));
        async move {
            shutdown.await;
            // Refuse new jobs before telling anyone: a caller that sees NOT_SERVING and still
            // sends a job gets "draining, not started", never a job that starts after the news.
            engine.start_draining();
            health.set_not_serving::<WorkerServer<WorkerService>>().await;
            health.set_service_status("", tonic_health::ServingStatus::NotServing).await;
            tracing::info!(running = engine.active(), timeout_ms = drain_timeout.as_millis(), "draining");
            tokio::spawn(async move {
                let report = engine.drain(drain_timeout).await;
                if report.finished_in_time {
                    tracing::info!("drained: every running job finished");
                } else {
                    tracing::warn!(cancelled = report.cancelled, "drain timeout passed; cancelled the remaining jobs");
                }
                drained.cancel();
            });
        }
    };
    let limit = service.message_limit();
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    let server = builder
        .add_service(health_service)
        .add_service(WorkerServer::new(service).max_decoding_message_size(limit).max_encoding_message_size(limit))
        .serve_with_incoming_shutdown(incoming, drain);
    tokio::pin!(server);
    tokio::select! {
        served = &mut server => served,
        () = async {
            drained.cancelled().await;
            tokio::time::sleep(CLOSE_GRACE).await;
        } => {
            tracing::info!("every job has ended; closing the connections still open");
            Ok(())
        }
    }
}

/// Keeps [`CPU_POOL_HEALTH`] in step with whether the CPU pool takes jobs, for as long as the
/// engine lives.
async fn report_cpu_pool(health: tonic_health::server::HealthReporter, engine: std::sync::Weak<Engine>) {
    let mut reported = true;
    loop {
        tokio::time::sleep(CPU_HEALTH_EVERY).await;
        let Some(engine) = engine.upgrade() else { return };
        let [_, cpu] = engine.pools();
        if cpu.accepting == reported {
            continue;
        }
        reported = cpu.accepting;
        if cpu.accepting {
            tracing::info!("the CPU pool takes jobs again: its abandoned jobs ended");
            health.set_service_status(CPU_POOL_HEALTH, tonic_health::ServingStatus::Serving).await;
        } else {
            tracing::warn!(
                abandoned_running = cpu.abandoned_running,
                "the CPU pool takes no jobs: abandoned jobs hold its cores"
            );
            health.set_service_status(CPU_POOL_HEALTH, tonic_health::ServingStatus::NotServing).await;
        }
    }
}

/// Runs a worker process with `registry`'s kinds until SIGINT or SIGTERM (or, with
/// `--exit-with-parent`, until standard input closes), then drains. Prints
/// `rampart-worker listening on ADDR` on standard output once it accepts calls.
pub async fn run(args: WorkerArgs, registry: Registry) -> anyhow::Result<()> {
    rampart_common::process::raise_open_files_limit();
    rampart_common::runtime_stats::register("main");
    rampart_common::metrics::install()?;
    let tls = tls_config(&args)?;
    let listener =
        TcpListener::bind(&args.listen).await.with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr().context("cannot read the bound address")?;
    let admin_listener = TcpListener::bind(&args.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {} (admin)", args.admin_listen))?;
    let admin = admin_listener.local_addr().context("cannot read the admin address")?;
    let admin_access = rampart_common::http::admin_access::AdminAccess::new(
        admin,
        args.admin_token.as_deref(),
        args.admin_token_file.as_deref(),
    )?;
    let name = match args.name.clone() {
        Some(name) => name,
        None => {
            let host = rampart_common::net::host_name().unwrap_or_else(|| "worker".into());
            format!("{host}:{}", address.port())
        }
    };
    let config = args.engine_config();
    let engine = Arc::new(Engine::start(registry, &config).context("cannot start the CPU pool")?);
    tracing::info!(%address, %admin, %name, ?config, kinds = ?engine.registry().kinds(), "worker ready");
    let shutdown = rampart_common::process::stop_requested(args.exit_with_parent);
    // The admin listener lives as long as the process: metrics stay readable while it drains.
    let admin_router = admin_access.guard(crate::observe::admin_router(Arc::clone(&engine)));
    tokio::spawn(rampart_common::http::server::serve(
        admin_listener,
        admin_router,
        "admin",
        rampart_common::http::connection::ConnectionLimits::default().for_admin(),
        Duration::from_secs(1),
        std::future::pending(),
    ));
    println!("rampart-worker listening on {address} (admin {admin})");
    let service = WorkerService::new(Arc::clone(&engine), name).with_message_limit(args.max_message_bytes);
    serve(listener, service, engine, args.drain_timeout, tls, shutdown).await.context("worker server failed")?;
    tracing::info!("worker stopped");
    Ok(())
}

/// The gRPC listener's TLS, when `--tls-cert` is given: its certificate, and the CA whose
/// client certificates it requires.
fn tls_config(args: &WorkerArgs) -> anyhow::Result<Option<tonic::transport::ServerTlsConfig>> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else { return Ok(None) };
    let read = |path: &std::path::Path| std::fs::read(path).with_context(|| format!("cannot read {}", path.display()));
    let mut tls = tonic::transport::ServerTlsConfig::new()
        .identity(tonic::transport::Identity::from_pem(read(cert)?, read(key)?));
    if let Some(ca) = &args.tls_client_ca {
        tls = tls.client_ca_root(tonic::transport::Certificate::from_pem(read(ca)?));
    }
    Ok(Some(tls))
}
