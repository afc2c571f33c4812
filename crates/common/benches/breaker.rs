//! Uncontended overhead of the circuit breaker per call: acquire a permit and report a success.
//!
//! `cargo bench -p rampart-common --bench breaker`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use rampart_common::breaker::{BreakerConfig, CircuitBreaker};
use std::hint::black_box;

fn overhead(c: &mut Criterion) {
    let breaker = CircuitBreaker::new(BreakerConfig::default());
    c.bench_function("breaker/acquire+success", |b| {
        b.iter(|| black_box(breaker.try_acquire().unwrap()).success());
    });
    c.bench_function("breaker/acquire+failure+success", |b| {
        // Alternating keeps the breaker closed while exercising the failure path.
        b.iter(|| {
            breaker.try_acquire().unwrap().failure();
            breaker.try_acquire().unwrap().success();
        });
    });
}

criterion_group!(benches, overhead);
criterion_main!(benches);
