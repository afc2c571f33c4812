//! No accepted job is lost: 2,000 sleep jobs, a worker killed with SIGKILL mid-run, then the
//! gateway killed with SIGKILL and restarted mid-run, on SQLite and on PostgreSQL. Every job
//! must end `succeeded`; executions beyond the first are counted and reported.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod support;

use rampart_testkit::{Process, postgres::Postgres, spawn_gateway, spawn_worker, worker_url};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::{config_file, io_busy};

const JOBS: usize = 2000;
const WORKERS: usize = 3;
/// Jobs each worker gets at once: with 300 ms sleeps the run lasts several seconds, long enough
/// to kill things in the middle of it.
const SLOTS: usize = 24;
const SUBMITTERS: usize = 16;

async fn start_gateway(urls: &[String], store: &str, config: &tempfile::NamedTempFile) -> (Process, String) {
    let gateway = spawn_gateway(urls, &["--store", store, "--config", config.path().to_str().unwrap()]).await;
    let base = format!("http://{}", gateway.listen_addr());
    (gateway, base)
}

/// Submits every job (each with its own idempotency key) and returns their ids.
async fn submit_all(http: &Client, base: &str) -> Vec<String> {
    let mut tasks = Vec::new();
    for submitter in 0..SUBMITTERS {
        let (http, base) = (http.clone(), base.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in (submitter..JOBS).step_by(SUBMITTERS) {
                let response = http
                    .post(format!("{base}/api/jobs"))
                    .header("Idempotency-Key", format!("recovery-{n}"))
                    .json(&json!({"kind": "sleep", "payload": {"ms": 300}}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::ACCEPTED);
                let job: Value = response.json().await.unwrap();
                ids.push(job["id"].as_str().unwrap().to_owned());
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.extend(task.await.unwrap());
    }
    ids
}

/// Waits until every job has ended; returns each one's final view.
async fn wait_all_ended(http: &Client, base: &str, ids: &[String], limit: Duration) -> Vec<Value> {
    let deadline = Instant::now() + limit;
    let mut tasks = Vec::new();
    for chunk in ids.chunks(ids.len().div_ceil(SUBMITTERS)) {
        let (http, base, chunk) = (http.clone(), base.to_owned(), chunk.to_vec());
        tasks.push(tokio::spawn(async move {
            let mut ended = Vec::new();
            for id in chunk {
                loop {
                    let job: Value =
                        http.get(format!("{base}/api/jobs/{id}")).send().await.unwrap().json().await.unwrap();
                    if matches!(job["status"].as_str(), Some("succeeded" | "failed" | "dead" | "cancelled")) {
                        ended.push(job);
                        break;
                    }
                    assert!(Instant::now() < deadline, "job {id} has not ended: {job}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            ended
        }));
    }
    let mut ended = Vec::new();
    for task in tasks {
        ended.extend(task.await.unwrap());
    }
    ended
}

/// Waits for a line containing `text` in the process's output; returns how long that took.
async fn wait_for_log(process: &Process, text: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    while !process.output().contains(text) {
        assert!(started.elapsed() < limit, "no {text:?} within {limit:?}; output:\n{}", process.output());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

async fn survives_a_worker_and_a_gateway_crash(store: &str, label: &str) {
    let mut workers = Vec::new();
    for index in 0..WORKERS {
        workers.push(spawn_worker(&["--name", &format!("w{index}")]).await);
    }
    let urls: Vec<_> = workers.iter().map(worker_url).collect();
    let config = config_file(&format!(
        "[jobs]\nworker_slots = {SLOTS}\nbackoff_base = \"50ms\"\n[health]\ninterval = \"200ms\"\ntimeout = \"200ms\"\n"
    ));
    let http = Client::new();
    let (mut gateway, base) = start_gateway(&urls, store, &config).await;
    let started = Instant::now();
    let ids = submit_all(&http, &base).await;
    assert_eq!(ids.len(), JOBS);
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), JOBS, "every submission is its own job");

    // A worker dies in the middle of its jobs.
    let victim = &mut workers[0];
    let running_there = io_busy(victim).await;
    assert!(running_there > 0, "the worker was running jobs when killed");
    victim.kill9().await;
    tokio::time::sleep(Duration::from_millis(700)).await;

    // Then the gateway dies while jobs run, and comes back on the same store.
    gateway.kill9().await;
    let killed_at = Instant::now();
    let survivors = &urls[1..];
    let (gateway, base) = start_gateway(survivors, store, &config).await;
    if store.starts_with("sqlite") {
        // One gateway per SQLite file: the restarted one takes its jobs back at start.
        wait_for_log(&gateway, "requeued the jobs this gateway ran before it restarted", Duration::from_secs(5)).await;
    } else {
        // A new lease owner: the dead gateway's leases must expire first.
        wait_for_log(&gateway, "rescued jobs whose gateway stopped renewing their leases", Duration::from_secs(15))
            .await;
    }
    let taken_back = killed_at.elapsed();
    assert!(taken_back < Duration::from_secs(15), "jobs taken back {taken_back:?} after the gateway died");

    let ended = wait_all_ended(&http, &base, &ids, Duration::from_secs(90)).await;
    let total = started.elapsed();
    let not_succeeded: Vec<_> = ended.iter().filter(|job| job["status"] != "succeeded").collect();
    assert!(not_succeeded.is_empty(), "{} jobs did not succeed, e.g. {}", not_succeeded.len(), not_succeeded[0]);
    let attempts: Vec<i64> = ended.iter().map(|job| job["attempts"].as_i64().unwrap()).collect();
    let extra: i64 = attempts.iter().map(|attempts| attempts - 1).sum();
    let repeated = attempts.iter().filter(|attempts| **attempts > 1).count();
    eprintln!(
        "[{label}] {JOBS} jobs accepted, {JOBS} succeeded, none lost, in {total:.1?}; the worker died running \
         {running_there}; jobs taken back {taken_back:.1?} after the gateway died; repeated executions: {extra} \
         (over {repeated} jobs, most attempts {})",
        attempts.iter().max().unwrap()
    );
    assert!(extra > 0, "the crashes happened mid-run, so some jobs ran twice");
    // Only jobs in flight at a crash run again: those on the dead worker, plus at most every
    // slot of the dead gateway.
    let bound = i64::from(running_there) + i64::try_from(WORKERS * SLOTS).unwrap();
    assert!(extra <= bound, "{extra} repeated executions, more than the {bound} jobs in flight at the crashes");
    drop(gateway);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_job_is_lost_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("rampart.db").display());
    survives_a_worker_and_a_gateway_crash(&store, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_job_is_lost_on_postgres() {
    let server = Postgres::start();
    survives_a_worker_and_a_gateway_crash(&server.url, "postgres").await;
}
