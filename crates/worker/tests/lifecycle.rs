//! A job's life on a real worker over gRPC: time limits, cancellation, abandonment, drain.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use nix::sys::signal::Signal;
use rampart_proto::v1::{JobRequest, JobStatus, PoolKind};
use rampart_testkit::{spawn_worker, worker_url};
use std::time::{Duration, Instant};
use support::{client, job, pool, run, spawn_call, wait_for_load};
use tokio_stream::StreamExt as _;
use tonic::{Code, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

const LONG: Duration = Duration::from_secs(30);

#[tokio::test]
async fn the_jobs_own_timeout_applies_when_it_is_sooner() {
    let worker = spawn_worker(&["--io-concurrency", "1"]).await;
    let mut client = client(&worker).await;
    let started = Instant::now();
    let (result, _) =
        spawn_call(&client, JobRequest { timeout_ms: 150, ..job("sleep", r#"{"ms": 5000}"#) }, LONG).await.unwrap();
    let status = result.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("150 ms"), "{status:?}");
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(150) && elapsed < Duration::from_secs(2), "{elapsed:?}");
    // The one I/O slot is free again.
    assert_eq!(run(&mut client, "sleep", r#"{"ms": 1}"#).await.unwrap().status(), JobStatus::Succeeded);
}

#[tokio::test]
async fn the_calls_grpc_timeout_applies_when_it_is_sooner() {
    let worker = spawn_worker(&[]).await;
    let client = client(&worker).await;
    let started = Instant::now();
    let (result, _) = spawn_call(
        &client,
        JobRequest { timeout_ms: 10_000, ..job("sleep", r#"{"ms": 5000}"#) },
        Duration::from_millis(300),
    )
    .await
    .unwrap();
    let status = result.unwrap_err();
    assert!(timed_out(&status), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // The job was stopped at the call's deadline, not left to sleep on.
    let mut client = client.clone();
    wait_for_load(&mut client, PoolKind::Io, 0, 0).await;
}

/// The worker answers `DEADLINE_EXCEEDED` a little before the call's deadline; on a loaded
/// machine the caller's own timer may still fire first (`CANCELLED`, "Timeout expired").
fn timed_out(status: &tonic::Status) -> bool {
    status.code() == Code::DeadlineExceeded
        || (status.code() == Code::Cancelled && status.message() == "Timeout expired")
}

#[tokio::test]
async fn a_dropped_call_stops_an_io_job_at_once() {
    let worker = spawn_worker(&["--io-concurrency", "1"]).await;
    let mut client = client(&worker).await;
    let call = spawn_call(&client, job("sleep", r#"{"ms": 60000}"#), LONG);
    wait_for_load(&mut client, PoolKind::Io, 1, 0).await;
    call.abort();
    let started = Instant::now();
    wait_for_load(&mut client, PoolKind::Io, 0, 0).await;
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(&run(&mut client, "echo", "2").await.unwrap().output[..], b"2");
}

#[tokio::test]
async fn a_cancelled_queued_job_leaves_the_queue() {
    let worker = spawn_worker(&["--io-concurrency", "1", "--io-queue", "1"]).await;
    let mut client = client(&worker).await;
    let running = spawn_call(&client, job("sleep", r#"{"ms": 500}"#), LONG);
    wait_for_load(&mut client, PoolKind::Io, 1, 0).await;
    let queued = spawn_call(&client, job("sleep", r#"{"ms": 60000}"#), LONG);
    wait_for_load(&mut client, PoolKind::Io, 1, 1).await;
    queued.abort();
    wait_for_load(&mut client, PoolKind::Io, 1, 0).await;
    // Its queue place is free for another job.
    let next = spawn_call(&client, job("sleep", r#"{"ms": 1}"#), LONG);
    assert!(running.await.unwrap().0.is_ok());
    assert!(next.await.unwrap().0.is_ok());
}

#[tokio::test]
async fn a_cooperative_cpu_job_stops_when_its_call_is_dropped() {
    let worker = spawn_worker(&["--cpu-threads", "1", "--cancel-grace", "5s"]).await;
    let mut client = client(&worker).await;
    let call = spawn_call(&client, job("cpu", r#"{"iterations": 1000000000000}"#), LONG);
    wait_for_load(&mut client, PoolKind::Cpu, 1, 0).await;
    call.abort();
    let started = Instant::now();
    wait_for_load(&mut client, PoolKind::Cpu, 0, 0).await;
    assert!(started.elapsed() < Duration::from_secs(1), "stopped at its next check, well inside the grace");
    assert_eq!(pool(&mut client, PoolKind::Cpu).await.abandoned, 0);
}

#[tokio::test]
async fn a_cpu_job_that_ignores_cancellation_is_abandoned_and_its_slot_freed() {
    let worker = spawn_worker(&["--cpu-threads", "1", "--cancel-grace", "300ms"]).await;
    let mut client = client(&worker).await;
    let deaf = r#"{"mode": "cpu_hang", "ms": 20000}"#;
    let (result, _) = spawn_call(&client, job("fail", deaf), Duration::from_millis(200)).await.unwrap();
    assert!(timed_out(&result.unwrap_err()));
    // After the grace period the slot is back: a new CPU job runs on the replacement thread
    // while the deaf one still spins.
    let started = Instant::now();
    let result = run(&mut client, "cpu", r#"{"iterations": 1000}"#).await.unwrap();
    assert_eq!(result.status(), JobStatus::Succeeded);
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    let cpu = pool(&mut client, PoolKind::Cpu).await;
    assert_eq!((cpu.abandoned, cpu.busy), (1, 0), "{cpu:?}");
}

async fn watch_health(worker: &rampart_testkit::Process) -> tonic::Streaming<tonic_health::pb::HealthCheckResponse> {
    let channel = Channel::from_shared(worker_url(worker)).unwrap().connect().await.unwrap();
    let mut health = HealthClient::new(channel);
    health.watch(HealthCheckRequest { service: "rampart.v1.Worker".into() }).await.unwrap().into_inner()
}

#[tokio::test]
async fn sigterm_drains_finishing_short_jobs_and_cancelling_long_ones() {
    let mut worker = spawn_worker(&["--drain-timeout", "1s", "--cancel-grace", "300ms"]).await;
    let mut client = client(&worker).await;
    let mut health = watch_health(&worker).await;
    assert_eq!(health.next().await.unwrap().unwrap().status(), ServingStatus::Serving);

    let short = spawn_call(&client, job("sleep", r#"{"ms": 500}"#), LONG);
    let long = spawn_call(&client, job("sleep", r#"{"ms": 20000}"#), LONG);
    let deaf = spawn_call(&client, job("fail", r#"{"mode": "cpu_hang", "ms": 20000}"#), LONG);
    wait_for_load(&mut client, PoolKind::Io, 2, 0).await;
    wait_for_load(&mut client, PoolKind::Cpu, 1, 0).await;
    let signalled = Instant::now();
    worker.signal(Signal::SIGTERM);

    assert_eq!(health.next().await.unwrap().unwrap().status(), ServingStatus::NotServing);
    // No new work is taken. Depending on timing the call meets a closed listener (UNAVAILABLE)
    // or a connection going away before the request was sent (CANCELLED); either way it never
    // reached a job.
    let refused = run(&mut client, "echo", "1").await.unwrap_err();
    assert!(matches!(refused.code(), Code::Unavailable | Code::Cancelled), "{refused:?}");

    let (short, _) = short.await.unwrap();
    assert_eq!(short.unwrap().status(), JobStatus::Succeeded, "in-flight work finishes");
    let (long, long_ended) = long.await.unwrap();
    let long = long.unwrap_err();
    assert_eq!(long.code(), Code::Aborted, "{long:?}");
    assert!(long.message().contains("shutting down"), "{long:?}");
    assert!(long_ended - signalled >= Duration::from_millis(900), "cancelled at the drain timeout, not before");
    let (deaf, _) = deaf.await.unwrap();
    let deaf = deaf.unwrap_err();
    assert_eq!(deaf.code(), Code::Aborted);
    assert!(deaf.message().contains("abandoned"), "{deaf:?}");

    let status = worker.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");
    assert!(signalled.elapsed() < Duration::from_secs(5));
}
