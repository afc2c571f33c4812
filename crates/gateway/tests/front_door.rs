//! Who may call the gateway, on the binary in front of a real worker: API keys, the keys file, and
//! cross-origin policies.

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
         [[auth.routes]]\nroute = \"/api/jobs/{{id}}\"\nauth = \"none\"\n\
         [rate_limit]\nrate = 0.1\nburst = 2\n"
    );
    std::io::Write::write_all(&mut config, text.as_bytes()).unwrap();
    let gateway = spawn_gateway(&[worker_url(&worker)], &["--config", config.path().to_str().unwrap()]).await;
    let http = Client::new();
    let base = format!("http://{}", gateway.listen_addr());
    let echo = json!({"kind": "echo", "payload": 1});

    assert_eq!(http.get(format!("{base}/health")).send().await.unwrap().status(), StatusCode::OK, "probes stay open");
    let open_route = http.get(format!("{base}/api/jobs/01a21bfd-29a8-7657-a78e-fecbcfedaa68")).send().await.unwrap();
    assert_eq!(open_route.status(), StatusCode::NOT_FOUND, "[[auth.routes]] opened this route: no 401");

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

#[tokio::test]
async fn a_key_revoked_in_the_keys_file_stops_working_within_a_second_and_a_broken_file_changes_nothing() {
    let (kept, kept_hash) = new_key().unwrap();
    let (revoked, revoked_hash) = new_key().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    let entry = |id: &str, hash: &str| format!("[[keys]]\nid = \"{id}\"\ntenant = \"{id}\"\nhash = \"{hash}\"\n");
    std::fs::write(&keys, entry("kept", &kept_hash) + &entry("revoked", &revoked_hash)).unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, format!("[auth]\nkeys_file = {:?}\n", keys.to_str().unwrap())).unwrap();
    let worker = spawn_worker(&[]).await;
    let gateway = spawn_gateway(&[worker_url(&worker)], &["--config", config.to_str().unwrap()]).await;
    let http = Client::new();
    let url = format!("http://{}/api/process", gateway.listen_addr());
    let status = async |key: &str| {
        let response = http.post(&url).bearer_auth(key).json(&json!({"kind": "echo"})).send().await.unwrap();
        response.status()
    };
    assert_eq!(status(&revoked).await, StatusCode::OK);

    std::fs::write(&keys, entry("kept", &kept_hash)).unwrap();
    let edited = std::time::Instant::now();
    while status(&revoked).await == StatusCode::OK {
        assert!(edited.elapsed() < std::time::Duration::from_secs(1), "revoked within a second, no restart");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status(&revoked).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(&kept).await, StatusCode::OK);

    // A broken file is refused; the keys read before stay.
    std::fs::write(&keys, "[[keys]]\nid = \"half-written").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    assert_eq!(status(&kept).await, StatusCode::OK);
    assert_eq!(status(&revoked).await, StatusCode::UNAUTHORIZED);
    let metrics = http
        .get(format!("http://{}/metrics", rampart_testkit::admin_addr(&gateway)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("rampart_auth_keys_file_errors_total 1"), "{metrics}");
}

#[tokio::test]
async fn cors_preflights_are_answered_by_the_gateway_and_allowed_origins_can_read_the_answers() {
    let worker = spawn_worker(&[]).await;
    let dead = rampart_testkit::closed_port();
    let mut config = tempfile::NamedTempFile::new().unwrap();
    let text = format!(
        "[[routes]]\nprefix = \"/raw\"\nupstreams = [\"http://127.0.0.1:{dead}\"]\n\
         [[cors]]\nroutes = [\"/api/process\", \"/raw\"]\nallowed_origins = [\"https://app.example.com\"]\n"
    );
    std::io::Write::write_all(&mut config, text.as_bytes()).unwrap();
    let gateway = spawn_gateway(&[worker_url(&worker)], &["--config", config.path().to_str().unwrap()]).await;
    let http = Client::new();
    let base = format!("http://{}", gateway.listen_addr());
    let preflight = async |path: &str, origin: &str, headers: &str| {
        http.request(reqwest::Method::OPTIONS, format!("{base}{path}"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", headers)
            .send()
            .await
            .unwrap()
    };
    for path in ["/api/process", "/raw/orders"] {
        let allowed = preflight(path, "https://app.example.com", "content-type, idempotency-key").await;
        assert_eq!(allowed.status(), StatusCode::NO_CONTENT, "{path}: answered here, the upstream is down");
        assert_eq!(allowed.headers()["access-control-allow-origin"], "https://app.example.com");
        assert!(allowed.headers()["access-control-allow-methods"].to_str().unwrap().contains("POST"));
        assert_eq!(allowed.headers()["access-control-max-age"], "600");
    }
    let other = preflight("/api/process", "https://evil.example", "content-type").await;
    assert_eq!(other.status(), StatusCode::FORBIDDEN);
    assert_eq!(other.json::<Value>().await.unwrap()["code"], "forbidden");
    let odd_header = preflight("/api/process", "https://app.example.com", "x-custom").await;
    assert_eq!(odd_header.status(), StatusCode::FORBIDDEN);

    let answered = http
        .post(format!("{base}/api/process"))
        .header("origin", "https://app.example.com")
        .json(&json!({"kind": "echo", "payload": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), StatusCode::OK);
    assert_eq!(answered.headers()["access-control-allow-origin"], "https://app.example.com");
    assert!(answered.headers()["access-control-expose-headers"].to_str().unwrap().contains("retry-after"));
    let uncovered = preflight("/api/jobs", "https://app.example.com", "content-type").await;
    assert!(uncovered.headers().get("access-control-allow-origin").is_none(), "no policy covers /api/jobs");
}

#[tokio::test]
async fn an_admin_listener_beyond_loopback_needs_a_token_and_refuses_callers_without_it() {
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_rampart-gateway"))
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!refused.status.success(), "no token, reachable from other hosts: no start");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("admin_token_file"), "{stderr}");

    let worker = spawn_worker(&[]).await;
    let (_gateway, admin, _dir) =
        rampart_testkit::spawn_gateway_with_admin_token(&worker_url(&worker), "s3cret-admin-token").await;
    let http = Client::new();
    let without = http.get(format!("{admin}/metrics")).send().await.unwrap();
    assert_eq!(without.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(without.headers()["content-type"], "application/problem+json");
    assert!(without.headers().contains_key("www-authenticate"));
    let wrong = http.get(format!("{admin}/admin/backends")).bearer_auth("guess").send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let with = http.get(format!("{admin}/metrics")).bearer_auth("s3cret-admin-token").send().await.unwrap();
    assert_eq!(with.status(), StatusCode::OK, "the file's token, white space trimmed");
    let health = http.get(format!("{admin}/health")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK, "orchestrators' probes need no token");
}

#[tokio::test]
async fn a_key_uses_only_its_scopes_and_keeps_to_its_own_rate() {
    let (narrow, narrow_hash) = new_key().unwrap();
    let (open, open_hash) = new_key().unwrap();
    let (stranger, stranger_hash) = new_key().unwrap();
    let worker = spawn_worker(&[]).await;
    let mut config = tempfile::NamedTempFile::new().unwrap();
    let text = format!(
        "[auth]\n\
         [[auth.keys]]\nid = \"narrow\"\ntenant = \"acme\"\nhash = \"{narrow_hash}\"\n\
         scopes = [\"process:echo\"]\nrate = 0.01\nburst = 2\n\
         [[auth.keys]]\nid = \"open\"\ntenant = \"acme\"\nhash = \"{open_hash}\"\n\
         [[auth.keys]]\nid = \"stranger\"\ntenant = \"globex\"\nhash = \"{stranger_hash}\"\n"
    );
    std::io::Write::write_all(&mut config, text.as_bytes()).unwrap();
    let gateway = spawn_gateway(&[worker_url(&worker)], &["--config", config.path().to_str().unwrap()]).await;
    let http = Client::new();
    let base = format!("http://{}", gateway.listen_addr());
    let echo = json!({"kind": "echo", "payload": 1});

    let allowed = http.post(format!("{base}/api/process")).bearer_auth(&narrow).json(&echo).send().await.unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
    let other_kind = http
        .post(format!("{base}/api/process"))
        .bearer_auth(&narrow)
        .json(&json!({"kind": "sleep", "payload": {"ms": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(other_kind.status(), StatusCode::FORBIDDEN);
    assert_eq!(other_kind.headers()["content-type"], "application/problem+json");
    let problem: Value = other_kind.json().await.unwrap();
    assert_eq!((problem["code"].as_str(), problem["scope"].as_str()), (Some("forbidden"), Some("process:sleep")));
    let jobs = http.post(format!("{base}/api/jobs")).bearer_auth(&narrow).json(&echo).send().await.unwrap();
    assert_eq!(jobs.status(), StatusCode::FORBIDDEN, "no jobs:* scope: the route is closed before its body is read");

    // Its own limit (a burst of 2: the echo and the refused kind, both read by a handler) holds;
    // the route refused before any work cost nothing. The tenant's other key is not held by it.
    let over = http.post(format!("{base}/api/process")).bearer_auth(&narrow).json(&echo).send().await.unwrap();
    assert_eq!(over.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(over.headers()["ratelimit-policy"], "\"key\";q=2;w=200");
    let problem: Value = over.json().await.unwrap();
    assert_eq!(problem["policy"], "key");
    let unscoped = http.post(format!("{base}/api/jobs")).bearer_auth(&open).json(&echo).send().await.unwrap();
    assert_eq!(unscoped.status(), StatusCode::ACCEPTED, "a key without scopes may use every route");

    // The job belongs to its tenant: stored with it, shown to it, hidden from other tenants.
    let job: Value = unscoped.json().await.unwrap();
    let url = format!("{base}/api/jobs/{}", job["id"].as_str().unwrap());
    let own: Value = http.get(&url).bearer_auth(&open).send().await.unwrap().json().await.unwrap();
    assert_eq!(own["tenant"], "acme");
    let other = http.get(&url).bearer_auth(&stranger).send().await.unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND, "another tenant's job is not there for it");
    let cancel = http.delete(&url).bearer_auth(&stranger).send().await.unwrap();
    assert_eq!(cancel.status(), StatusCode::NOT_FOUND);

    // The tenant is a metric label.
    let metrics = http.get(format!("http://{}/metrics", rampart_testkit::admin_addr(&gateway))).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(metrics.contains("rampart_tenant_requests_total{tenant=\"acme\",class=\"2xx\"}"), "{metrics}");
    assert!(metrics.contains("rampart_tenant_requests_total{tenant=\"globex\",class=\"4xx\"} 2"), "{metrics}");
}
