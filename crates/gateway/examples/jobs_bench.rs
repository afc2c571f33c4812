//! Durable-job throughput and pickup latency against a running gateway (see `bench/jobs.sh`).
//!
//! Submits `--jobs` `echo` jobs in batches of `--batch` over `--concurrency` connections through
//! `POST /api/batch` (or one by one through `POST /api/jobs?wait=60s` with `--single`, each
//! answer arriving once its job is done), counts them done as their outcomes arrive, and reports
//! accepted-and-completed jobs per second. Then reads a sample of the jobs back and reports
//! enqueue-to-start latency (`started_at − created_at`) p50/p99. `--url` may name several
//! gateways on one store, comma-separated: the clients take turns over them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout, clippy::print_stderr)]

use reqwest::Client;
use serde_json::Value;
use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

struct Args {
    url: String,
    jobs: usize,
    batch: usize,
    concurrency: usize,
    sample: usize,
    single: bool,
    /// Single jobs sent at this many per second in all (a steady load), rather than each
    /// client sending its next as soon as its last is answered.
    rate: Option<f64>,
}

fn args() -> Args {
    let mut args = Args {
        url: "http://127.0.0.1:8080".into(),
        jobs: 100_000,
        batch: 1000,
        concurrency: 8,
        sample: 2000,
        single: false,
        rate: None,
    };
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        let mut value = || given.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => args.url = value(),
            "--jobs" => args.jobs = value().parse().expect("--jobs N"),
            "--batch" => args.batch = value().parse().expect("--batch N"),
            "--concurrency" => args.concurrency = value().parse().expect("--concurrency N"),
            "--sample" => args.sample = value().parse().expect("--sample N"),
            "--single" => args.single = true,
            "--rate" => args.rate = Some(value().parse().expect("--rate JOBS_PER_SECOND")),
            "--help" | "-h" => {
                println!(
                    "jobs_bench [--url URL[,URL...]] [--jobs N] [--batch N] [--concurrency N] [--sample N] [--single [--rate PER_SECOND]]"
                );
                std::process::exit(0);
            }
            other => panic!("unknown flag {other}; see --help"),
        }
    }
    args
}

#[tokio::main]
async fn main() {
    let args = Arc::new(args());
    let http = Client::builder().pool_max_idle_per_host(args.concurrency * 2).build().unwrap();
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    let urls: Vec<String> = args.url.split(',').map(str::to_owned).collect();
    for client in 0..args.concurrency {
        let (http, args, next) = (http.clone(), Arc::clone(&args), Arc::clone(&next));
        let url = urls[client % urls.len()].clone();
        tasks.push(tokio::spawn(async move {
            let (mut ids, mut round_trips) = (Vec::new(), Vec::new());
            if args.single {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= args.jobs {
                        break;
                    }
                    if let Some(rate) = args.rate {
                        #[allow(clippy::cast_precision_loss)]
                        let due = started + std::time::Duration::from_secs_f64(index as f64 / rate);
                        tokio::time::sleep_until(due.into()).await;
                    }
                    let sent = Instant::now();
                    let job: Value = http
                        .post(format!("{url}/api/jobs?wait=60s"))
                        .header("content-type", "application/json")
                        .body(r#"{"kind":"echo","payload":{"n":1}}"#)
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    assert_eq!(job["status"], "succeeded", "{job}");
                    round_trips.push(i64::try_from(sent.elapsed().as_micros()).unwrap());
                    ids.push(job["id"].as_str().unwrap().to_owned());
                }
                return (ids, round_trips);
            }
            let body = batch_body(args.batch);
            while next.fetch_add(args.batch, Ordering::Relaxed) < args.jobs {
                let text = http
                    .post(format!("{url}/api/batch"))
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                for line in text.lines() {
                    let line: Value = serde_json::from_str(line).unwrap();
                    assert_eq!(line["status"], "succeeded", "{line}");
                    ids.push(line["id"].as_str().unwrap().to_owned());
                }
            }
            (ids, round_trips)
        }));
    }
    let (mut ids, mut round_trips) = (Vec::new(), Vec::new());
    for task in tasks {
        let (done, times) = task.await.unwrap();
        ids.extend(done);
        round_trips.extend(times);
    }
    let elapsed = started.elapsed();
    #[allow(clippy::cast_precision_loss)]
    let rate = ids.len() as f64 / elapsed.as_secs_f64();
    println!("jobs {} in {:.2}s: {rate:.0} jobs/s accepted and completed", ids.len(), elapsed.as_secs_f64());

    let step = (ids.len() / args.sample.max(1)).max(1);
    let mut pickups = Vec::new();
    for id in ids.iter().step_by(step) {
        let job: Value = http.get(format!("{}/api/jobs/{id}", urls[0])).send().await.unwrap().json().await.unwrap();
        assert_eq!(job["status"], "succeeded", "{job}");
        let created = micros(job["created_at"].as_str().unwrap());
        let started = micros(job["started_at"].as_str().unwrap());
        pickups.push(started - created);
    }
    let (p50, p99) = quantiles(&mut pickups);
    println!("pickup (enqueue to start) over {} jobs: p50 {p50:.2} ms, p99 {p99:.2} ms", pickups.len());
    if !round_trips.is_empty() {
        // Accepted, claimed, run on a worker, recorded and answered: pickup is less than this.
        let (p50, p99) = quantiles(&mut round_trips);
        println!(
            "round trip (accept, run, record, answer) over {} jobs: p50 {p50:.2} ms, p99 {p99:.2} ms",
            round_trips.len()
        );
    }
}

/// The median and 99th percentile of `micros`, in milliseconds.
fn quantiles(micros: &mut [i64]) -> (f64, f64) {
    micros.sort_unstable();
    let at = |q: f64| {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
        let index = ((micros.len() as f64 - 1.0) * q).round() as usize;
        #[allow(clippy::cast_precision_loss)]
        let ms = micros[index] as f64 / 1000.0;
        ms
    };
    (at(0.5), at(0.99))
}

fn batch_body(size: usize) -> String {
    let job = r#"{"kind":"echo","payload":{"n":1}}"#;
    format!("{{\"jobs\":[{}]}}", vec![job; size].join(","))
}

/// Microseconds since the epoch of an RFC 3339 time as the gateway writes it
/// (`YYYY-MM-DDTHH:MM:SS.ffffffZ`); only differences matter here.
fn micros(text: &str) -> i64 {
    let number = |range: std::ops::Range<usize>| text[range].parse::<i64>().unwrap();
    let day = number(8..10);
    let (hour, minute, second, fraction) = (number(11..13), number(14..16), number(17..19), number(20..26));
    (((day * 24 + hour) * 60 + minute) * 60 + second) * 1_000_000 + fraction
}
