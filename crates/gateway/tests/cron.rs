//! `[[cron]]` on real processes: two gateways on one PostgreSQL enqueue an every-second entry;
//! one is killed with SIGKILL and restarted, then both are, and the restarted one makes up the
//! ticks missed while none ran. Every tick gets exactly one job.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use rampart_jobs::durable::model::parse_rfc3339;
use rampart_testkit::{Process, postgres::Postgres, spawn_gateway, spawn_worker, worker_url};
use reqwest::Client;
use serde_json::Value;
use std::{collections::BTreeMap, time::Duration};
use support::{config_file, get_json};

const SECOND: i64 = 1_000_000;

const CONFIG: &str = r#"
[jobs]
sweep_interval = "500ms"

[[cron]]
name = "every-second"
schedule = "* * * * * *"
kind = "echo"
payload = { from = "cron" }
catch_up = "all"
max_catch_up = "1m"
"#;

async fn gateway(worker: &str, store: &str, config: &tempfile::NamedTempFile) -> (Process, String) {
    let gateway =
        spawn_gateway(&[worker.to_owned()], &["--store", store, "--config", config.path().to_str().unwrap()]).await;
    let base = format!("http://{}", gateway.listen_addr());
    (gateway, base)
}

/// Every job of kind `echo`, page by page.
async fn all_jobs(http: &Client, base: &str) -> Vec<Value> {
    let mut jobs = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = get_json(http, &format!("{base}/api/jobs?kind=echo&limit=1000{cursor}")).await;
        jobs.extend(page["jobs"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return jobs,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tick_gets_one_job_across_gateways_crashes_and_restarts() {
    let server = Postgres::start();
    let worker = spawn_worker(&["--name", "w0"]).await;
    let worker = worker_url(&worker);
    let config = config_file(CONFIG);
    let http = Client::new();
    let (mut first, _) = gateway(&worker, &server.url, &config).await;
    let (mut second, _) = gateway(&worker, &server.url, &config).await;
    tokio::time::sleep(Duration::from_secs(8)).await;

    // One gateway dies; the other keeps ticking; the first comes back.
    first.kill9().await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (mut first, _) = gateway(&worker, &server.url, &config).await;
    tokio::time::sleep(Duration::from_secs(6)).await;

    // Both die; for four seconds no gateway runs; one comes back and makes up the ticks.
    first.kill9().await;
    second.kill9().await;
    let down_from = rampart_jobs::durable::model::now_micros();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let up_again = rampart_jobs::durable::model::now_micros();
    let (_first, base) = gateway(&worker, &server.url, &config).await;
    tokio::time::sleep(Duration::from_secs(8)).await;

    let entries = get_json(&http, &format!("{base}/api/cron")).await;
    let entry = &entries["entries"][0];
    assert_eq!((entry["name"].as_str(), entry["catch_up"].as_str()), (Some("every-second"), Some("all")), "{entries}");
    let last_run = parse_rfc3339(entry["last_run"].as_str().unwrap()).unwrap();
    let next_run = parse_rfc3339(entry["next_run"].as_str().unwrap()).unwrap();
    assert!(next_run > last_run && next_run - last_run <= 2 * SECOND, "{entry}");

    let jobs = all_jobs(&http, &base).await;
    let mut by_tick: BTreeMap<i64, Vec<&Value>> = BTreeMap::new();
    for job in &jobs {
        assert_eq!(job["kind"], "echo");
        let tick = parse_rfc3339(job["run_at"].as_str().unwrap()).unwrap();
        assert_eq!(tick % SECOND, 0, "due on its tick: {job}");
        by_tick.entry(tick).or_default().push(job);
    }
    let doubled: Vec<_> = by_tick.iter().filter(|(_, jobs)| jobs.len() > 1).collect();
    assert!(doubled.is_empty(), "ticks with more than one job: {doubled:?}");
    let (first_tick, last_tick) = (*by_tick.keys().next().unwrap(), *by_tick.keys().last().unwrap());
    let span = (last_tick - first_tick) / SECOND + 1;
    assert!(span >= 30, "{span} ticks");
    let missing: Vec<i64> =
        (0..span).map(|n| first_tick + n * SECOND).filter(|tick| !by_tick.contains_key(tick)).collect();
    assert!(missing.is_empty(), "ticks without a job: {missing:?} of {span}");
    // The ticks while no gateway ran were made up after the restart, each once.
    let made_up: Vec<&Value> =
        by_tick.range(down_from + SECOND..up_again).flat_map(|(_, jobs)| jobs.iter().copied()).collect();
    assert!(made_up.len() >= 3, "{} ticks made up", made_up.len());
    for job in made_up {
        assert!(
            parse_rfc3339(job["created_at"].as_str().unwrap()).unwrap() >= up_again,
            "made up after the restart: {job}"
        );
    }
    println!("{span} ticks, {} jobs, none doubled or missing", jobs.len());
}
