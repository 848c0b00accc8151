//! Distinct Internet peers of an endpoint, estimated in 64 bytes.
//!
//! Up to 8 distinct peers are held exactly (as 64-bit hashes); beyond, a
//! HyperLogLog sketch with 64 one-byte registers: the standard error of
//! the estimate is 1.04 / sqrt(64) = 13 % (linear counting below about 160
//! peers, about 10 %). Sketches merge by register-wise maximum, so the distinct
//! peers of a whole row (an address's endpoints) are estimated as well,
//! without counting a peer twice. It covers the whole retention window, not
//! a query range: a per-day sketch would not fit the per-endpoint budget.
//!
//! The hash is fixed (not seeded per process) so checkpointed sketches
//! keep meaning the same after a restart.

use std::net::IpAddr;

const REGISTERS: usize = 64;
const INDEX_BITS: u32 = 6;
/// Distinct peers kept exactly (as hashes) before switching to registers.
const EXACT: usize = 8;
/// [`Peers::mode`] once the registers are in use.
const DENSE: u8 = u8::MAX;

/// The sketch. Up to 8 distinct peers it holds their hashes and
/// counts exactly; beyond, 64 HyperLogLog registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peers {
    /// Hashes held exactly (0..=8), or [`DENSE`].
    mode: u8,
    /// Up to 8 hashes (little-endian u64s), or the registers.
    bytes: [u8; REGISTERS],
}

impl Default for Peers {
    fn default() -> Self {
        Peers {
            mode: 0,
            bytes: [0; REGISTERS],
        }
    }
}

impl Peers {
    /// Counts `peer` (once, however often it is added).
    pub fn add(&mut self, peer: IpAddr) {
        self.add_hash(hash(peer));
    }

    fn add_hash(&mut self, h: u64) {
        if self.mode == DENSE {
            let index = (h & (REGISTERS as u64 - 1)) as usize;
            // Rank of the first set bit of the remaining 58 bits (1-based).
            let rank = ((h >> INDEX_BITS).trailing_zeros().min(64 - INDEX_BITS) + 1) as u8;
            self.bytes[index] = self.bytes[index].max(rank);
            return;
        }
        if self.hashes().any(|x| x == h) {
            return;
        }
        if usize::from(self.mode) < EXACT {
            let at = usize::from(self.mode) * 8;
            self.bytes[at..at + 8].copy_from_slice(&h.to_le_bytes());
            self.mode += 1;
            return;
        }
        self.densify();
        self.add_hash(h);
    }

    fn hashes(&self) -> impl Iterator<Item = u64> + '_ {
        let n = if self.mode == DENSE {
            0
        } else {
            usize::from(self.mode)
        };
        self.bytes[..n * 8]
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
    }

    fn densify(&mut self) {
        if self.mode == DENSE {
            return;
        }
        let held: Vec<u64> = self.hashes().collect();
        *self = Peers {
            mode: DENSE,
            bytes: [0; REGISTERS],
        };
        for h in held {
            self.add_hash(h);
        }
    }

    /// Adds every peer counted in `other`.
    pub fn merge(&mut self, other: &Peers) {
        if other.mode != DENSE {
            for h in other.hashes() {
                self.add_hash(h);
            }
            return;
        }
        self.densify();
        for (a, b) in self.bytes.iter_mut().zip(other.bytes.iter()) {
            *a = (*a).max(*b);
        }
    }

    /// The number of distinct peers: exact up to 8, else estimated.
    pub fn estimate(&self) -> u64 {
        if self.mode != DENSE {
            return u64::from(self.mode);
        }
        let m = REGISTERS as f64;
        let zeros = self.bytes.iter().filter(|r| **r == 0).count();
        let sum: f64 = self.bytes.iter().map(|r| 2f64.powi(-i32::from(*r))).sum();
        // alpha for m = 64 (Flajolet et al.).
        let raw = 0.709 * m * m / sum;
        let estimate = if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            raw
        };
        // More than 8 distinct peers were seen.
        (estimate.round() as u64).max(EXACT as u64 + 1)
    }

    /// The mode byte and the 64 bytes, for checkpoints.
    pub fn to_bytes(&self) -> [u8; REGISTERS + 1] {
        let mut out = [0; REGISTERS + 1];
        out[0] = self.mode;
        out[1..].copy_from_slice(&self.bytes);
        out
    }

    /// From checkpointed bytes; `None` when they cannot be a sketch.
    pub fn from_bytes(bytes: [u8; REGISTERS + 1]) -> Option<Peers> {
        let mode = bytes[0];
        let rest: [u8; REGISTERS] = bytes[1..].try_into().ok()?;
        let valid = match mode {
            DENSE => rest.iter().all(|r| u32::from(*r) <= 64 - INDEX_BITS + 1),
            n => usize::from(n) <= EXACT,
        };
        valid.then_some(Peers { mode, bytes: rest })
    }
}

/// A fixed 64-bit hash of an address (SplitMix64 finaliser over its bytes).
fn hash(ip: IpAddr) -> u64 {
    let (hi, lo) = match ip {
        IpAddr::V4(a) => (0x4, u64::from(u32::from(a))),
        IpAddr::V6(a) => {
            let v = u128::from(a);
            ((v >> 64) as u64 ^ 0x6, v as u64)
        }
    };
    mix(mix(hi) ^ lo)
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn peers(n: u32, offset: u32) -> Peers {
        let mut p = Peers::default();
        for i in 0..n {
            p.add(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + offset + i)));
        }
        p
    }

    #[test]
    fn no_peer_is_zero_and_one_peer_is_one() {
        assert_eq!(Peers::default().estimate(), 0);
        let mut p = Peers::default();
        for _ in 0..1000 {
            p.add("198.51.100.7".parse().unwrap());
        }
        assert_eq!(p.estimate(), 1, "repeats count once");
    }

    #[test]
    fn up_to_eight_peers_are_counted_exactly() {
        for n in 0..=8u32 {
            assert_eq!(peers(n, 0).estimate(), u64::from(n));
        }
        assert!(
            peers(9, 0).estimate() >= 9,
            "past 8 never reads as 8 or less"
        );
    }

    #[test]
    fn counts_past_eight_are_within_three_standard_errors() {
        for n in [10u32, 30, 100] {
            let e = peers(n, 0).estimate() as f64;
            assert!(
                (e - f64::from(n)).abs() / f64::from(n) < 0.39,
                "{n} peers estimated as {e}"
            );
        }
    }

    #[test]
    fn merging_small_sets_stays_exact() {
        let mut a = peers(3, 0);
        a.merge(&peers(3, 1)); // 4 distinct
        assert_eq!(a.estimate(), 4);
    }

    #[test]
    fn bytes_round_trip_and_are_checked() {
        for p in [peers(0, 0), peers(5, 0), peers(100, 0)] {
            assert_eq!(Peers::from_bytes(p.to_bytes()), Some(p));
        }
        let mut bad = peers(100, 0).to_bytes();
        bad[1] = 200;
        assert_eq!(Peers::from_bytes(bad), None);
        let mut bad = peers(3, 0).to_bytes();
        bad[0] = 9;
        assert_eq!(Peers::from_bytes(bad), None);
    }

    #[test]
    fn large_counts_are_within_three_standard_errors() {
        for n in [1_000u32, 20_000, 200_000] {
            let e = peers(n, 7).estimate() as f64;
            let error = (e - f64::from(n)).abs() / f64::from(n);
            assert!(
                error < 0.39,
                "{n} peers estimated as {e} ({:.0} % off)",
                error * 100.0
            );
        }
    }

    #[test]
    fn merging_counts_shared_peers_once() {
        let mut a = peers(500, 0);
        let b = peers(500, 250); // 250 in common
        a.merge(&b);
        let e = a.estimate() as f64;
        assert!((e - 750.0).abs() / 750.0 < 0.39, "{e}");
    }
}
