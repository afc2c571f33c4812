//! `rampart up` as a user runs it: real processes, real ports, stopped together.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use nix::sys::signal::Signal;
use rampart_testkit::Process;
use reqwest::{Client, StatusCode};
use serde_json::Value;
use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

/// The last line `rampart up` prints once everything is ready.
const READY: &str = "Ctrl-C stops everything.";

/// The value after `label` in `rampart up`'s summary.
fn summary_value(output: &str, label: &str) -> String {
    output
        .lines()
        .find_map(|line| line.trim_start().strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{output}"))
        .trim()
        .to_owned()
}

async fn up(args: &[&str], cwd: &std::path::Path) -> Process {
    let path = rampart_testkit::binary("rampart");
    let mut all = vec!["up"];
    all.extend_from_slice(args);
    Process::start_in(path, "rampart up", &all, READY, Some(cwd)).await
}

async fn refuses_connections(url: &str, within: Duration) -> bool {
    let address = url.trim_start_matches("http://").to_owned();
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(&address).await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn up_serves_through_every_worker_and_sigterm_stops_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("state");
    let mut rampart = up(
        &[
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--workers",
            "3",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        dir.path(),
    )
    .await;
    let output = rampart.output();
    let api = summary_value(&output, "REST API");
    let admin = summary_value(&output, "admin");
    let workers: Vec<String> = summary_value(&output, "workers").split(", ").map(str::to_owned).collect();
    assert_eq!(workers.len(), 3, "{output}");
    assert!(data.is_dir(), "the data directory is created");

    let http = Client::new();
    let mut served_by = HashSet::new();
    for n in 0..30 {
        let answer: Value =
            http.get(format!("{api}/api/process?data=n{n}")).send().await.unwrap().json().await.unwrap();
        assert_eq!(answer["result"], format!("n{n}"));
        served_by.insert(answer["worker"].as_str().unwrap().to_owned());
    }
    assert_eq!(served_by.len(), 3, "every worker takes requests: {served_by:?}");
    let backends: Value = http.get(format!("{admin}/admin/backends")).send().await.unwrap().json().await.unwrap();
    assert_eq!(backends["pools"][0]["backends"].as_array().unwrap().len(), 3);

    rampart.signal(Signal::SIGTERM);
    let status = rampart.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "{status:?}\n{}", rampart.output());
    for url in workers.iter().chain([&api]) {
        assert!(
            refuses_connections(url, Duration::from_secs(1)).await,
            "{url} still listening after rampart up stopped"
        );
    }
}

#[tokio::test]
async fn children_stop_when_rampart_up_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let mut rampart =
        up(&["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--workers", "1"], dir.path()).await;
    let output = rampart.output();
    let api = summary_value(&output, "REST API");
    let worker = summary_value(&output, "workers");
    rampart.kill9().await;
    for url in [&api, &worker] {
        assert!(refuses_connections(url, Duration::from_secs(10)).await, "{url} outlived a killed rampart up");
    }
}

#[tokio::test]
async fn with_no_arguments_it_just_works() {
    let dir = tempfile::tempdir().unwrap();
    let mut rampart = up(&[], dir.path()).await;
    let output = rampart.output();
    assert_eq!(summary_value(&output, "REST API"), "http://127.0.0.1:8080");
    assert_eq!(summary_value(&output, "admin"), "http://127.0.0.1:9901");
    assert_eq!(summary_value(&output, "workers").split(", ").count(), 2);
    assert!(dir.path().join("data").is_dir(), "./data is created in the working directory");
    let response = Client::new().get("http://127.0.0.1:8080/api/process?data=hello").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap()["result"], "hello");
    rampart.signal(Signal::SIGINT);
    assert!(rampart.wait_exit(Duration::from_secs(30)).await.success());
}

#[tokio::test]
async fn a_port_in_use_is_a_clear_error_and_nothing_is_left_running() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let output = tokio::process::Command::new(rampart_testkit::binary("rampart"))
        .args(["up", "--listen", &format!("127.0.0.1:{port}"), "--admin-listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")), "{stderr}");
    assert!(stderr.contains("gateway exited before it was ready"), "{stderr}");
    assert!(stdout.contains("rampart: stopped"), "{stdout}");
    // The workers it had started are gone too.
    let workers: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("[worker-") && line.contains("worker ready"))
        .filter_map(|line| line.split_once("address=")?.1.split_whitespace().next())
        .collect();
    assert_eq!(workers.len(), 2, "{stderr}");
    for worker in workers {
        assert!(refuses_connections(worker, Duration::from_secs(5)).await, "{worker} outlived a failed rampart up");
    }
}
