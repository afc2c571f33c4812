//! The worker binary over real gRPC: job kinds, pools, isolation, errors, health.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use rampart_proto::v1::{DescribeRequest, JobRequest, JobResult, JobStatus, PoolKind, worker_client::WorkerClient};
use rampart_testkit::{Process, spawn_worker, worker_url};
use std::time::{Duration, Instant};
use tonic::{Code, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

async fn client(worker: &Process) -> WorkerClient<Channel> {
    WorkerClient::connect(worker_url(worker)).await.expect("connect to worker")
}

fn job(kind: &str, payload: &str) -> JobRequest {
    JobRequest {
        id: format!("test-{kind}"),
        kind: kind.into(),
        payload: payload.as_bytes().to_vec().into(),
        ..Default::default()
    }
}

/// Waits until the worker reports `busy` running and `queued` waiting jobs in `pool`.
async fn wait_for_load(client: &mut WorkerClient<Channel>, pool: PoolKind, busy: u32, queued: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = client.describe(DescribeRequest {}).await.unwrap().into_inner();
        let stats = info.pools.iter().find(|stats| stats.kind() == pool).unwrap();
        if (stats.busy, stats.queued) == (busy, queued) {
            return;
        }
        assert!(Instant::now() < deadline, "pool {pool:?} never reached {busy} busy, {queued} queued: {stats:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn run(client: &mut WorkerClient<Channel>, kind: &str, payload: &str) -> Result<JobResult, tonic::Status> {
    client.execute(job(kind, payload)).await.map(tonic::Response::into_inner)
}

#[tokio::test]
async fn describe_lists_the_kinds_and_pool_sizes() {
    let worker =
        spawn_worker(&["--cpu-threads", "3", "--cpu-queue", "7", "--io-concurrency", "50", "--name", "w1"]).await;
    let info = client(&worker).await.describe(DescribeRequest {}).await.unwrap().into_inner();
    assert_eq!(info.name, "w1");
    let kinds: Vec<_> = info.kinds.iter().map(|kind| (kind.name.as_str(), kind.pool())).collect();
    assert_eq!(
        kinds,
        [
            ("cpu", PoolKind::Cpu),
            ("echo", PoolKind::Io),
            ("fail", PoolKind::Io),
            ("hash", PoolKind::Cpu),
            ("sleep", PoolKind::Io)
        ]
    );
    let pools: Vec<_> = info
        .pools
        .iter()
        .map(|pool| (pool.kind(), pool.concurrency, pool.queue_capacity, pool.busy, pool.queued))
        .collect();
    assert_eq!(pools, [(PoolKind::Io, 50, 0, 0, 0), (PoolKind::Cpu, 3, 7, 0, 0)]);
}

#[tokio::test]
async fn the_cpu_pool_defaults_to_the_cores_this_process_may_use() {
    let worker = spawn_worker(&[]).await;
    let info = client(&worker).await.describe(DescribeRequest {}).await.unwrap().into_inner();
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
async fn full_pools_answer_resource_exhausted_with_pushback() {
    let worker = spawn_worker(&["--cpu-threads", "1", "--cpu-queue", "1", "--io-concurrency", "2"]).await;
    let client = client(&worker).await;
    let pushback = |status: &tonic::Status| {
        status.metadata().get("grpc-retry-pushback-ms").map(|v| v.to_str().unwrap().to_owned())
    };

    // Two long sleeps fill the I/O pool; the third is refused at once.
    let sleeps: Vec<_> = (0..2)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move { run(&mut client, "sleep", r#"{"ms": 3000}"#).await })
        })
        .collect();
    wait_for_load(&mut client.clone(), PoolKind::Io, 2, 0).await;
    let refused = run(&mut client.clone(), "sleep", r#"{"ms": 1}"#).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("io pool"), "{refused:?}");
    assert_eq!(pushback(&refused).as_deref(), Some("100"));

    // One running CPU job and one queued fill the CPU pool.
    let long_cpu = r#"{"iterations": 100000000000}"#;
    let cpu_jobs: Vec<_> = (0..2)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move {
                let mut request = tonic::Request::new(job("cpu", long_cpu));
                request.set_timeout(Duration::from_secs(3));
                client.execute(request).await
            })
        })
        .collect();
    wait_for_load(&mut client.clone(), PoolKind::Cpu, 1, 1).await;
    let refused = run(&mut client.clone(), "cpu", r#"{"iterations": 1}"#).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(pushback(&refused).is_some());

    for sleep in sleeps {
        assert_eq!(sleep.await.unwrap().unwrap().status(), JobStatus::Succeeded);
    }
    for cpu_job in cpu_jobs {
        assert!(cpu_job.await.unwrap().is_err(), "the long CPU jobs hit their deadline");
    }
}

#[tokio::test]
async fn cpu_jobs_do_not_hold_up_io_jobs() {
    // Saturate every CPU thread with long computations, then time short sleeps: they run on the
    // async runtime, which the CPU pool never occupies.
    let worker = spawn_worker(&["--cpu-threads", "2"]).await;
    let client = client(&worker).await;
    let hogs: Vec<_> = (0..2)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move {
                let mut request = tonic::Request::new(JobRequest {
                    timeout_ms: 4_000,
                    ..job("cpu", r#"{"iterations": 100000000000}"#)
                });
                request.set_timeout(Duration::from_secs(10));
                client.execute(request).await
            })
        })
        .collect();
    wait_for_load(&mut client.clone(), PoolKind::Cpu, 2, 0).await;
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let started = Instant::now();
        let result = run(&mut client.clone(), "sleep", r#"{"ms": 10}"#).await.unwrap();
        assert_eq!(result.status(), JobStatus::Succeeded);
        slowest = slowest.max(started.elapsed());
    }
    assert!(slowest < Duration::from_millis(500), "a 10 ms sleep took {slowest:?} while the CPU pool was busy");
    for hog in hogs {
        let status = hog.await.unwrap().unwrap_err();
        assert_eq!(status.code(), Code::DeadlineExceeded, "the job's own timeout_ms stops it: {status:?}");
    }
}

#[tokio::test]
async fn a_job_timeout_is_deadline_exceeded_and_frees_the_slot() {
    let worker = spawn_worker(&["--io-concurrency", "1"]).await;
    let mut client = client(&worker).await;
    let started = Instant::now();
    let status = client.execute(JobRequest { timeout_ms: 100, ..job("sleep", r#"{"ms": 5000}"#) }).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert!(started.elapsed() < Duration::from_secs(2));
    // The one I/O slot is free again.
    assert_eq!(run(&mut client, "sleep", r#"{"ms": 1}"#).await.unwrap().status(), JobStatus::Succeeded);
}

#[tokio::test]
async fn a_dropped_call_frees_its_slot() {
    let worker = spawn_worker(&["--io-concurrency", "1"]).await;
    let mut client = client(&worker).await;
    let mut request = tonic::Request::new(job("sleep", r#"{"ms": 60000}"#));
    request.set_timeout(Duration::from_millis(200));
    assert!(client.execute(request).await.is_err());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(&run(&mut client, "echo", "2").await.unwrap().output[..], b"2");
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

#[tokio::test]
async fn sigterm_stops_the_worker() {
    let mut worker = spawn_worker(&[]).await;
    worker.signal(nix::sys::signal::Signal::SIGTERM);
    let status = worker.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");
}
