//! Per-job overhead of the worker engine, without gRPC: how much the engine itself costs to
//! look up a kind, prepare it, take a pool slot and report the outcome.
//!
//! `cargo bench -p rampart-worker --bench engine`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use rampart_worker::{Engine, EngineConfig, JobSpec, Registry};
use std::{
    hint::black_box,
    sync::Arc,
    time::{Duration, Instant},
};

fn spec(kind: &str, payload: &'static str) -> JobSpec {
    JobSpec::new(kind, Bytes::from_static(payload.as_bytes()))
}

/// Times `iters` sequential jobs from inside a runtime task, as the gRPC handler runs them, so
/// the figure is the engine's cost and not the harness's cross-thread wake-ups.
fn run_jobs(
    runtime: &tokio::runtime::Runtime,
    engine: &Arc<Engine>,
    iters: u64,
    kind: &'static str,
    payload: &'static str,
) -> Duration {
    let engine = Arc::clone(engine);
    runtime.block_on(async move {
        tokio::spawn(async move {
            let started = Instant::now();
            for _ in 0..iters {
                let finished = engine.run(spec(kind, payload)).await.unwrap();
                black_box(finished.output.unwrap());
            }
            started.elapsed()
        })
        .await
        .unwrap()
    })
}

fn engine_overhead(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let engine = Arc::new(Engine::start(Registry::builtin(), &EngineConfig::default()).unwrap());
    let mut group = c.benchmark_group("engine");
    group.bench_function("echo on the I/O pool", |b| {
        b.iter_custom(|iters| run_jobs(&runtime, &engine, iters, "echo", r#"{"n":1}"#));
    });
    group.bench_function("cpu (1 iteration) on the CPU pool", |b| {
        b.iter_custom(|iters| run_jobs(&runtime, &engine, iters, "cpu", r#"{"iterations":1}"#));
    });
    group.finish();
}

criterion_group!(benches, engine_overhead);
criterion_main!(benches);
