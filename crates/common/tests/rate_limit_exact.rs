//! The rate limiter's promise under concurrency: over any window `w`, one key is admitted at most
//! `rate × w + burst` times, however many threads decide at once.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use proptest::prelude::*;
use rampart_common::rate_limit::{KeyedRateLimiter, Quota};
use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

/// Checks every pair of admissions: `count - burst` intervals must fit between the first and
/// the last. Times are the `now` each decision was made at.
fn assert_exact(mut admitted: Vec<u64>, interval: u64, burst: u64) {
    admitted.sort_unstable();
    for i in 0..admitted.len() {
        for j in i..admitted.len() {
            let count = (j - i + 1) as u64;
            let span = admitted[j] - admitted[i];
            assert!(
                count.saturating_sub(burst) * interval <= span,
                "{count} admitted within {span} ns; at most {} allowed",
                span / interval + burst
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn no_window_admits_more_than_rate_times_window_plus_burst(
        rate in 1.0_f64..100_000.0,
        burst in 1_u32..64,
        threads in 2_usize..8,
        calls in 200_usize..1500,
        step_percent in 1_u64..300,
    ) {
        let quota = Quota::new(rate, burst).unwrap();
        let interval = u64::try_from(quota.interval().as_nanos()).unwrap();
        let limiter = Arc::new(KeyedRateLimiter::new(quota, 1000));
        // Shared time that every thread pushes forward by a random share of the interval, so
        // the key is sometimes starved and sometimes idle, and times arrive out of order.
        let time = Arc::new(AtomicU64::new(1_000_000_000));
        let max_step = (interval * step_percent / 100 / threads as u64).max(1);
        let workers: Vec<_> = (0..threads)
            .map(|seed| {
                let limiter = Arc::clone(&limiter);
                let time = Arc::clone(&time);
                std::thread::spawn(move || {
                    let mut rng = fastrand::Rng::with_seed(seed as u64);
                    let mut admitted = Vec::new();
                    for _ in 0..calls {
                        let now = time.fetch_add(rng.u64(0..=max_step), Ordering::Relaxed);
                        if limiter.check_at("the key", now).allowed {
                            admitted.push(now);
                        }
                        // Another key alongside must not disturb the first.
                        limiter.check_at(&seed, now);
                    }
                    admitted
                })
            })
            .collect();
        let admitted: Vec<u64> = workers.into_iter().flat_map(|worker| worker.join().unwrap()).collect();
        prop_assert!(!admitted.is_empty());
        assert_exact(admitted, interval, u64::from(burst));
    }
}

#[test]
fn a_hammered_key_on_the_real_clock_gets_exactly_its_share() {
    // 8 threads for 300 ms against 1,000/s with a burst of 50: about 350 admissions, never more
    // than rate × elapsed + burst.
    let limiter = Arc::new(KeyedRateLimiter::new(Quota::new(1000.0, 50).unwrap(), 1000));
    let started = std::time::Instant::now();
    let admitted: u64 = (0..8)
        .map(|_| {
            let limiter = Arc::clone(&limiter);
            std::thread::spawn(move || {
                let mut admitted = 0_u64;
                while started.elapsed() < std::time::Duration::from_millis(300) {
                    admitted += u64::from(limiter.check("k").allowed);
                }
                admitted
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|worker| worker.join().unwrap())
        .sum();
    let elapsed = started.elapsed().as_secs_f64();
    let ceiling = (1000.0 * elapsed).floor() as u64 + 50;
    assert!(admitted <= ceiling, "{admitted} admitted, ceiling {ceiling}");
    assert!(admitted >= 300, "the limiter lets the rate through: {admitted}");
}

#[test]
fn ten_million_distinct_keys_stay_under_the_cap() {
    let max_keys = 1_000_000;
    let limiter = KeyedRateLimiter::new(Quota::new(1.0, 1).unwrap(), max_keys);
    for key in 0..10_000_000_u64 {
        limiter.check(&key);
    }
    let stats = limiter.stats();
    assert!(stats.keys <= max_keys, "{stats:?}");
    // Most keys found the map full and made room by dropping the keys nearest a full bucket.
    // (Not all: keys idle for over a second are swept for free, exactly as they should be.)
    assert!(stats.evictions >= 5_000_000, "{stats:?}");
    // Each of the 64 shards is one power-of-two table of 17-byte buckets at most 7/8 full: under
    // 40 bytes per key at the cap.
    assert!(stats.table_bytes <= max_keys * 40, "{stats:?}");
}
