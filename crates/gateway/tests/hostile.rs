//! The front door against hostile clients, on real gateway and worker processes over real
//! sockets: one test for each hole an attack run found (each failed before it was closed), then
//! the attacks that already held, kept so they keep holding.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // a failed unwrap is a failed test

mod support;

use bytes::Bytes;
use rampart_testkit::{Process, admin_addr, spawn_gateway, spawn_worker, worker_url};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::{
    config_file, expect_problem,
    raw::{RawBackend, exchange, one, read_until_quiet},
    resident_bytes, wait_until,
};
use tokio::{io::AsyncWriteExt as _, net::TcpStream, task::JoinSet};

/// A gateway for `workers` with `config`; its process, config file, base URL and address.
struct Front {
    gateway: Process,
    _config: tempfile::NamedTempFile,
    base: String,
    address: String,
    http: Client,
}

impl Front {
    async fn start(workers: &[String], config: &str) -> Self {
        let file = config_file(config);
        let gateway = spawn_gateway(workers, &["--config", file.path().to_str().unwrap()]).await;
        let address = gateway.listen_addr();
        Self { base: format!("http://{address}"), address, gateway, _config: file, http: Client::new() }
    }

    async fn echo(&self, n: u64) -> reqwest::Response {
        self.http
            .post(format!("{}/api/process", self.base))
            .json(&json!({"kind": "echo", "payload": n}))
            .send()
            .await
            .unwrap()
    }

    async fn admin(&self, path: &str) -> reqwest::Response {
        self.http.get(format!("http://{}{path}", admin_addr(&self.gateway))).send().await.unwrap()
    }

    async fn metrics(&self) -> String {
        self.admin("/metrics").await.text().await.unwrap()
    }

    async fn backends(&self) -> Value {
        self.admin("/admin/backends").await.json().await.unwrap()
    }

    /// Starts `count` sleeps of `ms` each as one batch, without waiting for them.
    async fn start_sleeps(&self, count: usize, ms: u64) {
        let batch = json!({"jobs": vec![json!({"kind": "sleep", "payload": {"ms": ms}}); count]});
        let accepted = self.http.post(format!("{}/api/batch?wait=1ms", self.base)).json(&batch).send().await.unwrap();
        assert_eq!(accepted.status(), StatusCode::OK);
        let _ = accepted.bytes().await;
    }
}

/// Two worker processes and their URLs.
async fn two_workers() -> ([Process; 2], [String; 2]) {
    let (one, first) = worker(&[]).await;
    let (two, second) = worker(&[]).await;
    ([one, two], [first, second])
}

/// The value of the first sample line starting with `series` (name and labels).
fn sample(metrics: &str, series: &str) -> f64 {
    metrics.lines().find_map(|line| line.strip_prefix(series)?.trim().parse().ok()).unwrap_or(0.0)
}

/// A worker process and its URL.
async fn worker(args: &[&str]) -> (Process, String) {
    let worker = spawn_worker(args).await;
    let url = worker_url(&worker);
    (worker, url)
}

/// 1. A connection that never sends a byte is closed, and at the connection cap silent ones are
/// shed to let a real client in, instead of the real client being refused.
#[tokio::test]
async fn silent_connections_are_closed_and_shed_before_a_client_is_refused() {
    let (_worker, url) = worker(&[]).await;
    let front = Front::start(&[url], "max_connections = 50\nheader_read_timeout = \"1s\"\n").await;

    let mut silent = TcpStream::connect(&front.address).await.unwrap();
    let started = Instant::now();
    assert!(read_until_quiet(&mut silent, Duration::from_secs(8)).await.is_empty());
    assert!(started.elapsed() < Duration::from_secs(4), "closed by the gateway after {:?}", started.elapsed());

    // Four times the cap in silent sockets, held open: clients still get in.
    let mut held = Vec::new();
    for _ in 0..200 {
        held.push(TcpStream::connect(&front.address).await.unwrap());
    }
    // Connections younger than a quarter of a second may have a request waiting unread: they
    // are not shed until they are older; older silent ones are, for newer connections.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..100 {
        held.push(TcpStream::connect(&front.address).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for n in 0..20 {
        let answer =
            Client::new().post(format!("{}/api/process", front.base)).json(&json!({"kind": "echo", "payload": n}));
        assert_eq!(answer.send().await.unwrap().status(), StatusCode::OK, "request {n}");
    }
    let metrics = front.metrics().await;
    let shed = sample(&metrics, r#"rampart_connections_evicted_total{listener="public",reason="silent"}"#);
    assert!(shed >= 50.0, "silent connections made room: {shed}");
    assert!(sample(&metrics, r#"rampart_connections_open{listener="public"}"#) <= 50.0);
    drop(held);
}

/// 2. A body that stops arriving is answered 408 instead of holding its slot for ever, and one
/// HTTP/2 connection cannot take more than its share of the admission budget.
#[tokio::test]
async fn stalled_bodies_get_408_and_one_connection_holds_only_its_share() {
    let (_worker, url) = worker(&[]).await;
    let front = Front::start(
        &[url],
        "body_read_timeout = \"1s\"\nmax_streams_per_connection = 10\n[admission]\nmax_in_flight = 100\n",
    )
    .await;
    let started = Instant::now();
    let answer = one(
        &front.address,
        b"POST /api/process HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"ki",
    )
    .await;
    answer.expect_problem(408, "request_timeout");
    assert!(started.elapsed() < Duration::from_secs(4), "answered after {:?}", started.elapsed());

    // 200 streams on one h2c connection, each with a body that stalls after 4 bytes.
    let tcp = TcpStream::connect(&front.address).await.unwrap();
    let (h2, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    // One request first, so the gateway's SETTINGS (10 streams at once) are in force: a client
    // that opens streams past the limit has them refused, and past h2's reset limit loses the
    // connection, which is another defence, not this one.
    let probe = http::Request::get("http://x/health").body(()).unwrap();
    let (answer, _) = h2.clone().ready().await.unwrap().send_request(probe, true).unwrap();
    assert_eq!(answer.await.unwrap().status(), http::StatusCode::OK);
    let mut streams = JoinSet::new();
    for _ in 0..200 {
        let mut h2 = h2.clone();
        streams.spawn(async move {
            h2 = h2.ready().await.ok()?;
            let request = http::Request::post("http://x/api/process")
                .header("content-type", "application/json")
                .header("content-length", "100")
                .body(())
                .unwrap();
            let (response, mut body) = h2.send_request(request, false).ok()?;
            body.send_data(Bytes::from_static(b"{\"ki"), false).ok()?;
            let status = response.await.ok()?.status();
            drop(body);
            Some(status)
        });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Meanwhile everyone else is served.
    for n in 0..10 {
        let response = front.echo(n).await;
        assert_eq!(response.status(), StatusCode::OK, "{}", response.text().await.unwrap());
    }
    let summary: Value = front.admin("/metrics.json").await.json().await.unwrap();
    assert!(summary["in_flight"].as_i64().unwrap() <= 11, "one connection holds at most 10: {summary}");
    // The stalled streams are answered 408, ten at a time.
    let mut timed_out = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while timed_out < 10 {
        let done = tokio::time::timeout_at(deadline, streams.join_next()).await;
        let Ok(Some(done)) = done else { break };
        if let Ok(Some(status)) = done {
            assert_eq!(status, http::StatusCode::REQUEST_TIMEOUT);
            timed_out += 1;
        }
    }
    streams.abort_all();
    assert!(timed_out >= 10, "{timed_out} stalled streams answered 408");
}

/// 3. Truncated and malformed bodies are the client's fault: 400 for the client, and nothing
/// counted against the upstream, whose breaker stays closed.
#[tokio::test]
async fn a_client_cannot_open_a_routes_breaker() {
    let (_worker, url) = worker(&[]).await;
    let upstream = RawBackend::start().await;
    let config = format!("[[routes]]\nprefix = \"/up\"\nupstreams = [\"{}\"]\n", upstream.url);
    let front = Front::start(&[url], &config).await;
    for _ in 0..8 {
        let mut stream = TcpStream::connect(&front.address).await.unwrap();
        stream.write_all(b"POST /up/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789").await.unwrap();
        stream.shutdown().await.unwrap();
        let answers = support::raw::parse_answers(&read_until_quiet(&mut stream, Duration::from_secs(5)).await);
        if let Some(answer) = answers.first() {
            answer.expect_problem(400, "invalid_request");
        }
        let malformed = one(
            &front.address,
            b"POST /up/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        )
        .await;
        malformed.expect_problem(400, "invalid_request");
    }
    let ok = one(&front.address, b"GET /up/ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_eq!(ok.status, 200, "{ok:?}");
    let backends = front.backends().await;
    let breaker = &backends["routes"][0]["upstreams"][0]["breaker"];
    assert_eq!(breaker["state"], "closed", "{backends}");
    assert_eq!(breaker["window_failures"], 0, "{backends}");
    assert_eq!(backends["routes"][0]["upstreams"][0]["ejected"], false, "{backends}");
}

/// 4. Until clients authenticate, no header they send chooses their rate-limit bucket: a fresh
/// `X-Api-Key` per request buys nothing, and a flood of them cannot push others out.
#[tokio::test]
async fn an_unauthenticated_header_never_chooses_a_rate_limit_bucket() {
    let (_worker, url) = worker(&[]).await;
    let front = Front::start(&[url], "[rate_limit]\nrate = 10\nburst = 5\nmax_keys = 64\n").await;
    let started = Instant::now();
    let mut admitted = 0;
    for n in 0..50 {
        let response = front
            .http
            .get(format!("{}/api/process?data={n}", front.base))
            .header("x-api-key", format!("fresh-{n}"))
            .send()
            .await
            .unwrap();
        admitted += usize::from(response.status() == StatusCode::OK);
    }
    let allowed = 5 + (10.0 * started.elapsed().as_secs_f64()).ceil() as usize;
    assert!(admitted <= allowed, "{admitted} admitted with fresh keys, at most {allowed} allowed");
    // A flood of fresh keys from one address, then a client at another address: it gets its
    // whole burst, on a bucket of its own.
    for n in 0..500 {
        let _ = front
            .http
            .get(format!("{}/api/process?data=flood", front.base))
            .header("x-api-key", format!("flood-{n}"))
            .send()
            .await;
    }
    let elsewhere = Client::builder().local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap()).build().unwrap();
    for n in 0..5 {
        let response = elsewhere.get(format!("{}/api/process?data={n}", front.base)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "request {n} of another client");
    }
}

/// Behind a trusted proxy the client it names is the one limited, and the chain it reports is
/// extended for the upstream; from anyone else, `X-Forwarded-For` is ignored.
#[tokio::test]
async fn behind_trusted_proxies_the_forwarded_client_is_the_one_limited() {
    let (_worker, url) = worker(&[]).await;
    let upstream = RawBackend::start().await;
    let config = format!(
        "trusted_proxies = [\"127.0.0.2\"]\n[rate_limit]\nrate = 0.1\nburst = 1\n\
         [[routes]]\nprefix = \"/up\"\nupstreams = [\"{}\"]\n",
        upstream.url
    );
    let front = Front::start(&[url], &config).await;
    let proxy = Client::builder().local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap()).build().unwrap();
    // Upstreams see the trusted chain extended, and an untrusted one replaced.
    let _ = proxy.get(format!("{}/up/a", front.base)).header("x-forwarded-for", "192.0.2.9").send().await.unwrap();
    let _ = front.http.get(format!("{}/up/b", front.base)).header("x-forwarded-for", "6.6.6.6").send().await.unwrap();
    let seen = upstream.received();
    let forwarded = |path: &str| {
        let request = seen.iter().find(|request| request.path == path).unwrap();
        request.headers.iter().find(|(name, _)| name == "x-forwarded-for").map(|(_, value)| value.clone()).unwrap()
    };
    assert_eq!(forwarded("/up/a"), "192.0.2.9, 127.0.0.2");
    assert_eq!(forwarded("/up/b"), "127.0.0.1");
    // Each forwarded client has a bucket of its own.
    for client in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
        let url = format!("{}/api/process?data=1", front.base);
        let response = proxy.get(&url).header("x-forwarded-for", client).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{client}: its own bucket");
        let again = proxy.get(&url).header("x-forwarded-for", client).send().await.unwrap();
        assert_eq!(again.status(), StatusCode::TOO_MANY_REQUESTS, "{client}: and only its own");
    }
    // A client that is not a trusted proxy cannot name itself someone else: its one request
    // (above, to /up/b) used its bucket, whatever the header says now.
    let spoofed = front
        .http
        .get(format!("{}/api/process?data=1", front.base))
        .header("x-forwarded-for", "198.51.100.2")
        .send()
        .await
        .unwrap();
    assert_eq!(spoofed.status(), StatusCode::TOO_MANY_REQUESTS, "the header changed nothing");
}

/// Threads of a process, from /proc.
fn threads(process: &Process) -> usize {
    std::fs::read_dir(format!("/proc/{}/task", process.pid())).unwrap().count()
}

/// 5. A CPU job that ignores its cancellation cannot take the machine: abandoned threads are
/// capped, and at the cap the worker takes no CPU job until they end, saying so in Describe,
/// health and metrics.
#[tokio::test]
async fn a_job_that_ignores_cancellation_cannot_take_the_machine() {
    let (worker, url) = worker(&["--cpu-threads", "1", "--cancel-grace", "100ms"]).await;
    let front = Front::start(std::slice::from_ref(&url), "").await;
    let before = threads(&worker);
    let hang = json!({"kind": "fail", "payload": {"mode": "cpu_hang", "ms": 4000}, "timeout_ms": 1});
    let started = Instant::now();
    for _ in 0..5 {
        let response = front.http.post(format!("{}/api/process", front.base)).json(&hang).send().await.unwrap();
        assert!(
            matches!(response.status().as_u16(), 504 | 503),
            "a hung job answers at once: {}",
            response.text().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(started.elapsed() < Duration::from_secs(10), "the hung jobs were answered at once, not after their 4 s");
    assert!(threads(&worker) <= before + 1, "{} threads, {before} before", threads(&worker));

    let mut client = rampart_proto::v1::worker_client::WorkerClient::connect(url.clone()).await.unwrap();
    let info = client.describe(rampart_proto::v1::DescribeRequest {}).await.unwrap().into_inner();
    let cpu = info.pools.iter().find(|pool| pool.kind() == rampart_proto::v1::PoolKind::Cpu).unwrap();
    assert_eq!((cpu.accepting, cpu.abandoned_running), (false, 1), "{cpu:?}");
    let admin = format!("http://{}", admin_addr(&worker));
    let health: Value = Client::new().get(format!("{admin}/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    let metrics = Client::new().get(format!("{admin}/metrics")).send().await.unwrap().text().await.unwrap();
    assert_eq!(sample(&metrics, r#"rampart_worker_pool_accepting{pool="cpu"}"#), 0.0);
    let channel = tonic::transport::Endpoint::from_shared(url.clone()).unwrap().connect().await.unwrap();
    let mut health_client = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = health_client
        .check(tonic_health::pb::HealthCheckRequest { service: rampart_proto::health::CPU_POOL.into() })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::NotServing as i32);
    // I/O jobs are untouched; a CPU job is refused with a pushback, not queued behind the hang.
    assert_eq!(front.echo(1).await.status(), StatusCode::OK);
    let cpu_job = json!({"kind": "cpu", "payload": {"iterations": 1000}});
    let refused = front.http.post(format!("{}/api/process", front.base)).json(&cpu_job).send().await.unwrap();
    expect_problem(refused, StatusCode::SERVICE_UNAVAILABLE, "overloaded").await;
    // When the runaway finally returns, the pool takes CPU jobs again.
    wait_until("the CPU pool to take jobs again", Duration::from_secs(10), async || {
        let info = client.clone().describe(rampart_proto::v1::DescribeRequest {}).await.unwrap().into_inner();
        info.pools.iter().any(|pool| pool.kind() == rampart_proto::v1::PoolKind::Cpu && pool.accepting)
    })
    .await;
    let ran = front.http.post(format!("{}/api/process", front.base)).json(&cpu_job).send().await.unwrap();
    assert_eq!(ran.status(), StatusCode::OK);
}

/// 6. Jobs that legitimately run longer than any flat "slow call" threshold (here 15 s, with
/// the default 60 s time limit) never count as stuck: the breakers stay closed.
#[tokio::test]
async fn long_jobs_within_their_time_limit_never_open_a_breaker() {
    let (_workers, urls) = two_workers().await;
    let front = Front::start(&urls, "").await;
    front.start_sleeps(12, 15_000).await;
    tokio::time::sleep(Duration::from_secs(13)).await;
    let response = front.echo(1).await;
    assert_eq!(response.status(), StatusCode::OK, "{}", response.text().await.unwrap());
    let backends = front.backends().await;
    for backend in backends["pools"][0]["backends"].as_array().unwrap() {
        assert_eq!(backend["breaker"]["state"], "closed", "{backend}");
        assert_eq!(backend["breaker"]["stuck"], 0, "{backend}");
    }
}

/// 7. Long jobs cannot hold every dispatch slot: short ones behind a batch of long sleeps are
/// still picked up at once.
#[tokio::test]
async fn a_batch_of_long_jobs_leaves_room_for_short_ones() {
    let (_workers, urls) = two_workers().await;
    let front = Front::start(&urls, "[jobs]\nworker_slots = 8\n").await;
    front.start_sleeps(30, 600_000).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for n in 0..10 {
        let response = front
            .http
            .post(format!("{}/api/jobs?wait=5s", front.base))
            .json(&json!({"kind": "echo", "payload": n}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "echo {n} finished within the wait");
        let job: Value = response.json().await.unwrap();
        assert_eq!(job["status"], "succeeded", "{job}");
    }
    let metrics = front.metrics().await;
    assert!(sample(&metrics, "rampart_jobs_running") <= 16.0);
}

/// 8. Paths are routed in their normal form, on segment boundaries: no spelling reaches an
/// upstream outside its prefix, and no route reaches the job API.
#[tokio::test]
async fn no_spelling_of_a_path_escapes_its_prefix() {
    let (_worker, url) = worker(&[]).await;
    let (ngx, raw, root) = (RawBackend::start().await, RawBackend::start().await, RawBackend::start().await);
    let config = format!(
        "[[routes]]\nprefix = \"/ngx\"\nupstreams = [\"{}\"]\n[[routes]]\nprefix = \"/raw\"\nupstreams = [\"{}\"]\n\
         [[routes]]\nprefix = \"/\"\nupstreams = [\"{}\"]\n",
        ngx.url, raw.url, root.url
    );
    let front = Front::start(&[url], &config).await;
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes();
    for (path, served_as) in [
        ("/ngx/../admin", "/admin"),
        ("/ngx/%2e%2e/admin", "/admin"),
        ("/ngx/%2E%2E/%2e%2e/admin?x=1", "/admin?x=1"),
        ("/rawfoo", "/rawfoo"),
        ("/ngx/./a//b", "/ngx/a/b"),
        ("/raw/%7Euser", "/raw/~user"),
    ] {
        let answer = one(&front.address, &get(path)).await;
        assert_eq!(answer.status, 200, "{path}: {answer:?}");
        assert_eq!(answer.json()["path"], served_as, "{path}");
    }
    for path in ["/%61pi/process?data=x", "//api/process?data=x", "/ngx/../api/process?data=x", "/api//process?data=x"]
    {
        let answer = one(&front.address, &get(path)).await;
        assert_eq!(answer.status, 200, "{path}: {answer:?}");
        assert_eq!(answer.json()["result"], "x", "{path} reached the job API: {answer:?}");
    }
    for path in ["/ngx/..%2Fadmin", "/ngx/..%5cadmin", "/ngx/%zz", "/ngx/a%00b"] {
        one(&front.address, &get(path)).await.expect_problem(400, "invalid_request");
    }
    assert!(ngx.received().iter().all(|request| request.path.starts_with("/ngx/")), "{:?}", ngx.received());
    assert!(raw.received().iter().all(|request| request.path.starts_with("/raw/")), "{:?}", raw.received());
    assert!(root.received().iter().all(|request| !request.path.starts_with("/api")), "{:?}", root.received());
}

/// 9. An `Idempotency-Key` names one request of one client: reused for another request it is
/// refused with 422, and another client's identical key is another key.
#[tokio::test]
async fn an_idempotency_key_is_its_clients_own_and_names_one_request() {
    let (_worker, url) = worker(&[]).await;
    let front = Front::start(&[url], "").await;
    let submit = |http: &Client, body: Value| {
        http.post(format!("{}/api/jobs?wait=5s", front.base)).header("idempotency-key", "order-1").json(&body).send()
    };
    let first: Value =
        submit(&front.http, json!({"kind": "echo", "payload": "mine"})).await.unwrap().json().await.unwrap();
    assert_eq!(first["result"], "mine");
    let replay = submit(&front.http, json!({"kind": "echo", "payload": "mine"})).await.unwrap();
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.json::<Value>().await.unwrap()["id"], first["id"]);
    for other in [json!({"kind": "echo", "payload": "theirs"}), json!({"kind": "sleep", "payload": {"ms": 1}})] {
        let reused = submit(&front.http, other).await.unwrap();
        let problem = expect_problem(reused, StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused").await;
        assert_eq!(problem["job_id"], first["id"]);
    }
    let elsewhere = Client::builder().local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap()).build().unwrap();
    let theirs: Value =
        submit(&elsewhere, json!({"kind": "echo", "payload": "theirs"})).await.unwrap().json().await.unwrap();
    assert_ne!(theirs["id"], first["id"], "another client's key is another key");
    assert_eq!(theirs["result"], "theirs", "and never hands over the first client's result");
}

/// 10. Size limits agree from the request body to the worker's gRPC layer, and a job that can
/// never fit fails once, with the right status, instead of being retried to `dead`.
#[tokio::test]
async fn size_limits_agree_from_the_body_to_the_worker() {
    let (_worker, url) = worker(&[]).await;
    let front = Front::start(&[url], "max_body_bytes = 10000000\n").await;
    let big = "x".repeat(9_000_000);
    let response =
        front.http.post(format!("{}/api/process", front.base)).json(&json!({"kind": "echo", "payload": big})).send();
    let response = response.await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "a 9 MB echo within the 10 MB limit");
    assert_eq!(response.json::<Value>().await.unwrap()["result"].as_str().map(str::len), Some(9_000_000));

    // A worker told to take less than the gateway allows: refused at once, not retried.
    let (_small, small_url) = worker(&["--max-message-bytes", "1048576"]).await;
    let front = Front::start(&[small_url], "max_body_bytes = 10000000\n").await;
    let two_mb = json!({"kind": "echo", "payload": "y".repeat(2_000_000)});
    let response = front.http.post(format!("{}/api/process", front.base)).json(&two_mb).send().await.unwrap();
    expect_problem(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    let job: Value = front
        .http
        .post(format!("{}/api/jobs?wait=10s", front.base))
        .json(&two_mb)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((job["status"].as_str(), job["attempts"].as_i64()), (Some("failed"), Some(1)), "{}", job["error"]);
}

/// 11. Every error is problem details with a precise code: undecodable path parameters,
/// requests hyper itself refuses (malformed, headers too large, URI too long), and the admin
/// listener's own errors.
#[tokio::test]
async fn every_error_is_problem_json_with_a_precise_code() {
    let (worker_process, url) = worker(&[]).await;
    let front = Front::start(&[url], "").await;
    for (method, path) in [("GET", "/api/jobs/%ff"), ("GET", "/api/jobs/%ff/events"), ("DELETE", "/api/jobs/%ff")] {
        let request = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        one(&front.address, request.as_bytes()).await.expect_problem(400, "invalid_request");
    }
    one(&front.address, b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
        .await
        .expect_problem(400, "invalid_request");
    one(&front.address, b"GET / HTTP/1.1\r\nHost: x\r\nX-\x01: y\r\n\r\n").await.expect_problem(400, "invalid_request");
    let many = format!("GET / HTTP/1.1\r\nHost: x\r\n{}\r\n", "X-Filler: abcdefghij\r\n".repeat(200));
    one(&front.address, many.as_bytes()).await.expect_problem(431, "headers_too_large");
    let huge = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(70_000));
    one(&front.address, huge.as_bytes()).await.expect_problem(431, "headers_too_large");
    let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "a".repeat(10_000));
    one(&front.address, long.as_bytes()).await.expect_problem(414, "uri_too_long");

    // The admin listeners: unknown routes and methods, and a busy profiler.
    for admin in [admin_addr(&front.gateway), admin_addr(&worker_process)] {
        let base = format!("http://{admin}");
        expect_problem(
            Client::new().get(format!("{base}/nope")).send().await.unwrap(),
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
        let wrong = Client::new().post(format!("{base}/metrics")).send().await.unwrap();
        expect_problem(wrong, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
        // Two profiles asked for at once: one runs, the other is told the profiler is busy,
        // whichever arrives first and however loaded the machine (a fixed head start was not
        // always enough under CI's load).
        let profile = || Client::new().get(format!("{base}/debug/pprof/profile?seconds=3")).send();
        let (first, second) = tokio::join!(profile(), profile());
        let (first, second) = (first.unwrap(), second.unwrap());
        let (ran, busy) = if first.status() == StatusCode::CONFLICT { (second, first) } else { (first, second) };
        assert_eq!(ran.status(), StatusCode::OK, "one profile runs");
        expect_problem(busy, StatusCode::CONFLICT, "profile_busy").await;
    }
}

/// 12. A lease renewal that meets an attempt which just ended is no lost lease: a run of short
/// jobs under one-second leases (renewed every third of a second) raises no false alarm.
#[tokio::test]
async fn renewals_racing_completions_raise_no_false_alarm() {
    let (_workers, urls) = two_workers().await;
    let front = Front::start(&urls, "[jobs]\nlease = \"1s\"\n").await;
    let batch = json!({"jobs": vec![json!({"kind": "sleep", "payload": {"ms": 5}}); 5000]});
    for _ in 0..4 {
        let lines = front.http.post(format!("{}/api/batch?wait=60s", front.base)).json(&batch).send().await.unwrap();
        let text = lines.text().await.unwrap();
        assert_eq!(text.lines().filter(|line| line.contains("\"succeeded\"")).count(), 5000);
    }
    let log = front.gateway.output();
    assert!(!log.contains("lost the lease"), "{}", log.lines().filter(|line| line.contains("lost the lease")).count());
    assert_eq!(sample(&front.metrics().await, "rampart_jobs_leases_lost_total"), 0.0);
}

/// 13. The admin listeners bound their connections in time too, and a profile whose client went
/// away stops, so the next one can be taken.
#[tokio::test]
async fn admin_listeners_close_silent_connections_and_stop_abandoned_profiles() {
    let (worker_process, url) = worker(&[]).await;
    let front = Front::start(&[url], "header_read_timeout = \"1s\"\n").await;
    let mut silent = TcpStream::connect(admin_addr(&front.gateway)).await.unwrap();
    let started = Instant::now();
    assert!(read_until_quiet(&mut silent, Duration::from_secs(8)).await.is_empty());
    assert!(started.elapsed() < Duration::from_secs(4), "the gateway's admin listener closed it");
    let mut silent = TcpStream::connect(admin_addr(&worker_process)).await.unwrap();
    let started = Instant::now();
    assert!(read_until_quiet(&mut silent, Duration::from_secs(20)).await.is_empty());
    assert!(started.elapsed() < Duration::from_secs(15), "the worker's admin listener closed it");

    for admin in [admin_addr(&front.gateway), admin_addr(&worker_process)] {
        let impatient = Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
        let gave_up = impatient.get(format!("http://{admin}/debug/pprof/profile?seconds=60")).send().await;
        assert!(gave_up.is_err(), "the client went away");
        // The abandoned profile stops once its server notices the client is gone: within a
        // few seconds even on a loaded machine, never after its 60.
        let stopped_by = Instant::now() + Duration::from_secs(5);
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let next = Client::new().get(format!("http://{admin}/debug/pprof/profile?seconds=1")).send().await.unwrap();
            if next.status() == StatusCode::OK {
                break;
            }
            let text = next.text().await.unwrap();
            assert!(Instant::now() < stopped_by, "the abandoned profile did not stop: {text}");
        }
    }
}

/// Opens `count` SSE streams on job `id` over h2c, 100 per connection, each read up to its
/// first event, one at a time (so that what is measured is what the idle streams hold, not the
/// high-water mark of many requests at once); returns the connections and the open streams.
async fn h2_event_streams(
    address: &str,
    id: &str,
    count: usize,
) -> Vec<(h2::client::SendRequest<Bytes>, Vec<h2::RecvStream>)> {
    let mut connections = Vec::new();
    for _ in 0..count / 100 {
        let (client, connection) = h2::client::handshake(TcpStream::connect(address).await.unwrap()).await.unwrap();
        tokio::spawn(connection);
        let mut streams = Vec::new();
        for _ in 0..100 {
            let request = http::Request::get(format!("http://x/api/jobs/{id}/events")).body(()).unwrap();
            let (response, _) = client.clone().ready().await.unwrap().send_request(request, true).unwrap();
            let mut body = response.await.unwrap().into_body();
            let first = body.data().await.unwrap().unwrap();
            assert!(String::from_utf8_lossy(&first).contains("event: running"));
            let _ = body.flow_control().release_capacity(first.len());
            streams.push(body);
        }
        connections.push((client, streams));
    }
    connections
}

/// 14. An idle SSE stream costs little memory: 1,000 streams on one running job (over h2c, so
/// that the streams are measured rather than a connection each), and following them does not
/// read the store once a second each (reads back off, and share four reader connections).
#[tokio::test]
async fn idle_event_streams_cost_little_memory() {
    let (_worker, url) = worker(&[]).await;
    let front = Front::start(&[url], "").await;
    let job: Value = front
        .http
        .post(format!("{}/api/jobs", front.base))
        .json(&json!({"kind": "sleep", "payload": {"ms": 120_000}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    // Every stream's first event is the job's current state: wait until that is `running`.
    let started = Instant::now();
    loop {
        let state: Value =
            front.http.get(format!("{}/api/jobs/{id}", front.base)).send().await.unwrap().json().await.unwrap();
        if state["status"] == "running" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the job never started: {state}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = resident_bytes(&front.gateway);
    let streams = h2_event_streams(&front.address, &id, 1000).await;
    // Long enough for every follower to poll the store a few times.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let each = resident_bytes(&front.gateway).saturating_sub(before) / 1000;
    println!("{each} bytes of RSS per idle SSE stream");
    assert!(each < 8 * 1024, "{each} bytes per stream");
    drop(streams);
}

// ---- Attacks that already held, kept as regression tests. ----

/// Slowloris: 2,000 connections trickling their headers a byte at a time are cut off at the
/// header deadline, while a real client is served throughout.
#[tokio::test]
async fn slowloris_connections_are_cut_off_while_clients_are_served() {
    let (_worker, url) = worker(&[]).await;
    let front = Front::start(&[url], "header_read_timeout = \"1s\"\n").await;
    let mut trickling = Vec::new();
    for _ in 0..2000 {
        let mut stream = TcpStream::connect(&front.address).await.unwrap();
        stream.write_all(b"GET /api/process?data=x HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        trickling.push(stream);
    }
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        for stream in &mut trickling {
            let _ = stream.write_all(b"X").await;
        }
        let response = front.echo(1).await;
        assert_eq!(response.status(), StatusCode::OK, "a real client is served during the attack");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut closed = 0;
    for stream in &mut trickling {
        let mut byte = [0_u8; 1];
        let read =
            tokio::time::timeout(Duration::from_millis(50), tokio::io::AsyncReadExt::read(stream, &mut byte)).await;
        closed += usize::from(matches!(read, Ok(Ok(0) | Err(_))));
    }
    assert_eq!(closed, 2000, "every trickling connection was cut off");
}

/// The request that the body of each smuggling attempt hides: it must never reach the backend.
const SMUGGLED: &str = "GET /internal/secret HTTP/1.1\r\nHost: x\r\n\r\n";

/// Request smuggling: 26 ways of framing a request ambiguously (CL with TE, two lengths,
/// obfuscated and folded codings, TE on HTTP/1.0, malformed chunks), each sent through a proxy
/// route. The gateway refuses the request or forwards one unambiguous request; the request
/// hidden in the body never reaches the backend, whichever way the backend reads the framing.
#[tokio::test]
async fn no_request_is_smuggled_through_a_route() {
    let (_worker, url) = worker(&[]).await;
    let backend = RawBackend::start().await;
    let front =
        Front::start(&[url], &format!("[[routes]]\nprefix = \"/app\"\nupstreams = [\"{}\"]\n", backend.url)).await;
    let hidden = SMUGGLED.len();
    let chunk = format!("{hidden:x}\r\n{SMUGGLED}\r\n0\r\n\r\n");
    let post = "POST /app/x HTTP/1.1\r\nHost: x\r\n";
    let variants: Vec<(&str, String)> = vec![
        ("CL.TE", format!("{post}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}")),
        ("TE.CL", format!("{post}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{chunk}")),
        ("two lengths", format!("{post}Content-Length: 0\r\nContent-Length: {hidden}\r\n\r\n{SMUGGLED}")),
        ("two lengths, reversed", format!("{post}Content-Length: {hidden}\r\nContent-Length: 0\r\n\r\n{SMUGGLED}")),
        ("length list", format!("{post}Content-Length: 0, {hidden}\r\n\r\n{SMUGGLED}")),
        ("signed length", format!("{post}Content-Length: +{hidden}\r\n\r\n{SMUGGLED}")),
        ("negative length", format!("{post}Content-Length: -1\r\n\r\n{SMUGGLED}")),
        ("hex length", format!("{post}Content-Length: 0x{hidden:x}\r\n\r\n{SMUGGLED}")),
        ("length with inner space", format!("{post}Content-Length: 0 {hidden}\r\n\r\n{SMUGGLED}")),
        ("xchunked", format!("{post}Transfer-Encoding: xchunked\r\nContent-Length: 0\r\n\r\n{chunk}")),
        (
            "space before colon",
            format!("{post}Transfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "chunked, identity",
            format!("{post}Transfer-Encoding: chunked, identity\r\nContent-Length: 4\r\n\r\n{chunk}"),
        ),
        (
            "identity, chunked",
            format!("{post}Transfer-Encoding: identity, chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "tab before chunked",
            format!("{post}Transfer-Encoding:\tchunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "upper-case chunked",
            format!("{post}Transfer-Encoding: CHUNKED\r\nContent-Length: 4\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "two codings",
            format!("{post}Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\nContent-Length: 4\r\n\r\n{chunk}"),
        ),
        (
            "folded coding",
            format!("{post}Transfer-Encoding:\r\n chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        ("folded length", format!("{post}Content-Length: 0\r\n {hidden}\r\n\r\n{SMUGGLED}")),
        (
            "TE on HTTP/1.0",
            format!(
                "POST /app/x HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n{SMUGGLED}"
            ),
        ),
        (
            "bare LF",
            format!(
                "POST /app/x HTTP/1.1\nHost: x\nContent-Length: 4\nTransfer-Encoding: chunked\n\n0\r\n\r\n{SMUGGLED}"
            ),
        ),
        (
            "NUL in a coding",
            format!("{post}Transfer-Encoding: chunked\0\r\nContent-Length: 4\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "chunk size overflow",
            format!("{post}Transfer-Encoding: chunked\r\n\r\nffffffffffffffff1\r\n{SMUGGLED}\r\n0\r\n\r\n"),
        ),
        ("spaced chunk size", format!("{post}Transfer-Encoding: chunked\r\n\r\n 0\r\n\r\n{SMUGGLED}")),
        ("bare LF in a chunk extension", format!("{post}Transfer-Encoding: chunked\r\n\r\n0;x\n\r\n{SMUGGLED}")),
        (
            "chunk longer than its size",
            format!("{post}Transfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "GET with both framings",
            format!(
                "GET /app/x HTTP/1.1\r\nHost: x\r\nContent-Length: {hidden}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
            ),
        ),
    ];
    assert_eq!(variants.len(), 26);
    let mut refused = 0;
    for (name, request) in &variants {
        let answers = exchange(&front.address, request.as_bytes(), Duration::from_millis(700)).await;
        for answer in &answers {
            assert!(answer.status != 0, "{name}: {answer:?}");
            if answer.status >= 400 {
                assert_eq!(answer.header("content-type"), Some("application/problem+json"), "{name}: {answer:?}");
            }
        }
        refused += usize::from(answers.first().is_none_or(|answer| answer.status == 400));
        let received = backend.received();
        assert!(
            received.iter().all(|request| request.path.starts_with("/app/")),
            "{name}: the backend received {:?}",
            received.iter().map(|request| &request.path).collect::<Vec<_>>()
        );
    }
    println!("{refused} of 26 ambiguous requests refused outright; the rest forwarded unambiguously");
    assert_eq!(front.echo(1).await.status(), StatusCode::OK, "the gateway serves on");
}

/// CPU time a process has used, from /proc (user and system, in clock ticks of 10 ms).
fn cpu_ticks(process: &Process) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", process.pid())).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// HTTP/2 rapid reset (CVE-2023-44487): streams opened and cancelled at once, 20,000 of them on
/// one connection. Each costs the gateway little (at most 100 streams of one connection are
/// ever in flight, and resets before a stream is taken up are capped), and other clients are
/// served throughout.
#[tokio::test]
async fn h2_rapid_reset_costs_little_and_others_are_served() {
    let (_worker, url) = worker(&[]).await;
    let front = Front::start(&[url], "").await;
    let tcp = TcpStream::connect(&front.address).await.unwrap();
    let (h2, connection) = h2::client::handshake(tcp).await.unwrap();
    let mut h2 = Some(h2);
    let driver = tokio::spawn(connection);
    let cpu_before = cpu_ticks(&front.gateway);
    let mut sent = 0_u64;
    let started = Instant::now();
    while sent < 20_000 && started.elapsed() < Duration::from_secs(20) {
        let Some(Ok(mut ready)) = (match h2.take() {
            Some(client) => Some(client.ready().await),
            None => None,
        }) else {
            break;
        };
        let request = http::Request::get("http://x/api/process?data=x").body(()).unwrap();
        let Ok((_response, mut stream)) = ready.send_request(request, true) else { break };
        stream.send_reset(h2::Reason::CANCEL);
        h2 = Some(ready);
        sent += 1;
        if sent.is_multiple_of(2000) {
            assert_eq!(front.echo(sent).await.status(), StatusCode::OK, "served during the attack");
        }
    }
    drop(h2);
    let _ = tokio::time::timeout(Duration::from_secs(5), driver).await;
    let cpu_ms = (cpu_ticks(&front.gateway) - cpu_before) * 10;
    println!("rapid reset: {sent} reset streams before the gateway closed the connection, {cpu_ms} ms of its CPU");
    assert!(sent > 0);
    assert!(cpu_ms < sent / 4, "under 0.25 ms of CPU per reset stream: {cpu_ms} ms for {sent}");
    for n in 0..5 {
        assert_eq!(front.echo(n).await.status(), StatusCode::OK);
    }
}

/// An HTTP/2 frame: length, type, flags, stream, payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut frame = vec![length[1], length[2], length[3], kind, flags];
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Sends the h2c preface and an empty SETTINGS frame on a new connection.
async fn h2_connection(address: &str) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    stream.write_all(&frame(4, 0, 0, &[])).await.unwrap();
    stream
}

/// Writes `frames` until the gateway stops reading or closes; returns the bytes written.
async fn flood(stream: &mut TcpStream, next: impl Fn(usize) -> Vec<u8>, limit: usize) -> usize {
    let mut written = 0;
    let mut index = 0;
    while written < limit {
        let bytes = next(index);
        match tokio::time::timeout(Duration::from_secs(2), stream.write_all(&bytes)).await {
            Ok(Ok(())) => written += bytes.len(),
            _ => break,
        }
        index += 1;
    }
    written
}

/// CONTINUATION flood: one header block that never ends, sent as endless CONTINUATION frames.
/// The gateway stops at its header-list limit and closes the connection; memory stays flat.
#[tokio::test]
async fn h2_continuation_flood_is_cut_off() {
    let (_worker, url) = worker(&[]).await;
    let front = Front::start(&[url], "").await;
    let before = resident_bytes(&front.gateway);
    let mut stream = h2_connection(&front.address).await;
    // HEADERS without END_HEADERS: `:method GET` (static index 2), then literal fields forever.
    stream.write_all(&frame(1, 0x1, 1, &[0x82, 0x86, 0x84])).await.unwrap();
    let mut field = vec![0x00, 0x07];
    field.extend_from_slice(b"x-flood");
    field.extend_from_slice(&[0x7f, 0x81, 0x7f]);
    field.extend(std::iter::repeat_n(b'a', 127 + 0x7f + 1));
    let block: Vec<u8> = field.iter().copied().cycle().take(16_000).collect();
    let written = flood(&mut stream, |_| frame(9, 0, 1, &block), 64 << 20).await;
    let answer = read_until_quiet(&mut stream, Duration::from_secs(2)).await;
    assert!(written < 64 << 20, "the gateway stopped reading after {written} bytes");
    println!("CONTINUATION flood: cut off after {written} bytes; {} bytes of answer", answer.len());
    assert_unharmed(&front, before).await;
}

/// After a flood: the gateway's memory grew by less than 64 MiB since `before`, and it serves.
async fn assert_unharmed(front: &Front, before: u64) {
    let grown = resident_bytes(&front.gateway).saturating_sub(before);
    assert!(grown < 64 << 20, "memory grew by {grown} bytes");
    assert_eq!(front.echo(9).await.status(), StatusCode::OK);
}

/// SETTINGS flood: SETTINGS frames sent without ever reading their acknowledgements. The
/// gateway's memory stays flat and it serves other clients throughout.
#[tokio::test]
async fn h2_settings_flood_leaves_the_gateway_standing() {
    let (_worker, url) = worker(&[]).await;
    let front = Front::start(&[url], "").await;
    let before = resident_bytes(&front.gateway);
    let mut stream = h2_connection(&front.address).await;
    // SETTINGS_INITIAL_WINDOW_SIZE = 65535, again and again.
    let settings = frame(4, 0, 0, &[0x00, 0x04, 0x00, 0x00, 0xff, 0xff]);
    let burst: Vec<u8> = settings.iter().copied().cycle().take(settings.len() * 1000).collect();
    let flooding = tokio::spawn(async move {
        let written = flood(&mut stream, |_| burst.clone(), 200 << 20).await;
        (written, stream)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    for n in 0..5 {
        assert_eq!(front.echo(n).await.status(), StatusCode::OK, "served during the flood");
    }
    let (written, _stream) = flooding.await.unwrap();
    println!("SETTINGS flood: the gateway took {written} bytes of SETTINGS");
    assert_unharmed(&front, before).await;
}

/// 64 MiB bodies, with and without a declared length, are refused with 413 without being
/// buffered; the gateway keeps serving.
#[tokio::test]
async fn huge_bodies_are_refused_without_being_buffered() {
    let (_worker, url) = worker(&[]).await;
    let front = Front::start(&[url], "").await;
    let declared = format!(
        "POST /api/process HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        64 << 20
    );
    let mut stream = TcpStream::connect(&front.address).await.unwrap();
    stream.write_all(declared.as_bytes()).await.unwrap();
    let _ = stream.write_all(&vec![b' '; 1 << 20]).await;
    let answers = support::raw::parse_answers(&read_until_quiet(&mut stream, Duration::from_secs(5)).await);
    answers.first().unwrap().expect_problem(413, "payload_too_large");

    let before = resident_bytes(&front.gateway);
    let mut stream = TcpStream::connect(&front.address).await.unwrap();
    stream
        .write_all(b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let chunk = format!("100000\r\n{}\r\n", " ".repeat(1 << 20));
    let (mut reader, mut writer) = stream.into_split();
    let sending = tokio::spawn(async move {
        for _ in 0..64 {
            if writer.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
        }
    });
    let mut received = Vec::new();
    let _ =
        tokio::time::timeout(Duration::from_secs(10), tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut received))
            .await;
    sending.abort();
    support::raw::parse_answers(&received).first().unwrap().expect_problem(413, "payload_too_large");
    assert!(resident_bytes(&front.gateway).saturating_sub(before) < 32 << 20, "the body was not buffered");
    assert_eq!(front.echo(1).await.status(), StatusCode::OK);
}

/// Invalid UTF-8 is a clear 400; a payload nested 500,000 deep (just under the body limit) is
/// carried through as the client's bytes and comes back whole, never a crash.
#[tokio::test]
async fn malformed_and_deeply_nested_json_are_handled() {
    let (_worker, url) = worker(&[]).await;
    let front = Front::start(&[url], "").await;
    let post = |path: &str, body: Vec<u8>| {
        front.http.post(format!("{}{path}", front.base)).header("content-type", "application/json").body(body).send()
    };
    for path in ["/api/process", "/api/jobs"] {
        for body in [&b"{\"kind\": \"echo\", \"payload\": \"\xff\xfe\"}"[..], b"{\"kind\": \"\xc3\x28\"}"] {
            expect_problem(post(path, body.to_vec()).await.unwrap(), StatusCode::BAD_REQUEST, "invalid_request").await;
        }
    }
    let depth = 500_000;
    let payload = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let body = format!("{{\"kind\": \"echo\", \"payload\": {payload}}}").into_bytes();
    let echoed = post("/api/process", body.clone()).await.unwrap();
    assert_eq!(echoed.status(), StatusCode::OK);
    let text = echoed.text().await.unwrap();
    assert!(text.contains(&payload), "the nested payload came back whole");
    let job = post("/api/jobs?wait=10s", body).await.unwrap();
    assert_eq!(job.status(), StatusCode::OK);
    assert!(job.text().await.unwrap().contains(&payload));
    assert_eq!(front.echo(1).await.status(), StatusCode::OK);
}
