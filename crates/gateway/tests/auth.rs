//! API keys at the front door, on the gateway binary in front of a real worker.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use rampart_gateway::auth::new_key;
use rampart_testkit::{spawn_gateway, spawn_worker, worker_url};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

#[tokio::test]
async fn keys_are_required_checked_and_their_tenant_is_the_rate_limit_bucket() {
    let (first, first_hash) = new_key().unwrap();
    let (second, second_hash) = new_key().unwrap();
    let worker = spawn_worker(&[]).await;
    let mut config = tempfile::NamedTempFile::new().unwrap();
    let text = format!(
        "[auth]\ndefault = \"required\"\n\
         [[auth.keys]]\nid = \"ci\"\ntenant = \"acme\"\nhash = \"{first_hash}\"\n\
         [[auth.keys]]\nid = \"laptop\"\ntenant = \"acme\"\nhash = \"{second_hash}\"\n\
         [rate_limit]\nrate = 0.1\nburst = 2\n"
    );
    std::io::Write::write_all(&mut config, text.as_bytes()).unwrap();
    let gateway = spawn_gateway(&[worker_url(&worker)], &["--config", config.path().to_str().unwrap()]).await;
    let http = Client::new();
    let base = format!("http://{}", gateway.listen_addr());
    let echo = json!({"kind": "echo", "payload": 1});

    assert_eq!(http.get(format!("{base}/health")).send().await.unwrap().status(), StatusCode::OK, "probes stay open");

    let missing = http.post(format!("{base}/api/process")).json(&echo).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(missing.headers()["www-authenticate"], "Bearer realm=\"rampart\"");
    assert_eq!(missing.headers()["content-type"], "application/problem+json");
    let problem: Value = missing.json().await.unwrap();
    assert_eq!(problem["code"], "unauthorized");

    let wrong = http.post(format!("{base}/api/process")).bearer_auth("rk_not-a-key").json(&echo).send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));

    // Two keys of one tenant, in either header, share the tenant's bucket of two.
    let by_bearer = http.post(format!("{base}/api/process")).bearer_auth(&first).json(&echo).send().await.unwrap();
    assert_eq!(by_bearer.status(), StatusCode::OK);
    let by_header =
        http.post(format!("{base}/api/process")).header("x-api-key", &second).json(&echo).send().await.unwrap();
    assert_eq!(by_header.status(), StatusCode::OK);
    let over = http
        .post(format!("{base}/api/process"))
        .header("x-api-key", &first)
        .header("x-forwarded-for", "203.0.113.9")
        .json(&echo)
        .send()
        .await
        .unwrap();
    assert_eq!(over.status(), StatusCode::TOO_MANY_REQUESTS, "the tenant's limit holds whatever key is shown");

    // A refused credential costs nothing: it never reached the limiter.
    let refused = http.post(format!("{base}/api/process")).bearer_auth("rk_other").json(&echo).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_hash_that_is_not_a_digest_stops_the_gateway_naming_the_key() {
    let mut config = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut config, b"[[auth.keys]]\nid = \"ci\"\ntenant = \"acme\"\nhash = \"rk_plain\"\n")
        .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_rampart-gateway"))
        .args(["--config", config.path().to_str().unwrap(), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("auth.keys[0].hash") && stderr.contains("sha256:"), "{stderr}");
}
