//! Measures the rate limiter's memory per key and shows the key cap holding.
//!
//! `cargo run --release -p rampart-common --example rate_limit_memory`
//!
//! Phase 1 fills a limiter with 10 million distinct keys (cap 10 million) and reports the
//! resident memory added per key. Phase 2 sends 10 million more distinct keys to a limiter capped
//! at 1 million and reports that its memory stops growing at the cap.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use rampart_common::{
    process::memory_usage,
    rate_limit::{KeyedRateLimiter, Quota},
};

#[allow(clippy::cast_precision_loss)]
fn per_key(bytes: u64, keys: usize) -> f64 {
    bytes as f64 / keys as f64
}

fn main() {
    // One request per 1,000 s: no key goes idle (and is swept) while the example runs.
    let quota = Quota::new(0.001, 1).unwrap();
    let keys = 10_000_000_u64;

    let before = memory_usage().unwrap().resident_bytes;
    let full = KeyedRateLimiter::new(quota, 10_000_000);
    for key in 0..keys {
        full.check(&key);
    }
    let after = memory_usage().unwrap().resident_bytes;
    let stats = full.stats();
    println!(
        "10M keys, cap 10M: {} keys held, RSS +{:.1} MiB = {:.1} bytes/key (tables: {:.1} bytes/key)",
        stats.keys,
        (after - before) as f64 / 1048576.0,
        per_key(after - before, stats.keys),
        per_key(stats.table_bytes as u64, stats.keys)
    );
    drop(full);

    let capped = KeyedRateLimiter::new(quota, 1_000_000);
    let start = memory_usage().unwrap().resident_bytes;
    let mut peak_keys = 0;
    for key in 0..keys {
        capped.check(&(key + keys));
        if key % 1_000_000 == 999_999 {
            let stats = capped.stats();
            peak_keys = peak_keys.max(stats.keys);
            let rss = memory_usage().unwrap().resident_bytes;
            println!(
                "cap 1M, {:>2}M distinct keys sent: {} held, {} evicted, tables {:.1} MiB, RSS {:+.1} MiB",
                (key + 1) / 1_000_000,
                stats.keys,
                stats.evictions,
                stats.table_bytes as f64 / 1048576.0,
                (rss as f64 - start as f64) / 1048576.0
            );
        }
    }
    assert!(peak_keys <= 1_000_000);
}
