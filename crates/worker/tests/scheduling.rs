//! The worker's pools over real gRPC: priorities, aging, bounded queues, isolation of I/O jobs
//! from CPU jobs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use rampart_proto::v1::{JobRequest, JobStatus, PoolKind, Priority};
use rampart_testkit::spawn_worker;
use std::time::{Duration, Instant};
use support::{client, job, pool, run, spawn_call, wait_for_load, with_priority};
use tonic::Code;

const LONG: Duration = Duration::from_secs(30);

/// Occupies every slot of a pool with one blocker, queues a low, a normal and a high job in that
/// order, frees the slot and returns the order in which the queued jobs finished.
async fn finishing_order(
    kind: PoolKind,
    blocker: JobRequest,
    queued: impl Fn(&str) -> JobRequest,
) -> Vec<&'static str> {
    // Aging far beyond the test's length, so that priority alone decides the order.
    let args =
        ["--io-concurrency", "1", "--cpu-threads", "1", "--io-queue", "10", "--cpu-queue", "10", "--aging", "60s"];
    let worker = spawn_worker(&args).await;
    let mut client = client(&worker).await;
    let blocker = spawn_call(&client, blocker, LONG);
    wait_for_load(&mut client, kind, 1, 0).await;
    let mut calls = Vec::new();
    for (name, priority) in [("low", Priority::Low), ("normal", Priority::Normal), ("high", Priority::High)] {
        calls.push((name, spawn_call(&client, with_priority(queued(name), priority), LONG)));
        let waiting = u32::try_from(calls.len()).unwrap();
        wait_for_load(&mut client, kind, 1, waiting).await;
    }
    assert_eq!(blocker.await.unwrap().0.unwrap().status(), JobStatus::Succeeded);
    let mut finished = Vec::new();
    for (name, call) in calls {
        let (result, at) = call.await.unwrap();
        assert_eq!(result.unwrap().status(), JobStatus::Succeeded, "{name}");
        finished.push((at, name));
    }
    finished.sort();
    finished.into_iter().map(|(_, name)| name).collect()
}

#[tokio::test]
async fn high_priority_overtakes_queued_jobs_on_the_io_pool() {
    let order = finishing_order(PoolKind::Io, job("sleep", r#"{"ms": 2000}"#), |_| job("sleep", r#"{"ms": 50}"#)).await;
    assert_eq!(order, ["high", "normal", "low"]);
}

#[tokio::test]
async fn high_priority_overtakes_queued_jobs_on_the_cpu_pool() {
    let blocker = job("fail", r#"{"mode": "cpu_hang", "ms": 2000, "rate": 0}"#);
    let order = finishing_order(PoolKind::Cpu, blocker, |_| job("hash", r#"{"rounds": 20000}"#)).await;
    assert_eq!(order, ["high", "normal", "low"]);
}

#[tokio::test]
async fn a_low_priority_job_is_not_starved_by_a_flood_of_high_ones() {
    let worker = spawn_worker(&["--io-concurrency", "1", "--io-queue", "100", "--aging", "300ms"]).await;
    let mut client = client(&worker).await;
    let blocker = spawn_call(&client, job("sleep", r#"{"ms": 100}"#), LONG);
    wait_for_load(&mut client, PoolKind::Io, 1, 0).await;
    let low = spawn_call(&client, with_priority(job("sleep", r#"{"ms": 1}"#), Priority::Low), LONG);
    wait_for_load(&mut client, PoolKind::Io, 1, 1).await;
    let submitted = Instant::now();
    // Keep high-priority work queued for 2 s: without aging the low job would wait it all out.
    let mut flood = Vec::new();
    while submitted.elapsed() < Duration::from_secs(2) {
        flood.push(spawn_call(&client, with_priority(job("sleep", r#"{"ms": 20}"#), Priority::High), LONG));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (result, low_done) = low.await.unwrap();
    assert_eq!(result.unwrap().status(), JobStatus::Succeeded);
    let waited = low_done - submitted;
    assert!(waited < Duration::from_millis(1000), "the low job waited {waited:?} behind the flood");
    assert!(blocker.await.unwrap().0.is_ok());
    for call in flood {
        assert!(call.await.unwrap().0.is_ok());
    }
}

#[tokio::test]
async fn full_pools_answer_resource_exhausted_with_pushback_and_not_started() {
    let worker =
        spawn_worker(&["--cpu-threads", "1", "--cpu-queue", "1", "--io-concurrency", "2", "--io-queue", "1"]).await;
    let mut client = client(&worker).await;
    let check = |status: &tonic::Status| {
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert_eq!(status.metadata().get("grpc-retry-pushback-ms").unwrap(), "100");
        assert_eq!(status.metadata().get("rampart-not-started").unwrap(), "1");
    };

    // Two running sleeps and one queued fill the I/O pool; the next is refused at once.
    let sleeps: Vec<_> = (0..3).map(|_| spawn_call(&client, job("sleep", r#"{"ms": 3000}"#), LONG)).collect();
    wait_for_load(&mut client, PoolKind::Io, 2, 1).await;
    let started = Instant::now();
    let refused = run(&mut client, "sleep", r#"{"ms": 1}"#).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(500));
    check(&refused);
    assert!(refused.message().contains("io pool"), "{refused:?}");

    // One running CPU job and one queued fill the CPU pool.
    let hog = r#"{"mode": "cpu_hang", "ms": 3000, "rate": 0}"#;
    let cpu_jobs: Vec<_> = (0..2).map(|_| spawn_call(&client, job("fail", hog), LONG)).collect();
    wait_for_load(&mut client, PoolKind::Cpu, 1, 1).await;
    check(&run(&mut client, "cpu", r#"{"iterations": 1}"#).await.unwrap_err());

    for call in sleeps.into_iter().chain(cpu_jobs) {
        assert_eq!(call.await.unwrap().0.unwrap().status(), JobStatus::Succeeded);
    }
    assert_eq!(pool(&mut client, PoolKind::Io).await.busy, 0);
}

#[tokio::test]
async fn sleep_jobs_keep_a_low_p99_while_cpu_jobs_saturate_every_core() {
    let cores = std::thread::available_parallelism().unwrap().get();
    let worker = spawn_worker(&[]).await;
    let mut client = client(&worker).await;
    // One CPU hog per core (and as many queued), each spinning for 6 s.
    let hog = r#"{"mode": "cpu_hang", "ms": 6000, "rate": 0}"#;
    let hogs: Vec<_> = (0..2 * cores).map(|_| spawn_call(&client, job("fail", hog), LONG)).collect();
    wait_for_load(&mut client, PoolKind::Cpu, u32::try_from(cores).unwrap(), u32::try_from(cores).unwrap()).await;

    // 10 concurrent streams of 10 ms sleeps, 300 in all.
    let streams: Vec<_> = (0..10)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                for _ in 0..30 {
                    let started = Instant::now();
                    let result = run(&mut client, "sleep", r#"{"ms": 10}"#).await.unwrap();
                    assert_eq!(result.status(), JobStatus::Succeeded);
                    latencies.push(started.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for stream in streams {
        latencies.extend(stream.await.unwrap());
    }
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let p99 = latencies[latencies.len() * 99 / 100];
    println!("10 ms sleeps with every core saturated: p50 {p50:?}, p99 {p99:?}, max {:?}", latencies.last().unwrap());
    assert_eq!(pool(&mut client, PoolKind::Cpu).await.busy, u32::try_from(cores).unwrap(), "still saturated");
    assert!(p99 < Duration::from_millis(50), "p99 {p99:?}");
    for hog in hogs {
        hog.abort();
    }
}
