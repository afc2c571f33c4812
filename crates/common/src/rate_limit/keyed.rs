//! GCRA per key in a sharded, bounded map.

use super::{Decision, Quota};
use crate::clock::{Clock, MonotonicClock};
use std::{
    collections::HashMap,
    hash::{BuildHasher, BuildHasherDefault, Hash, Hasher},
    sync::{
        PoisonError, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

/// Shards of the key map; a power of two. Enough that threads on different keys rarely meet.
const SHARDS: usize = 64;

/// How often a shard drops its idle keys as it takes new ones.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// How often a full shard may look for idle keys to make room, so that a shard full of active
/// keys does not scan itself on every new key.
const FULL_SWEEP_EVERY: Duration = Duration::from_millis(100);

/// A rate limiter with one GCRA state per key, at most `max_keys` of them.
///
/// Keys are stored as 64-bit seeded hashes, so memory per key is fixed whatever the key (an IP,
/// an API key). Two keys would share a bucket only on a hash collision: with 10 million keys, odds
/// of about one in 300,000 that any pair collides at all. A full shard drops an eighth of its
/// keys at once, those nearest a full bucket, so a flood of new keys pays for one scan per
/// eighth of a shard.
pub struct KeyedRateLimiter<C: Clock = MonotonicClock> {
    quota: Quota,
    shards: Box<[Shard]>,
    shard_capacity: usize,
    hasher: foldhash::fast::RandomState,
    /// Keys dropped to make room while they still owed something.
    evictions: AtomicU64,
    clock: C,
}

struct Shard {
    keys: RwLock<Table>,
    last_sweep: AtomicU64,
}

/// One shard's keys, in a map whose size this limiter chooses rather than the map itself.
///
/// A dropped key leaves a tombstone; once tombstones have used up the map's free slots, the std
/// map doubles its table whenever it is over half full, although the cap needs no more room, and
/// it does not say how big its table is. So the limiter never lets it run out of free slots: it
/// moves the keys to a fresh table first (which also clears the tombstones), sized by doubling up
/// to the cap, and records that table's size.
#[derive(Default)]
struct Table {
    map: HashMap<u64, AtomicU64, BuildHasherDefault<PassThrough>>,
    /// Bytes of the map's current table.
    bytes: usize,
}

impl Table {
    /// Ensures the map can take one more key without growing on its own.
    fn reserve_one(&mut self, cap: usize) {
        let len = self.map.len();
        // `capacity()` is the keys held plus the free slots left.
        if len < self.map.capacity() {
            return;
        }
        let wanted = (len * 2).min(cap).max(len + 1);
        let mut fresh = HashMap::with_capacity_and_hasher(wanted, BuildHasherDefault::default());
        fresh.extend(self.map.drain());
        self.bytes = table_bytes_for(fresh.capacity());
        self.map = fresh;
    }
}

/// Figures about a limiter's key store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyedStats {
    /// Keys held now.
    pub keys: usize,
    /// The cap on keys.
    pub max_keys: usize,
    /// Keys dropped to make room for new ones while their buckets were not yet full again.
    pub evictions: u64,
    /// Bytes the key tables occupy, from the sizes they were given.
    pub table_bytes: usize,
}

impl KeyedRateLimiter<MonotonicClock> {
    /// A limiter applying `quota` to each of up to `max_keys` keys, on the real clock.
    pub fn new(quota: Quota, max_keys: usize) -> Self {
        Self::with_clock(quota, max_keys, MonotonicClock::new())
    }
}

impl<C: Clock> KeyedRateLimiter<C> {
    /// A limiter on the given clock.
    pub fn with_clock(quota: Quota, max_keys: usize, clock: C) -> Self {
        let shards =
            (0..SHARDS).map(|_| Shard { keys: RwLock::new(Table::default()), last_sweep: AtomicU64::new(0) }).collect();
        Self {
            quota,
            shards,
            shard_capacity: max_keys.div_ceil(SHARDS).max(1),
            hasher: foldhash::fast::RandomState::default(),
            evictions: AtomicU64::new(0),
            clock,
        }
    }

    /// The quota each key gets.
    pub fn quota(&self) -> &Quota {
        &self.quota
    }

    /// Decides one request for `key` now.
    pub fn check<K: Hash + ?Sized>(&self, key: &K) -> Decision {
        self.check_share(key, 1)
    }

    /// Decides one request for `key` now against one of `parts` equal shares of the quota (see
    /// [`Quota`]: each of `parts` gateways enforces its share of a cluster-wide limit).
    pub fn check_share<K: Hash + ?Sized>(&self, key: &K, parts: u32) -> Decision {
        self.check_at_share(key, self.clock.now_nanos(), parts)
    }

    /// Decides one request for `key` at `now` nanoseconds on this limiter's clock, for
    /// simulations and tests that choose their own time. Decisions stay exact (no window admits
    /// more than `rate × window + burst`) even when callers' times are not in order.
    pub fn check_at<K: Hash + ?Sized>(&self, key: &K, now: u64) -> Decision {
        self.check_at_share(key, now, 1)
    }

    fn check_at_share<K: Hash + ?Sized>(&self, key: &K, now: u64, parts: u32) -> Decision {
        let hash = self.hasher.hash_one(key);
        // The middle bits pick the shard; the map uses the low bits for buckets and the top
        // seven for its tags, so neither loses entropy within a shard.
        #[allow(clippy::cast_possible_truncation)] // masked to the shard count
        let shard = &self.shards[(hash >> 32) as usize & (SHARDS - 1)];
        {
            let keys = shard.keys.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(state) = keys.map.get(&hash) {
                return self.quota.decide(state, now, parts);
            }
        }
        self.insert_and_check(shard, hash, now, parts)
    }

    fn insert_and_check(&self, shard: &Shard, hash: u64, now: u64, parts: u32) -> Decision {
        let mut keys = shard.keys.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(state) = keys.map.get(&hash) {
            return self.quota.decide(state, now, parts);
        }
        let since_sweep = now.saturating_sub(shard.last_sweep.load(Ordering::Relaxed));
        let full = keys.map.len() >= self.shard_capacity;
        let due = if full { FULL_SWEEP_EVERY } else { SWEEP_EVERY };
        if since_sweep >= crate::clock::nanos(due) {
            // A key whose TAT has passed decides exactly like an absent one: dropping it is free.
            keys.map.retain(|_, tat| tat.load(Ordering::Acquire) > now);
            shard.last_sweep.store(now, Ordering::Relaxed);
        }
        if keys.map.len() >= self.shard_capacity {
            self.make_room(&mut keys.map);
        }
        keys.reserve_one(self.shard_capacity);
        let state = keys.map.entry(hash).or_insert_with(|| AtomicU64::new(0));
        self.quota.decide(state, now, parts)
    }

    /// Drops the eighth of a full shard's keys whose buckets are nearest full (lowest TAT).
    fn make_room(&self, keys: &mut HashMap<u64, AtomicU64, BuildHasherDefault<PassThrough>>) {
        let drop_count = (self.shard_capacity / 8).clamp(1, keys.len());
        let mut by_tat: Vec<(u64, u64)> = keys.iter().map(|(&key, tat)| (tat.load(Ordering::Acquire), key)).collect();
        by_tat.select_nth_unstable(drop_count - 1);
        for &(_, key) in &by_tat[..drop_count] {
            keys.remove(&key);
        }
        self.evictions.fetch_add(drop_count as u64, Ordering::Relaxed);
    }

    /// Drops every idle key now (keys are also dropped lazily as new ones arrive).
    pub fn evict_idle(&self) {
        let now = self.clock.now_nanos();
        for shard in &self.shards {
            let mut keys = shard.keys.write().unwrap_or_else(PoisonError::into_inner);
            keys.map.retain(|_, tat| tat.load(Ordering::Acquire) > now);
            shard.last_sweep.store(now, Ordering::Relaxed);
        }
    }

    /// Figures about the key store.
    pub fn stats(&self) -> KeyedStats {
        let mut keys = 0;
        let mut table_bytes = 0;
        for shard in &self.shards {
            let table = shard.keys.read().unwrap_or_else(PoisonError::into_inner);
            keys += table.map.len();
            table_bytes += table.bytes;
        }
        KeyedStats {
            keys,
            max_keys: self.shard_capacity * SHARDS,
            evictions: self.evictions.load(Ordering::Relaxed),
            table_bytes,
        }
    }
}

/// Bytes the table of a freshly made std `HashMap<u64, AtomicU64>` of `capacity` occupies: a
/// power-of-two number of buckets (4 or 8 for the smallest, otherwise at most 7/8 full), each a
/// 16-byte entry plus a one-byte control tag.
fn table_bytes_for(capacity: usize) -> usize {
    let buckets = match capacity {
        0 => return 0,
        1..=3 => 4,
        4..=7 => 8,
        _ => (capacity * 8).div_ceil(7).next_power_of_two(),
    };
    buckets * (16 + 1)
}

/// The map's keys are already seeded hashes; hashing them again would only cost time.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are stored; this path exists for completeness.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn limiter(rate: f64, burst: u32, max_keys: usize) -> (KeyedRateLimiter<ManualClock>, ManualClock) {
        let clock = ManualClock::new();
        clock.advance(Duration::from_secs(1));
        (KeyedRateLimiter::with_clock(Quota::new(rate, burst).unwrap(), max_keys, clock.clone()), clock)
    }

    #[test]
    fn keys_are_limited_independently() {
        let (limiter, _clock) = limiter(1.0, 2, 1000);
        assert!(limiter.check("alice").allowed);
        assert!(limiter.check("alice").allowed);
        assert!(!limiter.check("alice").allowed);
        assert!(limiter.check("bob").allowed, "bob is not charged for alice");
        assert_eq!(limiter.check("bob").remaining, 0);
    }

    #[test]
    fn idle_keys_are_evicted_without_changing_decisions() {
        let (limiter, clock) = limiter(10.0, 5, 1000);
        for key in 0..100_u32 {
            assert!(limiter.check(&key).allowed);
        }
        assert_eq!(limiter.stats().keys, 100);
        clock.advance(Duration::from_secs(1));
        limiter.evict_idle();
        assert_eq!(limiter.stats().keys, 0);
        // A returning key gets its full burst, as it would have anyway.
        assert_eq!(limiter.check(&7_u32).remaining, 4);
    }

    #[test]
    fn new_keys_sweep_idle_ones_lazily() {
        let (limiter, clock) = limiter(10.0, 1, 100_000);
        for key in 0..1000_u32 {
            limiter.check(&key);
        }
        assert_eq!(limiter.stats().keys, 1000);
        clock.advance(SWEEP_EVERY);
        // Each shard sweeps as it takes its next new key.
        for key in 1000..3000_u32 {
            limiter.check(&key);
        }
        assert_eq!(limiter.stats().keys, 2000);
    }

    #[test]
    fn at_the_cap_new_keys_get_their_own_bucket_and_busy_keys_keep_their_debt() {
        let max_keys = 64 * 10;
        let (limiter, _clock) = limiter(1.0, 5, max_keys);
        // A busy client spends its whole burst.
        for _ in 0..5 {
            assert!(limiter.check("busy").allowed);
        }
        assert!(!limiter.check("busy").allowed);
        // A flood of fresh keys, one request each: every one is admitted on a bucket of its own.
        for key in 0..100_000_u32 {
            assert!(limiter.check(&key).allowed, "key {key}");
        }
        let stats = limiter.stats();
        assert_eq!(stats.max_keys, max_keys);
        assert!(stats.keys <= max_keys, "{stats:?}");
        assert!(stats.evictions >= 100_000 - max_keys as u64, "{stats:?}");
        // The busy key owed the most, so it was never the one dropped: still refused.
        assert!(!limiter.check("busy").allowed, "the flood did not reset the busy key");
        // And a newcomer after the flood gets its full burst.
        assert_eq!(limiter.check("newcomer").remaining, 4);
    }

    #[test]
    fn churn_at_the_cap_never_grows_the_tables() {
        let max_keys = 64 * 1000;
        let (limiter, _clock) = limiter(1.0, 1, max_keys);
        for key in 0..3_000_000_u64 {
            limiter.check(&key);
        }
        let stats = limiter.stats();
        assert!(stats.keys <= max_keys, "{stats:?}");
        assert!(stats.evictions >= 2_900_000, "{stats:?}");
        // Each shard's 1000 keys fit in 2048 buckets of 17 bytes.
        assert_eq!(stats.table_bytes, 64 * 2048 * 17, "{stats:?}");
    }

    #[test]
    fn the_tables_say_their_size() {
        let mut table = Table::default();
        for key in 0..1000_u64 {
            table.reserve_one(1000);
            table.map.insert(key, AtomicU64::new(0));
            // What the table takes matches what a map made for these keys would take.
            let made = HashMap::<u64, AtomicU64>::with_capacity(table.map.capacity());
            assert_eq!(table.bytes, table_bytes_for(made.capacity()), "at {key}");
            assert!(table.bytes >= table_bytes_for(table.map.len()));
        }
        assert_eq!(table.bytes, 2048 * 17);
    }
}
