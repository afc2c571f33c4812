//! The worker binary over real gRPC: job kinds, errors, panics, Describe, health.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use rampart_proto::v1::{JobStatus, PoolKind};
use rampart_testkit::{spawn_worker, worker_url};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::{client, describe, run};
use tonic::{Code, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

#[tokio::test]
async fn describe_lists_the_kinds_and_pool_sizes() {
    let worker = spawn_worker(&[
        "--cpu-threads",
        "3",
        "--cpu-queue",
        "7",
        "--io-concurrency",
        "50",
        "--io-queue",
        "5",
        "--name",
        "w1",
    ])
    .await;
    let info = describe(&mut client(&worker).await).await;
    assert_eq!(info.name, "w1");
    let kinds: Vec<_> = info.kinds.iter().map(|kind| (kind.name.as_str(), kind.pool())).collect();
    assert_eq!(
        kinds,
        [
            ("cpu", PoolKind::Cpu),
            ("echo", PoolKind::Io),
            ("fail", PoolKind::Io),
            ("hash", PoolKind::Cpu),
            ("pipeline", PoolKind::Io),
            ("sleep", PoolKind::Io)
        ]
    );
    let pools: Vec<_> = info
        .pools
        .iter()
        .map(|pool| (pool.kind(), pool.concurrency, pool.queue_capacity, pool.busy, pool.queued, pool.abandoned))
        .collect();
    assert_eq!(pools, [(PoolKind::Io, 50, 5, 0, 0, 0), (PoolKind::Cpu, 3, 7, 0, 0, 0)]);
}

#[tokio::test]
async fn the_pipeline_kind_fans_out_with_bounded_concurrency_and_keeps_input_order() {
    let worker = spawn_worker(&[]).await;
    let mut client = client(&worker).await;
    let mut records: Vec<Value> = (0..40)
        .map(|n| json!({"id": n, "amount": n * 10 + 1, "currency": "usd", "email": format!("u{n}@shop.example")}))
        .collect();
    records[7] = json!({"id": 7, "amount": 5, "currency": "usd", "email": "nobody"});
    records[20] = json!({"id": 20, "amount": 5, "currency": "doubloons", "email": "p@sea.example"});
    let payload = json!({"records": records, "concurrency": 8, "enrich_delay_ms": 50}).to_string();
    let started = Instant::now();
    let result = run(&mut client, "pipeline", &payload).await.unwrap();
    let elapsed = started.elapsed();
    let output: Value = serde_json::from_slice(&result.output).unwrap();
    let ids: Vec<u64> = output["records"].as_array().unwrap().iter().map(|r| r["id"].as_u64().unwrap()).collect();
    let expected: Vec<u64> = (0..40).filter(|n| *n != 7 && *n != 20).collect();
    assert_eq!(ids, expected, "fanned back in, in input order");
    assert_eq!(
        output["rejected"][0],
        json!({"index": 7, "id": 7, "stage": "validate", "reason": "email \"nobody\" has no @"})
    );
    assert_eq!(output["rejected"][1]["stage"], "transform");
    assert_eq!(output["peak_in_flight"], 8, "never more than the bound, and the bound reached");
    // 38 enrichments of 50 ms, at most 8 at a time: at least 5 rounds.
    assert!(elapsed >= Duration::from_millis(240), "{elapsed:?}");
}

#[tokio::test]
async fn the_cpu_pool_defaults_to_the_cores_this_process_may_use() {
    let worker = spawn_worker(&[]).await;
    let info = describe(&mut client(&worker).await).await;
    let cores = std::thread::available_parallelism().unwrap().get();
    let cpu = info.pools.iter().find(|pool| pool.kind() == PoolKind::Cpu).unwrap();
    assert_eq!(cpu.concurrency as usize, cores);
}

#[tokio::test]
async fn each_builtin_kind_does_its_job() {
    let worker = spawn_worker(&["--name", "w"]).await;
    let mut client = client(&worker).await;

    let payload = r#"{"nested": [1, 2.5, "ü"],   "spaces": true}"#;
    let echoed = run(&mut client, "echo", payload).await.unwrap();
    assert_eq!(echoed.status(), JobStatus::Succeeded);
    assert_eq!(echoed.output, payload.as_bytes(), "echo returns its payload byte for byte");
    assert_eq!(echoed.worker, "w");
    assert_eq!(echoed.id, "test-echo");

    let started = Instant::now();
    let slept = run(&mut client, "sleep", r#"{"ms": 120}"#).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(120));
    assert_eq!(&slept.output[..], br#"{"slept_ms":120}"#);
    assert!(slept.run_us >= 120_000, "{}", slept.run_us);

    let summed = run(&mut client, "cpu", r#"{"iterations": 1000}"#).await.unwrap();
    assert_eq!(&summed.output[..], br#"{"iterations":1000,"sum":499500}"#);

    // sha256(sha256("abc")), checked with `printf abc | sha256sum | xxd -r -p | sha256sum`.
    let hashed = run(&mut client, "hash", r#"{"rounds": 2, "data": "abc"}"#).await.unwrap();
    let output: serde_json::Value = serde_json::from_slice(&hashed.output).unwrap();
    assert_eq!(output["sha256"], "4f8b42c22dd3729b519ba6f68d2da7cc5b2d606d05daed5ad5128cc03e6c6358");

    let failed = run(&mut client, "fail", "{}").await.unwrap();
    assert_eq!(failed.status(), JobStatus::Failed);
    assert_eq!(failed.error, "failed on purpose");
    let lucky = run(&mut client, "fail", r#"{"rate": 0}"#).await.unwrap();
    assert_eq!(lucky.status(), JobStatus::Succeeded);
}

#[tokio::test]
async fn bad_calls_get_the_promised_status_codes() {
    let worker = spawn_worker(&[]).await;
    let mut client = client(&worker).await;
    let unknown = run(&mut client, "resize", "{}").await.unwrap_err();
    assert_eq!(unknown.code(), Code::Unimplemented);
    assert!(unknown.message().contains("echo"), "names the kinds it runs: {}", unknown.message());

    for (kind, payload) in [
        ("sleep", r#"{"ms": "long"}"#),
        ("sleep", "{}"),
        ("cpu", "[1]"),
        ("hash", r#"{"rounds": 0}"#),
        ("fail", r#"{"rate": 2}"#),
        ("sleep", "not json"),
    ] {
        let status = run(&mut client, kind, payload).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{kind} {payload}: {status:?}");
    }
}

#[tokio::test]
async fn a_panicking_job_fails_alone_on_either_pool() {
    let worker = spawn_worker(&["--cpu-threads", "1"]).await;
    let mut client = client(&worker).await;
    for mode in ["panic", "cpu_panic"] {
        let result = run(&mut client, "fail", &format!(r#"{{"mode": "{mode}"}}"#)).await.unwrap();
        assert_eq!(result.status(), JobStatus::Failed, "{mode}");
        assert_eq!(result.error, "job panicked: panicked on purpose", "{mode}");
    }
    // The only CPU thread survived its panic and the I/O side is untouched.
    assert_eq!(run(&mut client, "cpu", r#"{"iterations": 10}"#).await.unwrap().status(), JobStatus::Succeeded);
    assert_eq!(&run(&mut client, "echo", "1").await.unwrap().output[..], b"1");
}

#[tokio::test]
async fn health_reports_serving() {
    let worker = spawn_worker(&[]).await;
    let channel = Channel::from_shared(worker_url(&worker)).unwrap().connect().await.unwrap();
    let mut health = HealthClient::new(channel);
    for service in ["", "rampart.v1.Worker"] {
        let answer = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(answer.status(), ServingStatus::Serving, "{service:?}");
    }
}
