//! Requests per second per caller (`docs/api.md#rate-limits`): a token bucket per key.
//!
//! A key's bucket holds up to `qps` tokens and refills at `qps` tokens per
//! second, so a caller may send `qps` requests in a burst and then `qps` a
//! second. Buckets live in a `DashMap`: a flood from one key locks only its
//! own shard, never the others.
//!
//! Memory is bounded: a bucket idle for a second is full again, exactly as
//! if it did not exist, so sweeps drop such buckets without changing any
//! answer (every 10 seconds, and whenever the map reaches `max_keys`).
//! When more than `max_keys` keys were active within the last second (a
//! distributed flood), further new keys share one overflow bucket instead of
//! growing the map.

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// Default bound on tracked keys (about 64 bytes each).
pub const DEFAULT_MAX_KEYS: usize = 100_000;
/// How often idle buckets are swept when the map is not full.
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// Shortest time between two sweeps forced by a full map.
const FULL_SWEEP_EVERY: Duration = Duration::from_secs(1);
/// A bucket idle this long has refilled completely.
const REFILL: Duration = Duration::from_secs(1);

/// One key's tokens.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// Tokens left, from 0 to `qps`.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    updated: Instant,
}

impl Bucket {
    fn full(qps: u32, now: Instant) -> Self {
        Bucket {
            tokens: f64::from(qps),
            updated: now,
        }
    }

    /// Takes one token, or tells how long until one is there.
    fn take(&mut self, qps: u32, now: Instant) -> Result<(), Duration> {
        let rate = f64::from(qps);
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.updated = self.updated.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
    }

    fn idle(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.updated) >= REFILL
    }
}

/// Token buckets by key (a client address, or a user).
pub struct RateLimiter<K: Hash + Eq> {
    buckets: DashMap<K, Bucket, ahash::RandomState>,
    /// Keys beyond `max_keys` while all tracked keys are active.
    overflow: Mutex<Option<Bucket>>,
    max_keys: usize,
    /// Reference point of `last_sweep_ms`.
    epoch: Instant,
    /// When the last sweep started, in ms after `epoch`.
    last_sweep_ms: AtomicU64,
}

impl<K: Hash + Eq> RateLimiter<K> {
    pub fn new(max_keys: usize) -> Self {
        RateLimiter {
            buckets: DashMap::with_hasher(ahash::RandomState::new()),
            overflow: Mutex::new(None),
            max_keys: max_keys.max(1),
            epoch: Instant::now(),
            last_sweep_ms: AtomicU64::new(0),
        }
    }

    /// Lets one request of `key` through, or says how long it should wait;
    /// `qps` 0 means no limit.
    pub fn check(&self, key: K, qps: u32, now: Instant) -> Result<(), Duration> {
        if qps == 0 {
            return Ok(());
        }
        self.sweep_if_due(now, SWEEP_EVERY);
        if let Some(mut bucket) = self.buckets.get_mut(&key) {
            return bucket.take(qps, now);
        }
        if self.buckets.len() >= self.max_keys {
            self.sweep_if_due(now, FULL_SWEEP_EVERY);
        }
        if self.buckets.len() >= self.max_keys {
            let mut overflow = self.overflow.lock().unwrap_or_else(|e| e.into_inner());
            return overflow
                .get_or_insert_with(|| Bucket::full(qps, now))
                .take(qps, now);
        }
        self.buckets
            .entry(key)
            .or_insert_with(|| Bucket::full(qps, now))
            .take(qps, now)
    }

    /// Keys currently tracked.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }

    /// Drops idle buckets when the last sweep is at least `every` ago; one
    /// caller sweeps, the others go on.
    fn sweep_if_due(&self, now: Instant, every: Duration) {
        let now_ms = u64::try_from(now.saturating_duration_since(self.epoch).as_millis())
            .unwrap_or(u64::MAX);
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        let every_ms = every.as_millis() as u64;
        if now_ms.saturating_sub(last) < every_ms {
            return;
        }
        if self
            .last_sweep_ms
            .compare_exchange(last, now_ms, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        self.buckets.retain(|_, bucket| !bucket.idle(now));
        let mut overflow = self.overflow.lock().unwrap_or_else(|e| e.into_inner());
        if overflow.is_some_and(|b| b.idle(now)) {
            *overflow = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_burst_of_qps_passes_and_the_next_waits_for_one_token() {
        let limiter = RateLimiter::new(100);
        let t0 = Instant::now();
        for i in 0..5 {
            assert!(limiter.check("a", 5, t0).is_ok(), "request {i}");
        }
        let wait = limiter.check("a", 5, t0).unwrap_err();
        assert_eq!(wait, 200 * MS);
        // Half a token later, half the wait is left.
        let wait = limiter.check("a", 5, t0 + 100 * MS).unwrap_err();
        assert!((99 * MS..=101 * MS).contains(&wait), "{wait:?}");
        assert!(limiter.check("a", 5, t0 + 200 * MS).is_ok());
        assert!(limiter.check("a", 5, t0 + 200 * MS).is_err());
    }

    #[test]
    fn one_key_flooding_does_not_throttle_another() {
        let limiter = RateLimiter::new(100);
        let t0 = Instant::now();
        for _ in 0..1000 {
            let _ = limiter.check("flood", 2, t0);
        }
        assert!(limiter.check("other", 2, t0).is_ok());
        assert!(limiter.check("other", 2, t0).is_ok());
        assert!(limiter.check("flood", 2, t0).is_err());
    }

    #[test]
    fn zero_qps_is_no_limit_and_tracks_nothing() {
        let limiter = RateLimiter::new(100);
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert!(limiter.check(1u32, 0, t0).is_ok());
        }
        assert_eq!(limiter.tracked(), 0);
    }

    #[test]
    fn tokens_never_exceed_qps_after_a_long_pause() {
        let limiter = RateLimiter::new(100);
        let t0 = Instant::now();
        assert!(limiter.check("a", 2, t0).is_ok());
        let later = t0 + Duration::from_secs(3600);
        assert!(limiter.check("a", 2, later).is_ok());
        assert!(limiter.check("a", 2, later).is_ok());
        assert!(limiter.check("a", 2, later).is_err());
    }

    #[test]
    fn idle_keys_are_swept_so_memory_stays_bounded() {
        let limiter = RateLimiter::new(1_000_000);
        let t0 = Instant::now();
        for key in 0..500u32 {
            limiter.check(key, 1, t0).unwrap();
        }
        assert_eq!(limiter.tracked(), 500);
        // The periodic sweep drops every bucket idle for a second or more.
        limiter.check(9999, 1, t0 + SWEEP_EVERY + MS).unwrap();
        assert_eq!(limiter.tracked(), 1);
    }

    #[test]
    fn keys_beyond_the_bound_share_the_overflow_bucket() {
        let limiter = RateLimiter::new(3);
        let t0 = Instant::now() + Duration::from_secs(5);
        for key in 0..3u32 {
            limiter.check(key, 2, t0).unwrap();
        }
        // All three are active: newcomers are not tracked but limited together.
        assert!(limiter.check(100, 2, t0).is_ok());
        assert!(limiter.check(101, 2, t0).is_ok());
        assert!(limiter.check(102, 2, t0).is_err());
        assert_eq!(limiter.tracked(), 3);
        // A second on, the old buckets are idle and make room again.
        let t1 = t0 + Duration::from_secs(2);
        assert!(limiter.check(103, 2, t1).is_ok());
        assert!(limiter.tracked() <= 3);
        assert!(limiter.buckets.contains_key(&103));
    }
}
