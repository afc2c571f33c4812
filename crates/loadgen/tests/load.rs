//! `rampart-load` as a user runs it, against real local servers: an HTTP server in this test
//! (HTTP/1.1 and h2c) and a real Rampart worker for gRPC.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::{
    Router,
    body::Bytes,
    http::{HeaderMap, StatusCode},
    routing::{get, post},
};
use rampart_testkit::{binary, spawn_worker, worker_url};
use serde_json::Value;
use std::{
    process::Output,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

/// A test server: `/ok`, `/flaky` (every third answer is 500), `/checked` (400 unless the body
/// and header arrive), `/stall-once` (the first request waits 300 ms).
async fn server() -> String {
    let flaky = Arc::new(AtomicU64::new(0));
    let stalled = Arc::new(AtomicBool::new(false));
    let app = Router::new()
        .route("/ok", get(|| async { "hi" }))
        .route(
            "/flaky",
            get(move || {
                let count = flaky.fetch_add(1, Ordering::Relaxed);
                async move { if count % 3 == 2 { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK } }
            }),
        )
        .route(
            "/checked",
            post(|headers: HeaderMap, body: Bytes| async move {
                let header = headers.get("x-test").is_some_and(|value| value == "yes");
                if header && body.as_ref() == b"{\"n\":1}" { StatusCode::OK } else { StatusCode::BAD_REQUEST }
            }),
        )
        .route(
            "/stall-once",
            get(move || {
                let first = !stalled.swap(true, Ordering::Relaxed);
                async move {
                    if first {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                    "ok"
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

/// Runs `rampart-load ARGS` to its end.
async fn load(args: &[&str]) -> Output {
    let path = binary("rampart-load");
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    tokio::task::spawn_blocking(move || std::process::Command::new(path).args(&args).output().unwrap()).await.unwrap()
}

/// Runs with `--json` and returns the report.
async fn report(args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let output = load(&all).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test]
async fn a_closed_loop_run_sends_exactly_what_it_was_asked() {
    let base = server().await;
    let report = report(&["-n", "500", "-c", "8", &format!("{base}/ok")]).await;
    assert_eq!(report["requests"], 500);
    assert_eq!(report["succeeded"], 500);
    assert_eq!(report["statuses"]["200"], 500);
    assert_eq!(report["success_rate"], 100.0);
    assert!(report["qps"].as_f64().unwrap() > 0.0);
    let latency = &report["latency_ms"];
    assert!(latency["p50"].as_f64().unwrap() <= latency["p99"].as_f64().unwrap());
    assert!(latency["p99"].as_f64().unwrap() <= latency["max"].as_f64().unwrap());
}

#[tokio::test]
async fn failures_are_broken_down_by_status() {
    let base = server().await;
    let report = report(&["-n", "300", "-c", "1", &format!("{base}/flaky")]).await;
    assert_eq!(report["statuses"]["200"], 200);
    assert_eq!(report["statuses"]["500"], 100);
    assert_eq!(report["failed"], 100);
    assert!((report["success_rate"].as_f64().unwrap() - 66.666).abs() < 0.01);
}

#[tokio::test]
async fn bodies_and_headers_are_sent_from_flags_and_files() {
    let base = server().await;
    let url = format!("{base}/checked");
    let flags = report(&["-n", "50", "-m", "POST", "-b", "{\"n\":1}", "-H", "X-Test: yes", &url]).await;
    assert_eq!(flags["statuses"]["200"], 50, "{flags}");
    let mut file = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut file, b"{\"n\":1}").unwrap();
    let path = file.path().to_str().unwrap();
    let from_file = report(&["-n", "50", "-m", "POST", "--body-file", path, "-H", "X-Test: yes", &url]).await;
    assert_eq!(from_file["statuses"]["200"], 50, "{from_file}");
    let without = report(&["-n", "5", "-m", "POST", &url]).await;
    assert_eq!(without["statuses"]["400"], 5);
}

#[tokio::test]
async fn an_open_loop_holds_its_rate() {
    let base = server().await;
    let report = report(&["--rate", "400", "-d", "2s", "-c", "16", &format!("{base}/ok")]).await;
    let requests = report["requests"].as_u64().unwrap();
    assert!((799..=800).contains(&requests), "two seconds at 400/s: {requests}");
    let qps = report["qps"].as_f64().unwrap();
    assert!((qps - 400.0).abs() / 400.0 < 0.02, "within 2% of the asked rate: {qps}");
    assert_eq!(report["mode"], "open");
}

#[tokio::test]
async fn a_stall_is_charged_to_every_request_it_held_up() {
    // One connection, 200 requests/s, and the server stalls 300 ms once: in an open loop the ~60
    // requests due during the stall wait for it, and their latency says so (coordinated
    // omission corrected). A closed loop sees one slow request.
    let base = server().await;
    let open = report(&["--rate", "200", "-d", "2s", "-c", "1", &format!("{base}/stall-once")]).await;
    let open_p99 = open["latency_ms"]["p99"].as_f64().unwrap();
    let open_p90 = open["latency_ms"]["p90"].as_f64().unwrap();
    assert!(open_p99 > 100.0, "the requests behind the stall count their wait: p99 {open_p99} ms");
    assert!(open_p90 > 10.0, "more than one request was held up: p90 {open_p90} ms");

    let base = server().await;
    let closed = report(&["-d", "2s", "-c", "1", &format!("{base}/stall-once")]).await;
    let closed_p99 = closed["latency_ms"]["p99"].as_f64().unwrap();
    assert!(closed_p99 < 50.0, "a closed loop hides the stall: p99 {closed_p99} ms");
    assert!(closed["latency_ms"]["max"].as_f64().unwrap() >= 300.0);
}

#[tokio::test]
async fn http2_and_grpc_modes_work() {
    let base = server().await;
    let h2 = report(&["--http2", "-n", "300", "-c", "20", &format!("{base}/ok")]).await;
    assert_eq!((h2["protocol"].as_str(), h2["succeeded"].as_u64()), (Some("h2c"), Some(300)), "{h2}");

    let worker = spawn_worker(&[]).await;
    let url = worker_url(&worker);
    let grpc = report(&["--grpc", "--kind", "echo", "--payload", "{\"a\":1}", "-n", "200", "-c", "10", &url]).await;
    assert_eq!(grpc["statuses"]["OK"], 200, "{grpc}");
    assert_eq!(grpc["bytes_received"], 200 * 7, "each echo returns its 7-byte payload");
    let unknown = report(&["--grpc", "--kind", "nope", "-n", "5", &url]).await;
    assert_eq!(unknown["statuses"]["UNIMPLEMENTED"], 5, "{unknown}");
}

#[tokio::test]
async fn wrong_targets_get_clear_errors_and_no_run() {
    let closed = rampart_testkit::closed_port();
    let output = load(&["-n", "10", &format!("http://127.0.0.1:{closed}/")]).await;
    assert_eq!(output.status.code(), Some(1));
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains(&format!("cannot connect to 127.0.0.1:{closed}")) && error.contains("refused"), "{error}");

    for (url, expected) in [
        ("https://127.0.0.1/", "needs --cacert FILE (or --insecure"),
        ("ftp://127.0.0.1/", "invalid URL"),
        ("127.0.0.1:80", "invalid URL"),
    ] {
        let output = load(&["-n", "1", url]).await;
        assert_eq!(output.status.code(), Some(1), "{url}");
        assert!(String::from_utf8_lossy(&output.stderr).contains(expected), "{url}");
    }
    let base = server().await;
    let output = load(&["-n", "1", "-H", "no colon", &format!("{base}/ok")]).await;
    assert!(String::from_utf8_lossy(&output.stderr).contains("Name: value"));
    let output = load(&["--rate", "0", &format!("{base}/ok")]).await;
    assert_eq!(output.status.code(), Some(2), "clap refuses a zero rate");
    let output = load(&["--http2", "-n", "1", &format!("{base}/ok")]).await;
    assert!(output.status.success(), "the test server speaks h2c");
}

#[tokio::test]
async fn the_text_report_and_the_plot() {
    let base = server().await;
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("run.svg");
    let output = load(&["-d", "1s", "-c", "4", "--plot", plot.to_str().unwrap(), &format!("{base}/ok")]).await;
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    for part in [
        "total,",
        "succeeded",
        "failed",
        "% success)",
        "requests/s (QPS)",
        "mean",
        "p99.9",
        "Statuses     200:",
        "Plot",
    ] {
        assert!(text.contains(part), "{part:?} missing from:\n{text}");
    }
    assert!(!text.contains('\r'), "no progress line when not on a terminal");
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.matches("<polyline").count() == 2, "{svg}");
}
