//! Several gateways on one PostgreSQL, as real processes: they know each other through the
//! store's membership (`GET /admin/cluster`), a job accepted on one is claimed at once by
//! another and its end reaches the client waiting on the first without polling, a PostgreSQL
//! restart is survived without restarting anything, and a gateway cut off from the store (a
//! relay that goes silent, as a partition does) refuses new durable jobs while the sync path
//! keeps serving, stops its jobs before their leases end, and rejoins by itself.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod support;

use rampart_testkit::{
    Process, admin_addr, closed_port, partition::Partition, postgres::Postgres, redis::Redis, spawn_worker, worker_url,
};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::{config_file, expect_problem, wait_until};

/// Fast heartbeats; a sweep too slow to matter, so only signals can explain a fast pickup.
/// A rate limit on `/api/process` (nearly no refill), shared by the gateways.
const SIGNALLED: &str = "[jobs]\nheartbeat_interval = \"200ms\"\nmember_timeout = \"1s\"\nsweep_interval = \"60s\"\n\
                         [health]\ninterval = \"200ms\"\ntimeout = \"200ms\"\n\
                         [[rate_limit.routes]]\nroute = \"/api/process\"\nrate = 0.1\nburst = 20\n";

/// Short leases and sweeps, for a partition to play out in seconds.
const SHORT_LEASES: &str = "[jobs]\nheartbeat_interval = \"200ms\"\nmember_timeout = \"1s\"\nlease = \"2s\"\n\
                            sweep_interval = \"300ms\"\n[health]\ninterval = \"200ms\"\ntimeout = \"200ms\"\n";

struct Gateway {
    process: Process,
    base: String,
    admin: String,
}

async fn gateway(workers: &[String], store: &str, config: &tempfile::NamedTempFile, name: &str) -> Gateway {
    let args = ["--store", store, "--config", config.path().to_str().unwrap()];
    let process = rampart_testkit::spawn_gateway_with_env(workers, &args, &[("RAMPART_JOBS__NODE_ID", name)]).await;
    let base = format!("http://{}", process.listen_addr());
    let admin = format!("http://{}", admin_addr(&process));
    Gateway { process, base, admin }
}

async fn cluster(http: &Client, gateway: &Gateway) -> Value {
    http.get(format!("{}/admin/cluster", gateway.admin)).send().await.unwrap().json().await.unwrap()
}

/// Waits until `gateway` counts `live` members and hears the others' signals.
async fn joined(http: &Client, gateway: &Gateway, live: u64) {
    wait_until("the gateways know each other", Duration::from_secs(10), async || {
        let view = cluster(http, gateway).await;
        view["live"] == live && view["signals"] == true && view["store_reachable"] == true
    })
    .await;
}

/// Submits sleep jobs one by one on `on` with `?wait=`; returns how long each took to end.
async fn waited_jobs(http: &Client, on: &Gateway, count: usize) -> Vec<Duration> {
    let mut took = Vec::new();
    for n in 0..count {
        let started = Instant::now();
        let response = http
            .post(format!("{}/api/jobs?wait=20s", on.base))
            .json(&json!({"kind": "sleep", "payload": {"ms": 5}, "tenant": format!("t{n}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "the job ended within the wait");
        let job: Value = response.json().await.unwrap();
        assert_eq!(job["status"], "succeeded", "{job}");
        took.push(started.elapsed());
    }
    took.sort();
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_on_one_store_wake_each_other_and_survive_its_restart() {
    let mut server = Postgres::start();
    let worker = spawn_worker(&["--name", "w0"]).await;
    let config = config_file(SIGNALLED);
    let http = Client::new();
    // The first gateway's only worker is gone: it accepts jobs but can run none of them.
    let nowhere = format!("http://127.0.0.1:{}", closed_port());
    let front = gateway(&[nowhere], &server.url, &config, "front").await;
    let back = gateway(&[worker_url(&worker)], &server.url, &config, "back").await;
    joined(&http, &front, 2).await;
    joined(&http, &back, 2).await;

    let view = cluster(&http, &front).await;
    let members = view["members"].as_array().unwrap();
    let described: Vec<(&str, &str, bool, bool)> = members
        .iter()
        .map(|m| (m["id"].as_str().unwrap(), m["address"].as_str().unwrap(), m["live"] == true, m["this"] == true))
        .collect();
    assert_eq!(
        described,
        [
            ("front", front.process.listen_addr().as_str(), true, true),
            ("back", back.process.listen_addr().as_str(), true, false)
        ],
        "{view}"
    );
    assert!(members.iter().all(|m| m["started"].is_string() && m["last_seen"].is_string()), "{view}");

    // A limit of bursts of 20 holds across both: each gateway admits its half.
    let mut admitted = Vec::new();
    for gateway in [&front, &back] {
        let mut passed = 0;
        for n in 0..30 {
            let response = http
                .post(format!("{}/api/process", gateway.base))
                .json(&json!({"kind": "echo", "payload": {"n": n}}))
                .send()
                .await
                .unwrap();
            passed += usize::from(response.status() != StatusCode::TOO_MANY_REQUESTS);
        }
        admitted.push(passed);
    }
    assert_eq!(admitted, [10, 10], "a burst of 20 across two gateways");

    // Accepted on the front, claimed by the back at its signal, the end heard on the front.
    let took = waited_jobs(&http, &front, 20).await;
    eprintln!("accepted on one gateway, run by another: p50 {:?}, max {:?}", took[10], took[19]);
    assert!(took[19] < Duration::from_secs(3), "no sweep or poll ran in this time: {took:?}");

    // An SSE stream on one gateway follows a job accepted and run by the other, to its end.
    let response = http
        .post(format!("{}/api/jobs", back.base))
        .json(&json!({"kind": "sleep", "payload": {"ms": 300}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let id = response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let events = http.get(format!("{}/api/jobs/{id}/events", front.base)).send().await.unwrap();
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let text = tokio::time::timeout(Duration::from_secs(5), events.text()).await.expect("the stream ends").unwrap();
    let statuses: Vec<&str> = text.lines().filter_map(|line| line.strip_prefix("event:")).map(str::trim).collect();
    eprintln!("SSE on one gateway for a job run by another ended {:?} after it opened", started.elapsed());
    assert_eq!(statuses.last(), Some(&"succeeded"), "{text}");
    assert!(statuses.contains(&"running") || statuses.len() == 1, "the run was seen unless it had ended: {text}");
    assert!(started.elapsed() < Duration::from_secs(3), "heard by signal, not by a poll: {:?}", started.elapsed());

    // PostgreSQL restarts: every connection drops; both gateways carry on by themselves.
    server.restart();
    joined(&http, &front, 2).await;
    joined(&http, &back, 2).await;
    let took = waited_jobs(&http, &front, 5).await;
    assert!(took[4] < Duration::from_secs(3), "signals came back with the store: {took:?}");

    // A member that dies stops counting once its heartbeats stop.
    let mut back = back;
    back.process.kill9().await;
    let gone = wait_until("the dead gateway is no longer live", Duration::from_secs(10), async || {
        let view = cluster(&http, &front).await;
        view["live"] == 1 && view["members"].as_array().unwrap().iter().any(|m| m["id"] == "back" && m["live"] == false)
    })
    .await;
    eprintln!("a killed gateway stopped counting as live {gone:?} later");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_cut_off_from_the_store_refuses_durable_jobs_keeps_serving_and_rejoins() {
    let server = Postgres::start();
    let port: u16 = server.url.rsplit_once(':').unwrap().1.split('/').next().unwrap().parse().unwrap();
    let partition = Partition::start(([127, 0, 0, 1], port).into()).await;
    let cut_off_url = server.url.replace(&format!(":{port}/"), &format!(":{}/", partition.addr.port()));
    let worker = spawn_worker(&["--name", "w0"]).await;
    let config = config_file(SHORT_LEASES);
    let http = Client::new();
    let workers = [worker_url(&worker)];
    let island = gateway(&workers, &cut_off_url, &config, "island").await;
    let mainland = gateway(&workers, &server.url, &config, "mainland").await;
    joined(&http, &island, 2).await;

    // A long job starts on the gateway about to be cut off.
    let response = http
        .post(format!("{}/api/jobs", island.base))
        .json(&json!({"kind": "sleep", "payload": {"ms": 6000}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let job: Value = response.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    let status = async |gateway: &Gateway| -> Value {
        http.get(format!("{}/api/jobs/{id}", gateway.base)).send().await.unwrap().json().await.unwrap()
    };
    wait_until("the long job runs", Duration::from_secs(5), async || status(&mainland).await["status"] == "running")
        .await;

    partition.cut();
    let cut_at = Instant::now();
    let noticed = wait_until("the island notices it is cut off", Duration::from_secs(5), async || {
        cluster(&http, &island).await["store_reachable"] == false
    })
    .await;
    eprintln!("cut off: noticed {noticed:?} after the cut");
    let asked = Instant::now();
    let response = http.post(format!("{}/api/jobs", island.base)).json(&json!({"kind": "echo"})).send().await.unwrap();
    assert!(response.headers().contains_key("retry-after"));
    expect_problem(response, StatusCode::SERVICE_UNAVAILABLE, "store_unavailable").await;
    assert!(asked.elapsed() < Duration::from_secs(1), "refused at once, not after a timeout");
    // The sync path needs no store.
    let response = http
        .post(format!("{}/api/process", island.base))
        .json(&json!({"kind": "echo", "payload": {"cut": true}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "the sync path keeps serving");

    // The island stops its job before its lease can end; the mainland rescues and finishes it.
    let stopped = "stopping jobs whose leases cannot be renewed before they end";
    wait_until("the mainland rescues the job", Duration::from_secs(10), async || {
        mainland.process.output().contains("rescued jobs whose gateway stopped renewing their leases")
    })
    .await;
    assert!(island.process.output().contains(stopped), "stopped on the island before the rescue");
    eprintln!("the island's job was stopped there and rescued elsewhere {:?} after the cut", cut_at.elapsed());
    wait_until("the rescued job succeeds", Duration::from_secs(15), async || {
        status(&mainland).await["status"] == "succeeded"
    })
    .await;
    let ended = status(&mainland).await;
    assert_eq!(ended["attempts"], 2, "one stopped attempt, one that finished: {ended}");

    partition.restore();
    let back = wait_until("the island accepts jobs again", Duration::from_secs(10), async || {
        let response = http
            .post(format!("{}/api/jobs?wait=5s", island.base))
            .json(&json!({"kind": "echo", "payload": {"back": true}}))
            .send()
            .await
            .unwrap();
        response.status() == StatusCode::OK
    })
    .await;
    eprintln!("rejoined {back:?} after the network came back");
    joined(&http, &island, 2).await;
    drop(mainland);
}

async fn post_echo(http: &Client, base: &str, n: usize) -> reqwest::Response {
    http.post(format!("{base}/api/process")).json(&json!({"kind": "echo", "payload": {"n": n}})).send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_in_redis_hold_across_gateways_and_fall_back_while_it_is_down() {
    let mut redis = Redis::start();
    let worker = spawn_worker(&["--name", "w0"]).await;
    let workers = [worker_url(&worker)];
    let limited = |fail: &str| {
        config_file(&format!(
            "[rate_limit]\nredis = \"{}\"\nfail = \"{fail}\"\n[[rate_limit.routes]]\nroute = \"/api/process\"\n\
             rate = 0.1\nburst = 20\n",
            redis.url
        ))
    };
    let (open, closed) = (limited("open"), limited("closed"));
    // Each gateway on a store of its own: alone there, only Redis can make them share a limit.
    let config = |file: &tempfile::NamedTempFile| ["--config", file.path().to_str().unwrap()].map(str::to_owned);
    let spawn = async |file: &tempfile::NamedTempFile| {
        let args = config(file);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let process = rampart_testkit::spawn_gateway(&workers, &args).await;
        let base = format!("http://{}", process.listen_addr());
        (process, base)
    };
    let (first, first_base) = spawn(&open).await;
    let (_second, second_base) = spawn(&open).await;
    let (_strict, strict_base) = spawn(&closed).await;
    let http = Client::new();

    let mut admitted = [0, 0];
    for n in 0..40 {
        let base = if n % 2 == 0 { &first_base } else { &second_base };
        let response = post_echo(&http, base, n).await;
        if response.status() == StatusCode::OK {
            admitted[n % 2] += 1;
        } else {
            expect_problem(response, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
        }
    }
    assert_eq!(admitted, [10, 10], "one burst of 20 across both gateways");
    let response = post_echo(&http, &strict_base, 0).await;
    expect_problem(response, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;

    // Redis goes away: failing open, a gateway enforces its own share (alone on its store: all
    // of it, a fresh burst); failing closed, it refuses what the limits cover.
    redis.stop();
    let response = post_echo(&http, &first_base, 0).await;
    assert_eq!(response.status(), StatusCode::OK, "fell back to the local share");
    let response = post_echo(&http, &strict_base, 0).await;
    assert!(response.headers().contains_key("retry-after"));
    expect_problem(response, StatusCode::SERVICE_UNAVAILABLE, "rate_limit_unavailable").await;
    let warned = "Redis cannot be reached: rate limits fall back until it answers";
    assert!(first.output().contains(warned), "the fallback is logged");
    let metrics =
        http.get(format!("http://{}/metrics", admin_addr(&first))).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("rampart_rate_limit_redis_up 0"), "and shown: {metrics}");

    redis.resume();
    wait_until("the gateway uses Redis again", Duration::from_secs(10), async || {
        post_echo(&http, &first_base, 0).await;
        first.output().contains("Redis answers again")
    })
    .await;
    let response = post_echo(&http, &strict_base, 0).await;
    assert_eq!(response.status(), StatusCode::OK, "a fresh Redis has fresh buckets");
}
