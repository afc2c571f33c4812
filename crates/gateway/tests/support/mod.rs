//! Helpers shared by the gateway's integration tests.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // each test binary uses a subset

pub(crate) mod jobs;
pub(crate) mod peers;
pub(crate) mod raw;
pub(crate) mod websocket;

use rampart_testkit::{Process, spawn_gateway, spawn_worker, worker_url};
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};

/// Real worker processes (named `w0`, `w1`, ...) behind a real gateway process.
pub(crate) struct Cluster {
    pub(crate) workers: Vec<Process>,
    pub(crate) gateway: Process,
    pub(crate) base: String,
    pub(crate) http: Client,
}

impl Cluster {
    /// Starts `workers` workers and a gateway with extra `gateway_args`.
    pub(crate) async fn start(workers: usize, gateway_args: &[&str]) -> Self {
        let mut started = Vec::new();
        for index in 0..workers {
            started.push(spawn_worker(&["--name", &format!("w{index}")]).await);
        }
        let urls: Vec<_> = started.iter().map(worker_url).collect();
        let gateway = spawn_gateway(&urls, gateway_args).await;
        let base = format!("http://{}", gateway.listen_addr());
        Self { workers: started, gateway, base, http: Client::new() }
    }

    /// `POST /api/process` with `body`.
    pub(crate) async fn process(&self, body: &Value) -> Response {
        self.http.post(format!("{}/api/process", self.base)).json(body).send().await.expect("request sent")
    }

    /// An echo of `{"n": n}` that must succeed; returns the answer.
    pub(crate) async fn echo_ok(&self, n: usize) -> Value {
        let response = self.process(&json!({"kind": "echo", "payload": {"n": n}})).await;
        assert_eq!(response.status(), StatusCode::OK);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["result"], json!({"n": n}));
        answer
    }
}

/// Reads a problem+json answer and checks its status and code.
pub(crate) async fn expect_problem(response: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(content_type, "application/problem+json");
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], code, "{problem}");
    assert_eq!(problem["status"], status.as_u16(), "{problem}");
    assert!(problem["detail"].as_str().is_some_and(|detail| !detail.is_empty()), "{problem}");
    problem
}

/// The JSON answer of a `GET`, which must succeed.
pub(crate) async fn get_json(http: &Client, url: &str) -> Value {
    let response = http.get(url).send().await.unwrap();
    assert!(response.status().is_success(), "GET {url}: {}", response.status());
    response.json().await.unwrap()
}

/// Writes `text` to a temporary config file, kept as long as the returned handle.
pub(crate) fn config_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
    file
}

/// Jobs busy in a worker's I/O pool, from its `Describe`.
pub(crate) async fn io_busy(worker: &rampart_testkit::Process) -> u32 {
    use rampart_proto::v1::{DescribeRequest, PoolKind, worker_client::WorkerClient};
    let mut client = WorkerClient::connect(rampart_testkit::worker_url(worker)).await.unwrap();
    let info = client.describe(DescribeRequest {}).await.unwrap().into_inner();
    info.pools.iter().find(|pool| pool.kind() == PoolKind::Io).map_or(0, |pool| pool.busy)
}

/// Waits until `condition` holds, checking every 20 ms; fails the test after `limit`. Returns
/// how long it took, for tests that report it.
pub(crate) async fn wait_until(
    what: &str,
    limit: std::time::Duration,
    mut condition: impl AsyncFnMut() -> bool,
) -> std::time::Duration {
    let started = std::time::Instant::now();
    while !condition().await {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// Resident memory of a process, from /proc.
pub(crate) fn resident_bytes(process: &rampart_testkit::Process) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", process.pid())).unwrap();
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}
