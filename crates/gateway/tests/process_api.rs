//! The gateway binary in front of real worker binaries, over real sockets.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use rampart_testkit::{admin_addr, closed_port, spawn_gateway};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};
use support::{Cluster, expect_problem};

#[tokio::test]
async fn a_thousand_concurrent_echoes_each_get_exactly_their_own_payload() {
    let cluster = Cluster::start(2, &[]).await;
    let mut calls = tokio::task::JoinSet::new();
    for n in 0..1000_usize {
        let http = cluster.http.clone();
        let url = format!("{}/api/process", cluster.base);
        // Each payload is unique, with odd spacing and non-ASCII text that must survive as sent.
        let payload = format!(r#"{{"n": {n},  "tag": "req-{n}-ü", "list": [{n}, "{}"]}}"#, n * 7919);
        calls.spawn(async move {
            let body = format!(r#"{{"kind": "echo", "payload": {payload}}}"#);
            let response = http.post(url).header("content-type", "application/json").body(body).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let text = response.text().await.unwrap();
            (n, payload, text)
        });
    }
    let mut job_ids = HashSet::new();
    let mut per_worker: HashMap<String, usize> = HashMap::new();
    while let Some(joined) = calls.join_next().await {
        let (n, payload, text) = joined.unwrap();
        assert!(text.contains(&format!(r#""result":{payload}"#)), "request {n} got someone else's answer: {text}");
        let answer: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(answer["result"]["n"], n);
        assert_eq!(answer["status"], "succeeded");
        assert_eq!(answer["kind"], "echo");
        assert!(answer["duration_ms"].as_f64().is_some());
        assert!(job_ids.insert(answer["job_id"].as_str().unwrap().to_owned()), "job ids are unique");
        *per_worker.entry(answer["worker"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    assert_eq!(job_ids.len(), 1000);
    assert_eq!(per_worker.len(), 2, "both workers served: {per_worker:?}");
    assert!(per_worker.values().all(|&count| count >= 50), "load is spread: {per_worker:?}");
}

#[tokio::test]
async fn get_process_echoes_the_data_parameter() {
    let cluster = Cluster::start(1, &[]).await;
    let response =
        cluster.http.get(format!("{}/api/process?data=hello%20w%C3%B6rld", cluster.base)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["result"], "hello wörld");
    assert_eq!(answer["worker"], "w0");
}

#[tokio::test]
async fn a_killed_worker_is_skipped_and_every_request_succeeds() {
    // Round robin, so both workers surely hold a live connection before the kill.
    let config = support::config_file("balance = \"round_robin\"\n");
    let mut cluster = Cluster::start(2, &["--config", config.path().to_str().unwrap()]).await;
    // Both workers take traffic first, so the gateway holds a live connection to each.
    let mut served_by = HashSet::new();
    for n in 0..20 {
        served_by.insert(cluster.echo_ok(n).await["worker"].as_str().unwrap().to_owned());
    }
    assert_eq!(served_by.len(), 2);

    cluster.workers[0].kill9().await;
    for n in 0..200 {
        let answer = cluster.echo_ok(n).await;
        assert_eq!(answer["worker"], "w1", "request {n} after the kill");
    }
    // Health checks (every second) take the dead worker out, whether or not traffic met it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let backends: Value = cluster
        .http
        .get(format!("http://{}/admin/backends", admin_addr(&cluster.gateway)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let health: Vec<_> = backends["pools"][0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["health"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(health, ["unhealthy", "healthy"], "{backends}");
}

#[tokio::test]
async fn bad_input_gets_a_precise_problem_and_the_gateway_keeps_serving() {
    let cluster = Cluster::start(1, &[]).await;
    let url = format!("{}/api/process", cluster.base);
    const JSON: Option<&str> = Some("application/json");
    const UNPROCESSABLE: StatusCode = StatusCode::UNPROCESSABLE_ENTITY;
    // (what, body, content type, expected status, expected code)
    let posts = [
        ("malformed JSON", r#"{"kind": "echo", "payload": "#, JSON, StatusCode::BAD_REQUEST, "invalid_request"),
        ("not JSON at all", "kind=echo", JSON, StatusCode::BAD_REQUEST, "invalid_request"),
        ("kind of the wrong type", r#"{"kind": 5}"#, JSON, UNPROCESSABLE, "invalid_request"),
        (
            "priority of the wrong value",
            r#"{"kind": "echo", "priority": "urgent"}"#,
            JSON,
            UNPROCESSABLE,
            "invalid_request",
        ),
        (
            "timeout of the wrong type",
            r#"{"kind": "echo", "timeout_ms": "soon"}"#,
            JSON,
            UNPROCESSABLE,
            "invalid_request",
        ),
        ("a body that is not an object", r#"["echo"]"#, JSON, UNPROCESSABLE, "invalid_request"),
        ("missing kind", r#"{"payload": 1}"#, JSON, UNPROCESSABLE, "invalid_request"),
        ("misspelt field", r#"{"kind": "echo", "paylod": 1}"#, JSON, UNPROCESSABLE, "invalid_request"),
        ("empty kind", r#"{"kind": ""}"#, JSON, UNPROCESSABLE, "invalid_request"),
        ("unknown kind", r#"{"kind": "resize_image"}"#, JSON, UNPROCESSABLE, "unknown_kind"),
        (
            "payload the kind refuses",
            r#"{"kind": "sleep", "payload": {"ms": "long"}}"#,
            JSON,
            UNPROCESSABLE,
            "invalid_request",
        ),
        (
            "wrong content type",
            r#"{"kind": "echo"}"#,
            Some("text/plain"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request",
        ),
        ("no content type", r#"{"kind": "echo"}"#, None, StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_request"),
    ];
    for (what, body, content_type, status, code) in posts {
        let mut request = cluster.http.post(&url).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let problem = expect_problem(request.send().await.unwrap(), status, code).await;
        println!("{what} -> {}", problem["detail"]);
        cluster.echo_ok(1).await;
    }
    let others = [
        ("GET without data", cluster.http.get(&url), StatusCode::BAD_REQUEST, "invalid_request"),
        (
            "unknown route",
            cluster.http.get(format!("{}/api/nothing", cluster.base)),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        ("wrong method", cluster.http.delete(&url), StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
    ];
    for (what, request, status, code) in others {
        let problem = expect_problem(request.send().await.unwrap(), status, code).await;
        println!("{what} -> {}", problem["detail"]);
        cluster.echo_ok(2).await;
    }
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413_with_or_without_a_length() {
    let mut config = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut config, b"max_body_bytes = 1000\n").unwrap();
    let cluster = Cluster::start(1, &["--config", config.path().to_str().unwrap()]).await;
    let url = format!("{}/api/process", cluster.base);
    let big = format!(r#"{{"kind": "echo", "payload": "{}"}}"#, "x".repeat(2000));

    let declared =
        cluster.http.post(&url).header("content-type", "application/json").body(big.clone()).send().await.unwrap();
    let problem = expect_problem(declared, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    assert_eq!(problem["limit_bytes"], 1000);

    // Chunked, so the gateway only finds out while reading.
    let chunks = futures_stream(big.into_bytes());
    let streamed = cluster
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    expect_problem(streamed, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;

    // Just under the limit is fine.
    let small = json!({"kind": "echo", "payload": "x".repeat(900)});
    assert_eq!(cluster.process(&small).await.status(), StatusCode::OK);
}

/// A body sent in 100-byte chunks with no Content-Length.
fn futures_stream(
    bytes: Vec<u8>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    let chunks: Vec<Vec<u8>> = bytes.chunks(100).map(<[u8]>::to_vec).collect();
    tokio_stream::iter(chunks.into_iter().map(Ok))
}

#[tokio::test]
async fn failing_and_panicking_jobs_are_answers_and_the_workers_keep_serving() {
    let cluster = Cluster::start(1, &[]).await;
    for (payload, reason) in [
        (json!({}), "failed on purpose"),
        (json!({"mode": "panic"}), "job panicked: panicked on purpose"),
        (json!({"mode": "cpu_panic"}), "job panicked: panicked on purpose"),
    ] {
        let response = cluster.process(&json!({"kind": "fail", "payload": payload})).await;
        let problem = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "job_failed").await;
        assert_eq!(problem["detail"], reason);
        assert_eq!(problem["worker"], "w0");
        assert!(problem["job_id"].is_string());
    }
    let cpu = cluster.process(&json!({"kind": "cpu", "payload": {"iterations": 100}})).await;
    assert_eq!(cpu.json::<Value>().await.unwrap()["result"], json!({"iterations": 100, "sum": 4950}));
    cluster.echo_ok(7).await;
}

#[tokio::test]
async fn a_job_over_its_timeout_gets_504() {
    let cluster = Cluster::start(1, &[]).await;
    let started = Instant::now();
    let response = cluster.process(&json!({"kind": "sleep", "payload": {"ms": 10000}, "timeout_ms": 200})).await;
    expect_problem(response, StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded").await;
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn with_no_worker_reachable_requests_fail_fast_and_ready_says_so() {
    let workers = [format!("http://127.0.0.1:{}", closed_port()), format!("http://127.0.0.1:{}", closed_port())];
    let gateway = spawn_gateway(&workers, &[]).await;
    let base = format!("http://{}", gateway.listen_addr());
    let http = Client::new();
    for _ in 0..3 {
        let started = Instant::now();
        let response = http.get(format!("{base}/api/process?data=x")).send().await.unwrap();
        assert!(response.headers().contains_key("retry-after"));
        expect_problem(response, StatusCode::SERVICE_UNAVAILABLE, "no_healthy_backend").await;
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    let live = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    let ready = http.get(format!("{base}/ready")).send().await.unwrap();
    expect_problem(ready, StatusCode::SERVICE_UNAVAILABLE, "no_healthy_backend").await;
}

#[tokio::test]
async fn ready_turns_green_once_a_worker_passes_its_health_check() {
    let cluster = Cluster::start(1, &[]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = cluster.http.get(format!("{}/ready", cluster.base)).send().await.unwrap();
        if ready.status() == StatusCode::OK {
            let body: Value = ready.json().await.unwrap();
            assert_eq!(body["healthy_workers"], 1);
            break;
        }
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn sigterm_stops_the_gateway_cleanly() {
    let mut cluster = Cluster::start(1, &[]).await;
    cluster.echo_ok(1).await;
    cluster.gateway.signal(nix::sys::signal::Signal::SIGTERM);
    let status = cluster.gateway.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn an_invalid_config_fails_at_start_naming_the_file_and_key() {
    let mut config = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut config, b"listen = \"127.0.0.1:0\"\nrequest_timeout = \"soon\"\n").unwrap();
    let output = tokio::process::Command::new(rampart_testkit::binary("rampart-gateway"))
        .args(["--config", config.path().to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(config.path().to_str().unwrap()) && stderr.contains("request_timeout"), "{stderr}");
}

#[tokio::test]
async fn a_worker_draining_on_sigterm_loses_no_requests() {
    let mut cluster = Cluster::start(2, &[]).await;
    // Steady traffic from 8 clients while one worker is told to stop.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|client| {
            let (http, url, stop) = (cluster.http.clone(), format!("{}/api/process", cluster.base), stop.clone());
            tokio::spawn(async move {
                let mut outcomes = HashMap::<u16, usize>::new();
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let body = json!({"kind": "sleep", "payload": {"ms": 20}});
                    let response = http.post(&url).json(&body).send().await.unwrap();
                    let status = response.status().as_u16();
                    if status != 200 {
                        println!("client {client}: {status} {}", response.text().await.unwrap());
                    }
                    *outcomes.entry(status).or_default() += 1;
                    n += 1;
                }
                (client, n, outcomes)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.workers[0].signal(nix::sys::signal::Signal::SIGTERM);
    let exit = cluster.workers[0].wait_exit(Duration::from_secs(10)).await;
    assert!(exit.success(), "{exit:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for client in clients {
        let (client, n, outcomes) = client.await.unwrap();
        assert_eq!(outcomes.get(&200), Some(&n), "client {client}: {outcomes:?}");
        total += n;
    }
    assert!(total > 50, "enough traffic to cross the drain: {total}");
    // Afterwards everything goes to the worker that stayed.
    assert_eq!(cluster.echo_ok(1).await["worker"], "w1");
}
