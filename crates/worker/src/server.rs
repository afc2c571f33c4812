//! Running a worker process: bind, serve the worker and health services, stop on request.

use crate::{Engine, Registry, WorkerArgs, WorkerService};
use anyhow::Context as _;
use rampart_proto::v1::worker_server::WorkerServer;
use std::sync::Arc;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

/// Serves `service` and `grpc.health.v1` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    service: WorkerService,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<WorkerServer<WorkerService>>().await;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(WorkerServer::new(service))
        .serve_with_incoming_shutdown(incoming, async {
            shutdown.await;
            health.set_not_serving::<WorkerServer<WorkerService>>().await;
        })
        .await
}

/// Runs a worker process with `registry`'s kinds until SIGINT or SIGTERM (or, with
/// `--exit-with-parent`, until standard input closes). Prints `rampart-worker listening on ADDR`
/// on standard output once it accepts calls.
pub async fn run(args: WorkerArgs, registry: Registry) -> anyhow::Result<()> {
    rampart_common::process::raise_open_files_limit();
    let listener =
        TcpListener::bind(&args.listen).await.with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr().context("cannot read the bound address")?;
    let name = match args.name.clone() {
        Some(name) => name,
        None => {
            let host =
                nix::unistd::gethostname().map_or_else(|_| "worker".into(), |h| h.to_string_lossy().into_owned());
            format!("{host}:{}", address.port())
        }
    };
    let config = args.engine_config();
    let engine = Arc::new(Engine::start(registry, &config).context("cannot start the CPU pool")?);
    tracing::info!(%address, %name, ?config, kinds = ?engine.registry().kinds(), "worker ready");
    let shutdown = rampart_common::process::stop_requested(args.exit_with_parent);
    println!("rampart-worker listening on {address}");
    serve(listener, WorkerService::new(engine, name), shutdown).await.context("worker server failed")?;
    tracing::info!("worker stopped");
    Ok(())
}
