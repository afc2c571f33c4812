//! Traffic management on a real gateway: balancing away from slow and failing workers, retries
//! that never run a job twice, deadlines, admission, drain, and the reverse proxy.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use nix::sys::signal::Signal;
use rampart_testkit::{Process, spawn_gateway};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};
use support::{
    Cluster, config_file, expect_problem,
    peers::{Behaviour, ScriptedWorker, Upstream},
};

async fn gateway_for(workers: &[String], config: &str) -> (Process, tempfile::NamedTempFile, String) {
    let file = config_file(config);
    let gateway = spawn_gateway(workers, &["--config", file.path().to_str().unwrap()]).await;
    let base = format!("http://{}", gateway.listen_addr());
    (gateway, file, base)
}

fn echo(n: usize) -> Value {
    json!({"kind": "echo", "payload": {"n": n}})
}

#[tokio::test]
async fn slow_and_fast_failing_workers_get_less_traffic_than_a_healthy_one() {
    let healthy = ScriptedWorker::start("healthy", Behaviour::Echo { delay: Duration::from_millis(1) }).await;
    let slow = ScriptedWorker::start("slow", Behaviour::Echo { delay: Duration::from_millis(40) }).await;
    let failing = ScriptedWorker::start("failing", Behaviour::FailFast).await;
    let urls = [healthy.url.clone(), slow.url.clone(), failing.url.clone()];
    // Idempotent requests, so a failed call is retried elsewhere and every request succeeds.
    let (_gateway, _config, base) = gateway_for(&urls, "[retry]\nbudget_ratio = 1.0\n").await;
    let http = Client::new();
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..8 {
        let (http, url) = (http.clone(), format!("{base}/api/process"));
        clients.spawn(async move {
            for n in 0..40 {
                let response = http
                    .post(&url)
                    .header("idempotency-key", format!("{client}-{n}"))
                    .json(&echo(n))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::OK, "{}", response.text().await.unwrap());
            }
        });
    }
    while let Some(done) = clients.join_next().await {
        done.unwrap();
    }
    let (h, s, f) = (healthy.calls(), slow.calls(), failing.calls());
    println!("calls: healthy {h}, slow {s}, failing {f}");
    assert!(h > 3 * s, "the slow worker gets much less: {h} vs {s}");
    assert!(h > 3 * f, "the failing worker gets much less: {h} vs {f}");
    assert!(s > 0, "the slow worker is still tried now and then");
}

#[tokio::test]
async fn a_worker_killed_under_load_fails_only_calls_in_flight_on_it() {
    let mut cluster = Cluster::start(2, &[]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..12)
        .map(|client| {
            let (http, url, stop) = (cluster.http.clone(), format!("{}/api/process", cluster.base), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut outcomes: HashMap<String, usize> = HashMap::new();
                while !stop.load(Ordering::Relaxed) {
                    let body = json!({"kind": "sleep", "payload": {"ms": 30}});
                    let response = http.post(&url).json(&body).send().await.unwrap();
                    let outcome = match response.status() {
                        StatusCode::OK => "ok".to_owned(),
                        _ => response.json::<Value>().await.unwrap()["code"].as_str().unwrap().to_owned(),
                    };
                    *outcomes.entry(outcome).or_default() += 1;
                }
                (client, outcomes)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.workers[0].kill9().await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    let mut totals: HashMap<String, usize> = HashMap::new();
    for client in clients {
        let (_, outcomes) = client.await.unwrap();
        for (outcome, count) in outcomes {
            *totals.entry(outcome).or_default() += count;
        }
    }
    println!("outcomes: {totals:?}");
    let failed: usize = totals.iter().filter(|(outcome, _)| *outcome != "ok").map(|(_, count)| count).sum();
    // At most one call per client was in flight on the killed worker; every other request,
    // including those that had not reached it yet, succeeded.
    assert!(failed <= 12, "{totals:?}");
    assert!(totals.keys().all(|outcome| outcome == "ok" || outcome == "worker_failed"), "{totals:?}");
    assert!(totals["ok"] > 100, "{totals:?}");
    assert_eq!(cluster.echo_ok(1).await["worker"], "w1");
}

#[tokio::test]
async fn idempotent_requests_survive_a_killed_worker_without_a_single_failure() {
    let mut cluster = Cluster::start(2, &[]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..12)
        .map(|client| {
            let (http, url, stop) = (cluster.http.clone(), format!("{}/api/process", cluster.base), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut failures = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let body = json!({"kind": "sleep", "payload": {"ms": 30}});
                    let response = http
                        .post(&url)
                        .header("idempotency-key", format!("{client}-{n}"))
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    if response.status() != StatusCode::OK {
                        failures.push(response.text().await.unwrap());
                    }
                }
                failures
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.workers[0].kill9().await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        let failures = client.await.unwrap();
        assert!(failures.is_empty(), "{failures:?}");
    }
    let metrics = cluster
        .http
        .get(format!("http://{}/metrics", rampart_testkit::admin_addr(&cluster.gateway)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("rampart_retries_total{"), "retries are counted apart: {metrics}");
}

#[tokio::test]
async fn the_remaining_budget_travels_as_grpc_timeout_and_a_spent_one_never_reaches_a_worker() {
    let worker = ScriptedWorker::start("w", Behaviour::Echo { delay: Duration::from_secs(5) }).await;
    let (_gateway, _config, base) = gateway_for(std::slice::from_ref(&worker.url), "").await;
    let http = Client::new();
    let started = Instant::now();
    let response =
        http.post(format!("{base}/api/process")).header("request-timeout", "0.3").json(&echo(1)).send().await.unwrap();
    expect_problem(response, StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded").await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(290) && took < Duration::from_secs(2), "{took:?}");
    let timeouts = worker.seen.grpc_timeouts.lock().unwrap().clone();
    assert_eq!(timeouts.len(), 1);
    let forwarded: u64 = timeouts[0].trim_end_matches(|c: char| c.is_alphabetic()).parse().unwrap();
    let unit = timeouts[0].trim_start_matches(|c: char| c.is_ascii_digit());
    let millis = match unit {
        "m" => forwarded,
        "u" => forwarded / 1000,
        "n" => forwarded / 1_000_000,
        other => panic!("unexpected unit {other}"),
    };
    assert!((200..=300).contains(&millis), "the worker was told the remaining budget: {timeouts:?}");

    let calls_before = worker.calls();
    let spent =
        http.post(format!("{base}/api/process")).header("request-timeout", "0").json(&echo(2)).send().await.unwrap();
    expect_problem(spent, StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded").await;
    assert_eq!(worker.calls(), calls_before, "no worker was contacted");

    let invalid =
        http.post(format!("{base}/api/process")).header("request-timeout", "soon").json(&echo(3)).send().await.unwrap();
    expect_problem(invalid, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn admission_rejects_at_the_limit_at_once() {
    let worker = ScriptedWorker::start("w", Behaviour::Echo { delay: Duration::from_millis(800) }).await;
    let config =
        "[admission]\nmax_in_flight = 1000\n[[admission.routes]]\nroute = \"/api/process\"\nmax_in_flight = 2\n";
    let (_gateway, _config, base) = gateway_for(std::slice::from_ref(&worker.url), config).await;
    let http = Client::new();
    let held: Vec<_> = (0..2)
        .map(|n| {
            let (http, url) = (http.clone(), format!("{base}/api/process"));
            tokio::spawn(async move { http.post(url).json(&echo(n)).send().await.unwrap().status() })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let refused = http.post(format!("{base}/api/process")).json(&echo(9)).send().await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(200), "refused at once, not queued");
    assert_eq!(refused.headers()["retry-after"], "1");
    expect_problem(refused, StatusCode::SERVICE_UNAVAILABLE, "overloaded").await;
    for request in held {
        assert_eq!(request.await.unwrap(), StatusCode::OK);
    }
    // With the two done, the route takes work again; other routes were never limited.
    assert_eq!(http.post(format!("{base}/api/process")).json(&echo(10)).send().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn sigterm_drains_the_gateway_without_failing_requests_in_flight() {
    let worker = ScriptedWorker::start("w", Behaviour::Echo { delay: Duration::from_millis(600) }).await;
    let (mut gateway, _config, base) = gateway_for(std::slice::from_ref(&worker.url), "").await;
    let http = Client::new();
    let in_flight: Vec<_> = (0..6)
        .map(|n| {
            let (http, url) = (http.clone(), format!("{base}/api/process"));
            tokio::spawn(async move { http.post(url).json(&echo(n)).send().await.unwrap().status() })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    gateway.signal(Signal::SIGTERM);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // New connections are refused at once...
    let address = base.trim_start_matches("http://").to_owned();
    assert!(tokio::net::TcpStream::connect(&address).await.is_err(), "stopped accepting");
    // ...while every request in flight completes.
    for request in in_flight {
        assert_eq!(request.await.unwrap(), StatusCode::OK);
    }
    let status = gateway.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn the_reverse_proxy_balances_strips_hop_headers_streams_bodies_and_survives_a_dying_upstream() {
    let (one, two) = (Upstream::start("one"), Upstream::start("two"));
    let config = format!(
        "[[routes]]\nprefix = \"/shop\"\nupstreams = [\"{}\", \"{}\"]\nbalance = \"round_robin\"\n\n[health]\ninterval = \"200ms\"\n",
        one.url, two.url
    );
    let worker = ScriptedWorker::start("w", Behaviour::Echo { delay: Duration::ZERO }).await;
    let (_gateway, _config, base) = gateway_for(std::slice::from_ref(&worker.url), &config).await;
    let http = Client::new();

    let mut served_by = HashMap::<String, usize>::new();
    for _ in 0..10 {
        let answer: Value = http
            .get(format!("{base}/shop/cart?x=1"))
            .header("connection", "x-private")
            .header("x-private", "secret")
            .header("x-forwarded-for", "10.9.9.9")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["path"], "/shop/cart");
        let headers = &answer["headers"];
        assert!(headers.get("x-private").is_none(), "a header named by Connection is hop-by-hop: {headers}");
        assert_eq!(headers["x-forwarded-for"], "127.0.0.1", "an untrusted client's own chain is replaced: {headers}");
        assert_eq!(headers["x-forwarded-proto"], "http");
        *served_by.entry(answer["upstream"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    assert_eq!(served_by, HashMap::from([("one".into(), 5), ("two".into(), 5)]), "round robin");

    // A 4 MiB upload streams through.
    let big = vec![7_u8; 4 << 20];
    let answer: Value = http.post(format!("{base}/shop/upload")).body(big).send().await.unwrap().json().await.unwrap();
    assert_eq!(answer["body_len"], 4 << 20);

    // The API is never proxied, and paths outside every prefix are 404.
    assert_eq!(http.get(format!("{base}/api/process?data=x")).send().await.unwrap().status(), StatusCode::OK);
    let outside = http.get(format!("{base}/elsewhere")).send().await.unwrap();
    expect_problem(outside, StatusCode::NOT_FOUND, "not_found").await;

    // Upstream one dies mid-traffic: requests that cannot reach it are sent to two.
    one.kill();
    let mut failures = Vec::new();
    for n in 0..40 {
        let response = http.get(format!("{base}/shop/item/{n}")).send().await.unwrap();
        if response.status() != StatusCode::OK {
            failures.push(response.text().await.unwrap());
        }
    }
    assert!(failures.is_empty(), "{failures:?}");
    assert!(two.hits() >= 45);
}

#[tokio::test]
async fn workers_can_be_named_by_dns() {
    let worker = ScriptedWorker::start("by-name", Behaviour::Echo { delay: Duration::ZERO }).await;
    let port = worker.url.rsplit(':').next().unwrap().to_owned();
    let (_gateway, _config, base) = gateway_for(&[format!("dns://localhost:{port}")], "").await;
    let answer: Value =
        Client::new().post(format!("{base}/api/process")).json(&echo(1)).send().await.unwrap().json().await.unwrap();
    assert_eq!(answer["worker"], "by-name");
}
