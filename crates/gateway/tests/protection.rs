//! Rate limits, circuit breakers and metrics on real gateway and worker processes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use nix::sys::signal::Signal;
use rampart_testkit::admin_addr;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::{Cluster, config_file, expect_problem};

fn header(response: &Response, name: &str) -> String {
    response.headers().get(name).map(|value| value.to_str().unwrap().to_owned()).unwrap_or_default()
}

/// The address each named test client appears to come from, through the loopback "proxy" the
/// gateways here trust (`trusted_proxies = ["127.0.0.1"]`).
fn address_of(client: &str) -> &'static str {
    match client {
        "alice" => "192.0.2.1",
        "bob" => "192.0.2.2",
        "carol" => "192.0.2.3",
        "dave" => "192.0.2.4",
        "erin" => "192.0.2.5",
        _ => "192.0.2.99",
    }
}

impl Cluster {
    /// An echo from `client` (by `X-Forwarded-For` through the trusted loopback), or from the
    /// loopback itself.
    async fn echo_as(&self, client: Option<&str>) -> Response {
        let mut request =
            self.http.post(format!("{}/api/process", self.base)).json(&json!({"kind": "echo", "payload": 1}));
        if let Some(client) = client {
            request = request.header("x-forwarded-for", address_of(client));
        }
        request.send().await.unwrap()
    }

    async fn admin(&self, path: &str) -> Response {
        self.http.get(format!("http://{}{path}", admin_addr(&self.gateway))).send().await.unwrap()
    }

    async fn backends(&self) -> Vec<Value> {
        let body: Value = self.admin("/admin/backends").await.json().await.unwrap();
        body["pools"][0]["backends"].as_array().unwrap().clone()
    }

    async fn metrics(&self) -> String {
        self.admin("/metrics").await.text().await.unwrap()
    }
}

/// The value of the first sample line starting with `series` (name and labels).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test]
async fn each_client_has_its_own_limit_with_the_headers_to_pace_itself() {
    let config = config_file("trusted_proxies = [\"127.0.0.1\"]\n[rate_limit]\nrate = 0.5\nburst = 3\n");
    let cluster = Cluster::start(1, &["--config", config.path().to_str().unwrap()]).await;

    for remaining in [2, 1, 0] {
        let response = cluster.echo_as(Some("alice")).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "ratelimit-policy"), r#""client";q=3;w=6"#);
        let state = header(&response, "ratelimit");
        assert!(state.starts_with(&format!(r#""client";r={remaining};t="#)), "{state}");
    }
    let refused = cluster.echo_as(Some("alice")).await;
    assert_eq!(header(&refused, "retry-after"), "2", "one request per 2 s");
    assert_eq!(header(&refused, "ratelimit-policy"), r#""client";q=3;w=6"#);
    assert_eq!(header(&refused, "ratelimit"), r#""client";r=0;t=6"#);
    let problem = expect_problem(refused, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    assert_eq!(problem["policy"], "client");

    // Bob, and a client known only by its address, are untouched by Alice's use.
    let bob = cluster.echo_as(Some("bob")).await;
    assert_eq!(bob.status(), StatusCode::OK);
    assert!(header(&bob, "ratelimit").starts_with(r#""client";r=2;"#));
    let anonymous = cluster.echo_as(None).await;
    assert_eq!(anonymous.status(), StatusCode::OK);
    assert!(header(&anonymous, "ratelimit").starts_with(r#""client";r=2;"#));

    // Health probes are never limited.
    for _ in 0..10 {
        let health = cluster
            .http
            .get(format!("{}/health", cluster.base))
            .header("x-forwarded-for", address_of("alice"))
            .send()
            .await;
        assert_eq!(health.unwrap().status(), StatusCode::OK);
    }

    let metrics = cluster.metrics().await;
    assert_eq!(sample(&metrics, r#"rampart_rate_limit_decisions_total{scope="client",decision="denied"}"#), Some(1.0));
    assert_eq!(sample(&metrics, r#"rampart_rate_limit_decisions_total{scope="client",decision="allowed"}"#), Some(5.0));
    assert_eq!(sample(&metrics, r#"rampart_rejections_total{reason="rate_limited"}"#), Some(1.0));
}

#[tokio::test]
async fn route_overrides_and_the_global_limit_apply() {
    let config = config_file(
        "trusted_proxies = [\"127.0.0.1\"]\n[rate_limit]\nrate = 1000\nburst = 1000\nglobal_rate = 0.1\nglobal_burst = 4\n\n\
         [[rate_limit.routes]]\nroute = \"/api/process\"\nrate = 0.1\nburst = 2\n",
    );
    let cluster = Cluster::start(1, &["--config", config.path().to_str().unwrap()]).await;
    // The route's own, tighter client limit.
    for _ in 0..2 {
        let response = cluster.echo_as(Some("carol")).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "ratelimit-policy"), r#""route";q=2;w=20"#);
    }
    let refused = cluster.echo_as(Some("carol")).await;
    assert_eq!(expect_problem(refused, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await["policy"], "route");
    // Two more clients use up the global burst of 4; the fifth request overall is refused.
    assert_eq!(cluster.echo_as(Some("dave")).await.status(), StatusCode::OK);
    assert_eq!(cluster.echo_as(Some("erin")).await.status(), StatusCode::OK);
    let refused = cluster.echo_as(Some("frank")).await;
    assert_eq!(header(&refused, "ratelimit-policy"), r#""global";q=4;w=40"#);
    assert_eq!(expect_problem(refused, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await["policy"], "global");
}

#[tokio::test]
async fn a_hung_worker_trips_its_breaker_traffic_moves_and_it_closes_on_recovery() {
    // Health checks are slowed to a crawl so that the breaker alone has to notice the hang, and
    // round robin keeps sending the hung worker its share (P2C would already steer around it).
    let config = config_file(
        "request_timeout = \"20s\"\nbalance = \"round_robin\"\n[health]\ninterval = \"1h\"\n\n\
         [breaker]\nconsecutive_failures = 3\nslow_call = \"500ms\"\nopen_timeout = \"1s\"\n\
         half_open_probes = 1\njitter = 0.0\n",
    );
    let cluster = Cluster::start(2, &["--config", config.path().to_str().unwrap()]).await;
    let stopped_url = format!("http://{}", cluster.workers[0].listen_addr());
    cluster.echo_ok(0).await;
    cluster.echo_ok(1).await;

    cluster.workers[0].signal(Signal::SIGSTOP);
    // Six calls at once: round robin sends three to the stopped worker, where they hang.
    let mut hung = tokio::task::JoinSet::new();
    for n in 0..6 {
        let (http, url) = (cluster.http.clone(), format!("{}/api/process", cluster.base));
        hung.spawn(async move {
            let response = http.post(url).json(&json!({"kind": "echo", "payload": n})).send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        });
    }
    tokio::time::sleep(Duration::from_millis(800)).await;

    // The stuck calls count as failures: the breaker opens and every request goes to w1, fast.
    for n in 0..20 {
        let started = Instant::now();
        assert_eq!(cluster.echo_ok(n).await["worker"], "w1");
        assert!(started.elapsed() < Duration::from_secs(2), "request {n} waited on the hung worker");
    }
    let backends = cluster.backends().await;
    let stopped = backends.iter().find(|b| b["url"] == stopped_url.as_str()).unwrap();
    assert_eq!(stopped["breaker"]["state"], "open", "{stopped}");
    assert_eq!(stopped["health"], "healthy", "health checks did not step in: {stopped}");
    let metrics = cluster.metrics().await;
    let opened = format!(r#"rampart_breaker_transitions_total{{endpoint="{stopped_url}",from="closed",to="open"}}"#);
    assert_eq!(sample(&metrics, &opened), Some(1.0), "{metrics}");
    assert_eq!(sample(&metrics, &format!(r#"rampart_breaker_state{{endpoint="{stopped_url}"}}"#)), Some(2.0));

    // The worker resumes: the hung calls finish, a probe succeeds and the breaker closes.
    cluster.workers[0].signal(Signal::SIGCONT);
    while let Some(joined) = hung.join_next().await {
        let (status, _) = joined.unwrap();
        assert_eq!(status, StatusCode::OK, "a call that waited out the hang still succeeds");
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut served_by_w0 = false;
    while !served_by_w0 {
        assert!(Instant::now() < deadline, "the recovered worker never took traffic again");
        served_by_w0 = cluster.echo_ok(0).await["worker"] == "w0";
    }
    let backends = cluster.backends().await;
    let recovered = backends.iter().find(|b| b["url"] == stopped_url.as_str()).unwrap();
    assert_eq!(recovered["breaker"]["state"], "closed", "{recovered}");
    let metrics = cluster.metrics().await;
    let closed =
        format!(r#"rampart_breaker_transitions_total{{endpoint="{stopped_url}",from="half_open",to="closed"}}"#);
    assert_eq!(sample(&metrics, &closed), Some(1.0));
}

#[tokio::test]
async fn with_every_breaker_open_the_answer_is_breaker_open_at_once() {
    let config = config_file(
        "request_timeout = \"20s\"\n[health]\ninterval = \"1h\"\n\n\
         [breaker]\nconsecutive_failures = 2\nslow_call = \"200ms\"\nopen_timeout = \"30s\"\njitter = 0.0\n",
    );
    let cluster = Cluster::start(1, &["--config", config.path().to_str().unwrap()]).await;
    cluster.echo_ok(0).await;
    cluster.workers[0].signal(Signal::SIGSTOP);
    let mut hung = tokio::task::JoinSet::new();
    for _ in 0..2 {
        let (http, url) = (cluster.http.clone(), format!("{}/api/process", cluster.base));
        hung.spawn(async move { http.post(url).json(&json!({"kind": "echo"})).send().await.unwrap().status() });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let refused = cluster.echo_as(None).await;
    assert!(started.elapsed() < Duration::from_secs(1), "refused at once");
    let retry_after: u64 = header(&refused, "retry-after").parse().unwrap();
    assert!((29..=30).contains(&retry_after), "retry when the breaker half-opens: {retry_after}");
    expect_problem(refused, StatusCode::SERVICE_UNAVAILABLE, "breaker_open").await;
    let metrics = cluster.metrics().await;
    assert_eq!(sample(&metrics, r#"rampart_rejections_total{reason="breaker_open"}"#), Some(1.0));
    cluster.workers[0].signal(Signal::SIGCONT);
    while let Some(status) = hung.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::OK);
    }
}

#[tokio::test]
async fn jobs_that_fail_by_their_own_logic_never_trip_the_breaker() {
    let config = config_file("[breaker]\nconsecutive_failures = 2\n");
    let cluster = Cluster::start(1, &["--config", config.path().to_str().unwrap()]).await;
    for _ in 0..10 {
        let failed = cluster.process(&json!({"kind": "fail"})).await;
        expect_problem(failed, StatusCode::UNPROCESSABLE_ENTITY, "job_failed").await;
        let unknown = cluster.process(&json!({"kind": "nope"})).await;
        expect_problem(unknown, StatusCode::UNPROCESSABLE_ENTITY, "unknown_kind").await;
        let too_slow = cluster.process(&json!({"kind": "sleep", "payload": {"ms": 1000}, "timeout_ms": 1})).await;
        expect_problem(too_slow, StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded").await;
    }
    let backends = cluster.backends().await;
    assert_eq!(backends[0]["breaker"]["state"], "closed");
    assert_eq!(backends[0]["breaker"]["consecutive_failures"], 0);
    cluster.echo_ok(1).await;
}

#[tokio::test]
async fn metrics_count_requests_by_route_method_and_status() {
    let cluster = Cluster::start(1, &[]).await;
    for n in 0..5 {
        cluster.echo_ok(n).await;
    }
    let bad = cluster.http.post(format!("{}/api/process", cluster.base)).body("{").send().await.unwrap();
    assert_eq!(bad.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    cluster.http.get(format!("{}/no/such/path/123", cluster.base)).send().await.unwrap();

    let metrics = cluster.metrics().await;
    let ok = r#"rampart_http_requests_total{route="/api/process",method="POST",status="200"}"#;
    assert_eq!(sample(&metrics, ok), Some(5.0), "{metrics}");
    let refused = r#"rampart_http_requests_total{route="/api/process",method="POST",status="415"}"#;
    assert_eq!(sample(&metrics, refused), Some(1.0));
    let unmatched = r#"rampart_http_requests_total{route="unmatched",method="GET",status="404"}"#;
    assert_eq!(sample(&metrics, unmatched), Some(1.0), "raw paths never become labels");
    assert!(!metrics.contains("/no/such/path"));
    assert!(metrics.contains("# TYPE rampart_http_request_duration_seconds histogram"));
    let buckets =
        r#"rampart_http_request_duration_seconds_bucket{route="/api/process",method="POST",status="200",le="+Inf"}"#;
    assert_eq!(sample(&metrics, buckets), Some(5.0));
    for name in [
        "rampart_breaker_state{",
        "rampart_endpoint_in_flight{",
        "rampart_endpoint_healthy{",
        "rampart_process_resident_memory_bytes",
        "rampart_tokio_alive_tasks",
    ] {
        assert!(metrics.contains(name), "{name} missing from\n{metrics}");
    }

    let summary: Value = cluster.admin("/metrics.json").await.json().await.unwrap();
    assert!(summary["requests"].as_u64().unwrap() >= 7, "{summary}");
    assert!(summary["tasks"].as_u64().unwrap() > 0, "{summary}");
    assert!(summary["memory"]["resident_bytes"].as_u64().unwrap() > 1_000_000, "{summary}");
    assert_eq!(summary["pools"][0]["backends"][0]["breaker"]["state"], "closed");
}
