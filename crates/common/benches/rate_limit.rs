//! Rampart's keyed GCRA limiter beside governor's, in one run: nanoseconds per decision for one
//! key, many keys, and one key contended by every core.
//!
//! `cargo bench -p rampart-common --bench rate_limit`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use governor::{Quota as GovernorQuota, RateLimiter as Governor};
use rampart_common::rate_limit::{KeyedRateLimiter, Quota};
use std::{
    hint::black_box,
    num::NonZeroU32,
    sync::Arc,
    time::{Duration, Instant},
};

/// A rate so high that every decision is an admission: the path a healthy gateway takes.
const RATE: u32 = 1_000_000_000;
const BURST: u32 = 1_000;
const MANY_KEYS: u64 = 100_000;

fn rampart() -> KeyedRateLimiter {
    KeyedRateLimiter::new(Quota::new(f64::from(RATE), BURST).unwrap(), 10_000_000)
}

fn governor() -> governor::DefaultKeyedRateLimiter<u64> {
    let quota = GovernorQuota::per_second(NonZeroU32::new(RATE).unwrap()).allow_burst(NonZeroU32::new(BURST).unwrap());
    Governor::keyed(quota)
}

fn one_key(c: &mut Criterion) {
    let mut group = c.benchmark_group("rate_limit/one_key");
    let ours = rampart();
    group.bench_function("rampart", |b| b.iter(|| black_box(ours.check(&7_u64).allowed)));
    let theirs = governor();
    group.bench_function("governor", |b| b.iter(|| black_box(theirs.check_key(&7_u64).is_ok())));
    group.finish();
}

fn many_keys(c: &mut Criterion) {
    let mut group = c.benchmark_group("rate_limit/many_keys");
    let ours = rampart();
    let theirs = governor();
    for key in 0..MANY_KEYS {
        ours.check(&key);
        let _ = theirs.check_key(&key);
    }
    let mut next = 0_u64;
    group.bench_function(BenchmarkId::new("rampart", MANY_KEYS), |b| {
        b.iter(|| {
            next = (next + 7919) % MANY_KEYS;
            black_box(ours.check(&next).allowed)
        })
    });
    group.bench_function(BenchmarkId::new("governor", MANY_KEYS), |b| {
        b.iter(|| {
            next = (next + 7919) % MANY_KEYS;
            black_box(theirs.check_key(&next).is_ok())
        })
    });
    group.finish();
}

/// Wall time for `iters` decisions on one key spread over `threads` threads.
fn contended(threads: u64, iters: u64, decide: Arc<dyn Fn() -> bool + Send + Sync>) -> Duration {
    let per_thread = iters.div_ceil(threads);
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let decide = Arc::clone(&decide);
            std::thread::spawn(move || {
                for _ in 0..per_thread {
                    black_box(decide());
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    started.elapsed()
}

fn contended_key(c: &mut Criterion) {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get() as u64).max(2);
    let mut group = c.benchmark_group("rate_limit/contended");
    let ours = Arc::new(rampart());
    let decide_ours: Arc<dyn Fn() -> bool + Send + Sync> = Arc::new(move || ours.check(&7_u64).allowed);
    group.bench_function(BenchmarkId::new("rampart", format!("{threads}_threads")), |b| {
        b.iter_custom(|iters| contended(threads, iters, Arc::clone(&decide_ours)))
    });
    let theirs = Arc::new(governor());
    let decide_theirs: Arc<dyn Fn() -> bool + Send + Sync> = Arc::new(move || theirs.check_key(&7_u64).is_ok());
    group.bench_function(BenchmarkId::new("governor", format!("{threads}_threads")), |b| {
        b.iter_custom(|iters| contended(threads, iters, Arc::clone(&decide_theirs)))
    });
    group.finish();
}

criterion_group!(benches, one_key, many_keys, contended_key);
criterion_main!(benches);
