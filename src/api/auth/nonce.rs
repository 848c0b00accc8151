//! Nonces seen per AccessKey, so a signed request is served at most once.
//!
//! A request is accepted only within [`super::MAX_SKEW_MS`] of its
//! timestamp, so its nonce is remembered until then (`expires_ms`) and
//! forgotten after: a replay later is refused for its timestamp instead.
//! Each AccessKey has its own set behind its own lock; a set holds at most
//! `cap` nonces (a 128-bit digest and an expiry each), swept of expired
//! ones every 10 seconds and whenever it is full.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// How often a set is swept of expired nonces.
const SWEEP_EVERY_MS: i64 = 10_000;

/// Why a nonce was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal<E> {
    /// Seen before, and not expired: a replay.
    Used,
    /// The key's set is full of live nonces; retry after this long.
    Full(Duration),
    /// The caller's own check (the rate limit) refused it.
    Refused(E),
}

/// Live nonces of one AccessKey.
#[derive(Default)]
struct Nonces {
    /// Digest of the nonce -> when it may be forgotten (UNIX ms).
    live: HashMap<u128, i64>,
    next_sweep_ms: i64,
}

impl Nonces {
    /// Drops expired nonces; returns the earliest expiry left.
    fn sweep(&mut self, now_ms: i64) -> Option<i64> {
        self.live.retain(|_, expires| *expires >= now_ms);
        self.next_sweep_ms = now_ms.saturating_add(SWEEP_EVERY_MS);
        self.live.values().min().copied()
    }
}

/// One nonce set per AccessKey (by user index).
pub struct NonceStore {
    keys: Vec<Mutex<Nonces>>,
    cap: usize,
}

impl NonceStore {
    /// A store for `keys` AccessKeys of at most `cap` live nonces each.
    pub fn new(keys: usize, cap: usize) -> Self {
        NonceStore {
            keys: (0..keys).map(|_| Mutex::default()).collect(),
            cap: cap.max(1),
        }
    }

    /// Admits `nonce` of key `key` once: refused when it is live already;
    /// otherwise `check` runs (under the key's lock, so two copies of one
    /// request cannot both pass) and only a request it lets through
    /// consumes the nonce. A request refused by `check` (throttled) can be
    /// sent again with the same nonce.
    pub fn admit<E>(
        &self,
        key: usize,
        nonce: &str,
        expires_ms: i64,
        now_ms: i64,
        check: impl FnOnce() -> Result<(), E>,
    ) -> Result<(), Refusal<E>> {
        let digest = digest(nonce);
        let mut set = self.keys[key].lock().unwrap_or_else(|e| e.into_inner());
        if now_ms >= set.next_sweep_ms {
            set.sweep(now_ms);
        }
        if set.live.get(&digest).is_some_and(|&e| e >= now_ms) {
            return Err(Refusal::Used);
        }
        if set.live.len() >= self.cap {
            let earliest = set.sweep(now_ms);
            if set.live.len() >= self.cap {
                let wait_ms = earliest.map_or(1000, |e| e.saturating_sub(now_ms).max(1));
                return Err(Refusal::Full(Duration::from_millis(wait_ms as u64)));
            }
        }
        check().map_err(Refusal::Refused)?;
        set.live.insert(digest, expires_ms);
        Ok(())
    }

    /// Live nonces of key `key` (for tests and the memory report).
    pub fn len(&self, key: usize) -> usize {
        self.keys[key]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .live
            .len()
    }
}

/// The first 128 bits of the nonce's SHA-256: fixed size whatever the
/// nonce's length, and no collisions to arrange.
fn digest(nonce: &str) -> u128 {
    let hash = Sha256::digest(nonce.as_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&hash[..16]);
    u128::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn ok() -> Result<(), ()> {
        Ok(())
    }

    #[test]
    fn a_nonce_is_admitted_once_until_it_expires() {
        let store = NonceStore::new(2, 100);
        let t0 = 1_000_000;
        assert_eq!(store.admit(0, "n1", t0 + 15 * MIN, t0, ok), Ok(()));
        assert_eq!(
            store.admit(0, "n1", t0 + 15 * MIN, t0 + MIN, ok),
            Err(Refusal::Used)
        );
        // Nonces are per AccessKey.
        assert_eq!(store.admit(1, "n1", t0 + 15 * MIN, t0, ok), Ok(()));
        // Expired nonces are forgotten at the next sweep.
        assert_eq!(
            store.admit(0, "n2", t0 + 40 * MIN, t0 + 20 * MIN, ok),
            Ok(())
        );
        assert_eq!(store.len(0), 1);
    }

    #[test]
    fn a_refused_check_does_not_consume_the_nonce() {
        let store = NonceStore::new(1, 100);
        assert_eq!(
            store.admit(0, "n", 10 * MIN, 0, || Err("throttled")),
            Err(Refusal::Refused("throttled"))
        );
        assert_eq!(store.admit(0, "n", 10 * MIN, 0, ok), Ok(()));
        // A replay is refused before the check runs.
        let mut ran = false;
        let r = store.admit(0, "n", 10 * MIN, 0, || {
            ran = true;
            ok()
        });
        assert_eq!(r, Err(Refusal::Used));
        assert!(!ran);
    }

    #[test]
    fn a_full_set_refuses_new_nonces_until_one_expires() {
        let store = NonceStore::new(1, 3);
        for (i, n) in ["a", "b", "c"].into_iter().enumerate() {
            let expires = 10 * MIN + i as i64 * 1000;
            assert_eq!(store.admit(0, n, expires, 0, ok), Ok(()));
        }
        assert_eq!(
            store.admit(0, "d", 20 * MIN, 0, ok),
            Err(Refusal::Full(Duration::from_millis((10 * MIN) as u64)))
        );
        assert_eq!(store.admit(0, "d", 20 * MIN, 10 * MIN + 1, ok), Ok(()));
        assert_eq!(store.len(0), 3);
    }

    #[test]
    fn memory_is_bounded_by_expiry_under_a_steady_stream() {
        let store = NonceStore::new(1, 1_000_000);
        // 10 requests a second for an hour, each expiring 15 minutes on.
        for i in 0..36_000i64 {
            let now = i * 100;
            store
                .admit(0, &format!("n{i}"), now + 15 * MIN, now, ok)
                .unwrap();
        }
        let live = store.len(0);
        assert!(live <= 9_000 + 100 + 10 * 10, "{live}");
    }
}
