//! Fair queues, store-wide limits and pauses on real processes: a tenant's jobs start at once
//! behind another tenant's 100,000 queued ones; a paused kind or tenant starts nothing on any of
//! two gateways on one PostgreSQL until resumed; a kind's limit and the tenant limit hold across
//! both gateways, as the store counts running jobs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use rampart_jobs::durable::model::parse_rfc3339;
use rampart_testkit::{Process, postgres::Postgres, spawn_gateway, spawn_worker, worker_url};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::{config_file, expect_problem, get_json, jobs::Setup, wait_until};

fn micros(job: &Value, field: &str) -> i64 {
    parse_rfc3339(job[field].as_str().unwrap_or_else(|| panic!("no {field}: {job}"))).unwrap()
}

/// The `q`-quantile of sorted samples.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

async fn post(http: &Client, url: &str, body: &Value) -> Value {
    let response = http.post(url).json(body).send().await.unwrap();
    assert!(response.status().is_success(), "POST {url}: {}", response.status());
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_jobs_start_at_once_behind_another_tenants_backlog() {
    // 32 slots, every one of which tenant a's jobs may take: 20 ms each, so a slot frees about every
    // 0.6 ms, and a's 100,000 would take a minute to drain.
    let setup = Setup::start_with(2, "worker_slots = 16\nkind_share = 1.0\n").await;
    let backlog = json!({"jobs": vec![json!({"kind": "sleep", "payload": {"ms": 20}, "tenant": "a"}); 10_000]});
    // Held back while it is written, so that all of it is queued when b's jobs come.
    let pause = |action: &str| setup.http.post(format!("{}/api/tenants/a/{action}", setup.base)).send();
    assert_eq!(pause("pause").await.unwrap().status(), StatusCode::OK);
    for _ in 0..10 {
        let response =
            setup.http.post(format!("{}/api/batch?wait=1ms", setup.base)).json(&backlog).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        drop(response);
    }
    let queued = |stats: &Value| stats["by_status"]["queued"].as_i64().unwrap();
    let before = setup.get_json("/api/jobs/stats?tenant=a").await;
    assert_eq!(queued(&before), 100_000, "{before}");
    assert_eq!(pause("resume").await.unwrap().status(), StatusCode::OK);
    wait_until("a's jobs to fill the slots", Duration::from_secs(5), async || {
        setup.get_json("/api/jobs/stats?tenant=a").await["by_status"]["running"].as_i64().unwrap() >= 30
    })
    .await;

    // Tenant b submits an echo job every 20 ms while a's backlog waits.
    let mut ids = Vec::new();
    for _ in 0..150 {
        let response = setup.submit(&json!({"kind": "echo", "payload": 1, "tenant": "b"}), "", None).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let job: Value = response.json().await.unwrap();
        assert_eq!(job["tenant"], "b", "{job}");
        ids.push(job["id"].as_str().unwrap().to_owned());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut pickups = Vec::new();
    for id in &ids {
        wait_until("b's job to succeed", Duration::from_secs(10), async || {
            setup.job(id).await["status"] == "succeeded"
        })
        .await;
        let job = setup.job(id).await;
        #[allow(clippy::cast_precision_loss)]
        pickups.push((micros(&job, "started_at") - micros(&job, "created_at")) as f64 / 1000.0);
    }
    pickups.sort_by(f64::total_cmp);
    let after = setup.get_json("/api/jobs/stats?tenant=a").await;
    assert!(queued(&after) > 90_000, "a's backlog stayed queued throughout: {after}");
    let (p50, p99) = (quantile(&pickups, 0.5), quantile(&pickups, 0.99));
    println!("tenant b's pickup behind {} of a's queued jobs: p50 {p50:.1} ms, p99 {p99:.1} ms", queued(&after));
    assert!(p99 < 50.0, "pickup p99 {p99:.1} ms: {pickups:?}");
}

#[tokio::test]
async fn a_tenant_is_named_by_its_caller_and_checked() {
    let setup = Setup::start(1).await;
    let job: Value = setup.submit(&json!({"kind": "echo"}), "", None).await.json().await.unwrap();
    assert_eq!(job["tenant"], "default", "{job}");
    let bad = setup.submit(&json!({"kind": "echo", "tenant": "no spaces"}), "", None).await;
    expect_problem(bad, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await;
    let response = setup.http.post(format!("{}/api/tenants/x%20y/pause", setup.base)).send().await.unwrap();
    expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await;
}

/// Two gateways on one PostgreSQL, each with a worker of its own.
struct Pair {
    _server: Postgres,
    _workers: Vec<Process>,
    _gateways: Vec<Process>,
    _config: tempfile::NamedTempFile,
    bases: Vec<String>,
    http: Client,
}

impl Pair {
    async fn start(jobs_config: &str) -> Self {
        let server = Postgres::start();
        let config = config_file(&format!("[jobs]\nsweep_interval = \"300ms\"\n{jobs_config}"));
        let (mut workers, mut gateways, mut bases) = (Vec::new(), Vec::new(), Vec::new());
        for index in 0..2 {
            let worker = spawn_worker(&["--name", &format!("w{index}")]).await;
            let args = ["--store", server.url.as_str(), "--config", config.path().to_str().unwrap()];
            let gateway = spawn_gateway(&[worker_url(&worker)], &args).await;
            bases.push(format!("http://{}", gateway.listen_addr()));
            workers.push(worker);
            gateways.push(gateway);
        }
        Self { _server: server, _workers: workers, _gateways: gateways, _config: config, bases, http: Client::new() }
    }

    /// Submits `count` jobs of `body`, alternating between the gateways; returns their ids.
    async fn submit(&self, body: &Value, count: usize) -> Vec<String> {
        let mut ids = Vec::new();
        for n in 0..count {
            let job = post(&self.http, &format!("{}/api/jobs", self.bases[n % 2]), body).await;
            ids.push(job["id"].as_str().unwrap().to_owned());
        }
        ids
    }

    async fn job(&self, id: &str) -> Value {
        get_json(&self.http, &format!("{}/api/jobs/{id}", self.bases[0])).await
    }

    async fn statuses(&self, ids: &[String]) -> Vec<String> {
        let mut statuses = Vec::new();
        for id in ids {
            statuses.push(self.job(id).await["status"].as_str().unwrap().to_owned());
        }
        statuses
    }

    async fn all_succeed(&self, ids: &[String]) {
        wait_until("the jobs to succeed", Duration::from_secs(20), async || {
            self.statuses(ids).await.iter().all(|status| status == "succeeded")
        })
        .await;
    }

    /// The most jobs `filter` matches that the store held running at once, sampled every 10 ms
    /// until every one of `ids` has succeeded.
    async fn most_running(&self, filter: &str, ids: &[String]) -> i64 {
        let started = Instant::now();
        let mut most = 0;
        loop {
            let stats = get_json(&self.http, &format!("{}/api/jobs/stats?{filter}", self.bases[1])).await;
            most = most.max(stats["by_status"]["running"].as_i64().unwrap());
            let unfinished =
                ["queued", "running"].iter().map(|status| stats["by_status"][status].as_i64().unwrap()).sum::<i64>();
            if unfinished == 0 {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "the jobs did not end: {stats}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.all_succeed(ids).await;
        most
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_kind_or_tenant_starts_nothing_on_any_gateway_until_resumed() {
    let pair = Pair::start("").await;
    let paused = post(&pair.http, &format!("{}/api/kinds/echo/pause", pair.bases[0]), &json!({})).await;
    assert_eq!(paused, json!({"scope": "kind", "name": "echo", "paused": true, "changed": true}));
    let listed = get_json(&pair.http, &format!("{}/api/pauses", pair.bases[1])).await;
    assert_eq!(listed["pauses"][0]["name"], "echo", "the other gateway sees the pause: {listed}");

    let held = pair.submit(&json!({"kind": "echo", "payload": 1}), 20).await;
    let others = pair.submit(&json!({"kind": "sleep", "payload": {"ms": 1}}), 4).await;
    pair.all_succeed(&others).await;
    // Several sweeps of both gateways later, nothing of the paused kind has started.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(pair.statuses(&held).await.iter().all(|status| status == "queued"), "{:?}", pair.statuses(&held).await);

    let resumed = post(&pair.http, &format!("{}/api/kinds/echo/resume", pair.bases[1]), &json!({})).await;
    assert_eq!(resumed["changed"], true);
    let started = Instant::now();
    pair.all_succeed(&held).await;
    println!("20 held jobs ran {:?} after the resume", started.elapsed());

    post(&pair.http, &format!("{}/api/tenants/t1/pause", pair.bases[1]), &json!({})).await;
    let of_t1 = pair.submit(&json!({"kind": "echo", "tenant": "t1"}), 6).await;
    let of_t2 = pair.submit(&json!({"kind": "echo", "tenant": "t2"}), 6).await;
    pair.all_succeed(&of_t2).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(pair.statuses(&of_t1).await.iter().all(|status| status == "queued"));
    post(&pair.http, &format!("{}/api/tenants/t1/resume", pair.bases[0]), &json!({})).await;
    pair.all_succeed(&of_t1).await;
    let listed = get_json(&pair.http, &format!("{}/api/pauses", pair.bases[0])).await;
    assert_eq!(listed, json!({"pauses": []}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kinds_limit_holds_across_gateways() {
    let pair = Pair::start("kind_limits = { sleep = 2 }\n").await;
    let ids = pair.submit(&json!({"kind": "sleep", "payload": {"ms": 300}}), 12).await;
    let most = pair.most_running("kind=sleep", &ids).await;
    assert_eq!(most, 2, "two sleep jobs at once on both gateways together, never more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_limit_holds_across_gateways() {
    let pair = Pair::start("tenant_limit = 3\n").await;
    let of_a = pair.submit(&json!({"kind": "sleep", "payload": {"ms": 300}, "tenant": "a"}), 12).await;
    let of_b = pair.submit(&json!({"kind": "sleep", "payload": {"ms": 300}, "tenant": "b"}), 6).await;
    let (most_a, most_b) = tokio::join!(pair.most_running("tenant=a", &of_a), pair.most_running("tenant=b", &of_b));
    assert_eq!(most_a, 3, "three of a's jobs at once on both gateways together, never more");
    assert_eq!(most_b, 3, "and three of b's beside them");
}
