//! Real network peers with scripted behaviour, run inside the test process: a gRPC worker that
//! answers slowly or fails on purpose and records what it receives, and plain-HTTP upstreams.
//! They speak the real protocols over real sockets; only their behaviour is scripted.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use axum::{Router, body::Bytes, extract::Request, http::HeaderMap, routing::get};
use rampart_proto::v1::{
    DescribeRequest, DispatchReply, DispatchRequest, JobRequest, JobResult, JobStatus, WorkerInfo,
    worker_server::{Worker, WorkerServer},
};
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

/// How a scripted worker answers `Execute`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Behaviour {
    /// Echoes the payload after `delay`.
    Echo { delay: Duration },
    /// Answers UNAVAILABLE at once, as a worker that fails fast.
    FailFast,
}

/// What a scripted worker saw.
#[derive(Default)]
pub(crate) struct Seen {
    pub(crate) calls: AtomicUsize,
    pub(crate) grpc_timeouts: Mutex<Vec<String>>,
}

#[derive(Clone)]
struct Scripted {
    name: String,
    behaviour: Behaviour,
    seen: Arc<Seen>,
}

#[tonic::async_trait]
impl Worker for Scripted {
    type DispatchStream =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<DispatchReply, Status>> + Send + 'static>>;

    /// Scripted workers speak only `Execute`, as workers before `Dispatch` did: durable jobs
    /// sent to them show that the gateway falls back to a call per job.
    async fn dispatch(
        &self,
        _request: GrpcRequest<tonic::Streaming<DispatchRequest>>,
    ) -> Result<GrpcResponse<Self::DispatchStream>, Status> {
        Err(Status::unimplemented("this scripted worker has no Dispatch"))
    }

    async fn execute(&self, request: GrpcRequest<JobRequest>) -> Result<GrpcResponse<JobResult>, Status> {
        self.seen.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(timeout) = request.metadata().get("grpc-timeout") {
            self.seen.grpc_timeouts.lock().unwrap().push(timeout.to_str().unwrap().to_owned());
        }
        let job = request.into_inner();
        match self.behaviour {
            Behaviour::FailFast => Err(Status::unavailable("failing on purpose")),
            Behaviour::Echo { delay } => {
                tokio::time::sleep(delay).await;
                Ok(GrpcResponse::new(JobResult {
                    id: job.id,
                    status: JobStatus::Succeeded.into(),
                    output: job.payload,
                    worker: self.name.clone(),
                    ..Default::default()
                }))
            }
        }
    }

    async fn describe(&self, _request: GrpcRequest<DescribeRequest>) -> Result<GrpcResponse<WorkerInfo>, Status> {
        Ok(GrpcResponse::new(WorkerInfo { name: self.name.clone(), ..Default::default() }))
    }
}

/// A scripted worker serving until dropped.
pub(crate) struct ScriptedWorker {
    pub(crate) url: String,
    pub(crate) seen: Arc<Seen>,
    stop: CancellationToken,
}

impl Drop for ScriptedWorker {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl ScriptedWorker {
    /// Starts a worker named `name` behaving as `behaviour`, healthy per `grpc.health.v1`.
    pub(crate) async fn start(name: &str, behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Seen::default());
        let service = Scripted { name: name.to_owned(), behaviour, seen: Arc::clone(&seen) };
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<WorkerServer<Scripted>>().await;
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(health_service)
                .add_service(WorkerServer::new(service))
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    stopped.cancelled_owned(),
                )
                .await
                .unwrap();
        });
        Self { url, seen, stop }
    }

    /// Calls received so far.
    pub(crate) fn calls(&self) -> usize {
        self.seen.calls.load(Ordering::SeqCst)
    }
}

/// A plain-HTTP upstream: `GET /health` is 200; any other path answers with the upstream's
/// name, the request headers it received and the size of the body it was sent, after
/// `?delay_ms=N` milliseconds if asked. It runs on its
/// own runtime so that [`Upstream::kill`] can drop every connection at once, like a crash.
pub(crate) struct Upstream {
    pub(crate) url: String,
    pub(crate) hits: Arc<AtomicUsize>,
    kill: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl Upstream {
    /// Starts an upstream named `name`.
    pub(crate) fn start(name: &'static str) -> Self {
        Self::start_slow(name, Duration::ZERO)
    }

    /// Starts an upstream named `name` that takes `delay` over every answer but `/health`.
    pub(crate) fn start_slow(name: &'static str, slow: Duration) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&hits);
        let (kill, killed) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
                let answer = move |headers: HeaderMap, request: Request| {
                    let counted = Arc::clone(&counted);
                    async move {
                        counted.fetch_add(1, Ordering::SeqCst);
                        let path = request.uri().path().to_owned();
                        let delay = request.uri().query().and_then(|query| query.strip_prefix("delay_ms="));
                        if let Some(ms) = delay.and_then(|ms| ms.parse().ok()) {
                            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                        }
                        tokio::time::sleep(slow).await;
                        let body: Bytes =
                            axum::body::to_bytes(request.into_body(), usize::MAX).await.unwrap_or_default();
                        let seen: serde_json::Map<String, serde_json::Value> = headers
                            .iter()
                            .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or("").into()))
                            .collect();
                        axum::Json(serde_json::json!({
                            "upstream": name, "path": path, "headers": seen, "body_len": body.len(),
                        }))
                    }
                };
                let app = Router::new().route("/health", get(|| async { "ok" })).fallback(answer);
                tokio::select! {
                    _ = axum::serve(listener, app) => {}
                    _ = killed => {}
                }
            });
            // Dropping the runtime here drops every connection task: sockets close abruptly.
            runtime.shutdown_background();
        });
        Self { url, hits, kill: Mutex::new(Some(kill)) }
    }

    /// Crashes the upstream: every connection drops and later ones are refused.
    pub(crate) fn kill(&self) {
        if let Some(kill) = self.kill.lock().unwrap().take() {
            let _ = kill.send(());
        }
    }

    /// Requests served so far.
    pub(crate) fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.kill();
    }
}
