//! The worker's admin listener beyond loopback: it needs a token, and asks callers for it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use rampart_testkit::{Process, admin_addr};

#[tokio::test]
async fn an_admin_listener_beyond_loopback_needs_a_token_and_asks_for_it() {
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_rampart-worker"))
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!refused.status.success(), "reachable from other hosts without a token: no start");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--admin-token-file"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("admin-token");
    std::fs::write(&token, "worker-admin\n").unwrap();
    let worker = Process::start(
        "rampart-worker",
        &["--listen", "127.0.0.1:0", "--admin-listen", "0.0.0.0:0", "--admin-token-file", token.to_str().unwrap()],
        "listening on",
    )
    .await;
    let port = admin_addr(&worker).rsplit_once(':').unwrap().1.to_owned();
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    let http = reqwest::Client::new();
    assert_eq!(http.get(&metrics).send().await.unwrap().status(), 401);
    assert_eq!(http.get(&metrics).bearer_auth("worker-admin").send().await.unwrap().status(), 200);
    let health = http.get(format!("http://127.0.0.1:{port}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200, "probes need no token");
}
