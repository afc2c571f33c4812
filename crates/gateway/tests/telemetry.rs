//! Observability of real processes: one trace across gateway and worker exported by OTLP (gRPC
//! from the gateway, HTTP/protobuf from the worker) to in-process receivers; metrics after
//! traffic; CPU profiles that decode.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::any_value::Value as AnyValue,
    trace::v1::Span,
};
use prost::Message as _;
use rampart_testkit::{
    admin_addr, spawn_gateway, spawn_gateway_with_env, spawn_worker, spawn_worker_with_env, worker_url,
};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// Spans received, with the service that sent them.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(String, Span)>>>);

impl Received {
    fn add(&self, request: ExportTraceServiceRequest) {
        let mut spans = self.0.lock().unwrap();
        for resource_spans in request.resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|resource| &resource.attributes)
                .find(|attribute| attribute.key == "service.name")
                .and_then(|attribute| attribute.value.as_ref()?.value.clone())
                .map(|value| match value {
                    AnyValue::StringValue(name) => name,
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                spans.extend(scope.spans.into_iter().map(|span| (service.clone(), span)));
            }
        }
    }

    fn find(&self, trace_id: &[u8], name: &str) -> Option<(String, Span)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .find(|(_, span)| span.trace_id == trace_id && span.name.starts_with(name))
            .cloned()
    }
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.add(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// An OTLP/gRPC receiver and an OTLP/HTTP one, feeding the same spans; their base URLs.
async fn receivers(received: &Received) -> (String, String) {
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc_url = format!("http://{}", grpc.local_addr().unwrap());
    let service = TraceServiceServer::new(received.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(grpc)),
    );
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_url = format!("http://{}", http.local_addr().unwrap());
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| async move {
            sink.add(ExportTraceServiceRequest::decode(body).unwrap());
            ([("content-type", "application/x-protobuf")], ExportTraceServiceResponse::default().encode_to_vec())
        }),
    );
    tokio::spawn(async move { axum::serve(http, app).await });
    (grpc_url, http_url)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[tokio::test]
async fn one_trace_spans_the_request_the_dispatch_and_the_job() {
    let received = Received::default();
    let (grpc_url, http_url) = receivers(&received).await;
    let worker = spawn_worker_with_env(
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &http_url),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    let gateway = spawn_gateway_with_env(
        &[worker_url(&worker)],
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &grpc_url),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("RAMPART_LOG_FORMAT", "json"),
            ("RUST_LOG", "info,rampart_gateway=debug"),
        ],
    )
    .await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let response = Client::new()
        .post(format!("http://{}/api/process", gateway.listen_addr()))
        .header("traceparent", format!("00-{trace_id}-{client_span}-01"))
        .json(&json!({"kind": "sleep", "payload": {"ms": 20}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-trace-id"], trace_id, "the client's trace continues");

    let id: Vec<u8> = (0..16).map(|at| u8::from_str_radix(&trace_id[2 * at..2 * at + 2], 16).unwrap()).collect();
    let started = Instant::now();
    let (request, call, job) = loop {
        let found =
            (received.find(&id, "POST"), received.find(&id, "worker.execute"), received.find(&id, "job.execute"));
        if let (Some(request), Some(call), Some(job)) = found {
            break (request, call, job);
        }
        assert!(started.elapsed() < Duration::from_secs(10), "spans missing: {:?}", received.0.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(request.0, "rampart-gateway");
    assert_eq!(request.1.name, "POST /api/process");
    assert_eq!(hex(&request.1.parent_span_id), client_span, "the request span is the client's child");
    assert_eq!(call.0, "rampart-gateway");
    assert_eq!(call.1.parent_span_id, request.1.span_id, "the call is the request's child");
    assert_eq!(job.0, "rampart-worker");
    assert_eq!(job.1.parent_span_id, call.1.span_id, "the job runs as the call's child, across processes");

    // The JSON log line written inside the request carries its trace id.
    let line = gateway
        .output()
        .lines()
        .find(|line| line.contains("request answered"))
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .expect("a log line for the request");
    assert_eq!(line["span"]["trace_id"], trace_id, "{line}");
}

#[tokio::test]
async fn a_durable_jobs_attempt_joins_the_accepting_requests_trace_across_its_dispatch_stream() {
    let received = Received::default();
    let (grpc_url, http_url) = receivers(&received).await;
    let exporting = |url: &str, protocol: &'static str| {
        [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", url.to_owned()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ]
    };
    let worker_env = exporting(&http_url, "http/protobuf");
    let worker_env: Vec<(&str, &str)> = worker_env.iter().map(|(key, value)| (*key, value.as_str())).collect();
    let worker = spawn_worker_with_env(&[], &worker_env).await;
    let gateway_env = exporting(&grpc_url, "grpc");
    let gateway_env: Vec<(&str, &str)> = gateway_env.iter().map(|(key, value)| (*key, value.as_str())).collect();
    let gateway = spawn_gateway_with_env(&[worker_url(&worker)], &[], &gateway_env).await;
    // Accepted, not waited for: the attempt runs after the request is answered, in its trace.
    let trace_id = "5af92f3577b34da6a3ce929d0e0e4737";
    let response = Client::new()
        .post(format!("http://{}/api/jobs", gateway.listen_addr()))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&json!({"kind": "sleep", "payload": {"ms": 20}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);

    let id: Vec<u8> = (0..16).map(|at| u8::from_str_radix(&trace_id[2 * at..2 * at + 2], 16).unwrap()).collect();
    let started = Instant::now();
    let (request, attempt, call, job) = loop {
        let found = (
            received.find(&id, "POST"),
            received.find(&id, "job.attempt"),
            received.find(&id, "worker.execute"),
            received.find(&id, "job.execute"),
        );
        if let (Some(request), Some(attempt), Some(call), Some(job)) = found {
            break (request, attempt, call, job);
        }
        assert!(started.elapsed() < Duration::from_secs(10), "spans missing: {:?}", received.0.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(request.1.name, "POST /api/jobs");
    assert_eq!(
        attempt.1.parent_span_id, request.1.span_id,
        "the attempt is a child of the request that accepted the job"
    );
    assert_eq!(attempt.0, "rampart-gateway");
    assert_eq!(call.1.parent_span_id, attempt.1.span_id, "the call is the attempt's child");
    assert_eq!(job.0, "rampart-worker");
    assert_eq!(job.1.parent_span_id, call.1.span_id, "the job, sent over the stream, is the call's child");
}

/// The value of the sample `name{labels}` in Prometheus text, if present.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|line| !line.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
        let all_labels = labels.iter().all(|(key, value)| rest.contains(&format!("{key}=\"{value}\"")));
        (metric == name && all_labels).then(|| value.parse().ok()).flatten()
    })
}

#[tokio::test]
async fn metrics_after_traffic_have_the_right_names_labels_and_counts() {
    let worker = spawn_worker(&[]).await;
    let gateway = spawn_gateway(&[worker_url(&worker)], &[]).await;
    let http = Client::new();
    let base = format!("http://{}", gateway.listen_addr());
    for n in 0..7 {
        let response =
            http.post(format!("{base}/api/process")).json(&json!({"kind": "echo", "payload": n})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    for _ in 0..2 {
        let response =
            http.post(format!("{base}/api/process")).json(&json!({"kind": "made-up-kind"})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        // The gateway answers for kinds its workers do not run; a worker asked directly keeps
        // its own label bounded.
        let mut direct = rampart_proto::v1::worker_client::WorkerClient::connect(worker_url(&worker)).await.unwrap();
        let job = rampart_proto::v1::JobRequest { kind: "made-up-kind".into(), ..Default::default() };
        assert_eq!(direct.execute(job).await.unwrap_err().code(), tonic::Code::Unimplemented);
    }
    let job: Value = http
        .post(format!("{base}/api/jobs?wait=5s"))
        .json(&json!({"kind": "echo", "payload": "durable"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(job["status"], "succeeded");
    let _ = http.get(format!("{base}/api/jobs/{}", "x".repeat(40))).send().await.unwrap();

    let text = http.get(format!("http://{}/metrics", admin_addr(&gateway))).send().await.unwrap().text().await.unwrap();
    let requests = |route, status| {
        sample(&text, "rampart_http_requests_total", &[("route", route), ("method", "POST"), ("status", status)])
    };
    assert_eq!(requests("/api/process", "200"), Some(7.0), "{text}");
    assert_eq!(requests("/api/process", "422"), Some(2.0));
    assert_eq!(
        sample(&text, "rampart_http_requests_total", &[("route", "/api/jobs/{id}"), ("status", "404")]),
        Some(1.0),
        "route templates, never raw ids"
    );
    assert!(!text.contains("xxxxxxxx"), "no raw path in any label");
    assert_eq!(sample(&text, "rampart_job_attempts_total", &[("kind", "echo"), ("outcome", "succeeded")]), Some(1.0));
    assert_eq!(sample(&text, "rampart_jobs_accepted_total", &[]), Some(1.0));
    assert!(
        sample(&text, "rampart_http_request_duration_seconds_bucket", &[("route", "/api/process"), ("le", "+Inf")])
            .is_some()
    );
    assert!(sample(&text, "rampart_tokio_workers", &[("runtime", "main")]).is_some_and(|workers| workers >= 1.0));
    assert!(sample(&text, "rampart_tokio_alive_tasks", &[("runtime", "serving-0")]).is_some(), "serving runtimes too");
    assert!(sample(&text, "rampart_process_cpu_seconds", &[]).is_some_and(|cpu| cpu > 0.0));
    assert!(sample(&text, "rampart_process_resident_memory_bytes", &[]).is_some_and(|rss| rss > 1e6));
    assert!(sample(&text, "rampart_breaker_state", &[("endpoint", &worker_url(&worker))]).is_some());

    let text = http.get(format!("http://{}/metrics", admin_addr(&worker))).send().await.unwrap().text().await.unwrap();
    let jobs = |kind, outcome| sample(&text, "rampart_worker_jobs_total", &[("kind", kind), ("outcome", outcome)]);
    assert_eq!(jobs("echo", "succeeded"), Some(8.0), "7 direct and 1 durable: {text}");
    assert_eq!(jobs("unknown", "unknown_kind"), Some(2.0), "made-up kinds share one label");
    assert!(!text.contains("made-up-kind"));
    assert_eq!(sample(&text, "rampart_worker_job_run_seconds_count", &[("kind", "echo")]), Some(8.0));
    assert!(sample(&text, "rampart_worker_pool_capacity", &[("pool", "io")]).is_some_and(|slots| slots > 0.0));
    assert_eq!(sample(&text, "rampart_worker_pool_busy", &[("pool", "cpu")]), Some(0.0));
    assert!(sample(&text, "rampart_tokio_workers", &[("runtime", "main")]).is_some());
}

#[tokio::test]
async fn a_one_second_profile_decodes_and_runtime_figures_read() {
    let worker = spawn_worker(&[]).await;
    let gateway = spawn_gateway(&[worker_url(&worker)], &[]).await;
    let http = Client::new();
    for process in [&gateway, &worker] {
        let admin = admin_addr(process);
        let response = http.get(format!("http://{admin}/debug/pprof/profile?seconds=1")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let bytes = response.bytes().await.unwrap();
        let profile = <pprof::protos::Profile as pprof::protos::Message>::decode(bytes.as_ref()).unwrap();
        assert!(!profile.string_table.is_empty() && profile.duration_nanos >= 900_000_000, "a 1 s profile");
        assert!(
            profile.sample_type.iter().any(|kind| profile.string_table[usize::try_from(kind.ty).unwrap()] == "cpu")
        );

        let svg = http.get(format!("http://{admin}/debug/pprof/profile?seconds=1&format=svg")).send().await.unwrap();
        assert_eq!(svg.headers()["content-type"], "image/svg+xml");
        assert!(svg.text().await.unwrap().contains("<svg"));

        let bad = http.get(format!("http://{admin}/debug/pprof/profile?seconds=0")).send().await.unwrap();
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        assert_eq!(bad.headers()["content-type"], "application/problem+json");

        let runtime: Value =
            http.get(format!("http://{admin}/debug/runtime?window=100ms")).send().await.unwrap().json().await.unwrap();
        let main = runtime["runtimes"].as_array().unwrap().iter().find(|figures| figures["name"] == "main").unwrap();
        assert!(main["workers"].as_u64().unwrap() >= 1 && main["busy_ratio"].as_f64().is_some(), "{runtime}");
        assert!(runtime["process"]["resident_bytes"].as_u64().unwrap() > 0);
    }
}

/// Every `rampart_*` name in `text`.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("rampart_") {
        let tail = &rest[at..];
        let end =
            tail.find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')).unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

fn sources(dir: &std::path::Path, into: &mut String) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, into);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            into.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
}

#[test]
fn the_dashboard_uses_only_metrics_the_code_exports() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dashboard = std::fs::read_to_string(root.join("deploy/grafana/dashboards/rampart.json")).unwrap();
    let parsed: Value = serde_json::from_str(&dashboard).unwrap();
    assert!(parsed["panels"].as_array().is_some_and(|panels| panels.len() >= 6));
    let mut code = String::new();
    for krate in ["common", "balance", "jobs", "gateway", "worker"] {
        sources(&root.join("crates").join(krate).join("src"), &mut code);
    }
    let exported = metric_names(&code);
    for name in metric_names(&dashboard) {
        let base = ["_bucket", "_count", "_sum"].iter().find_map(|suffix| name.strip_suffix(suffix)).unwrap_or(&name);
        assert!(exported.contains(base), "the dashboard queries {name}, which no code exports");
    }
}
