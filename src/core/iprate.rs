//! Per-IP token buckets shared by every shard: a fixed table of atomic slots, lock-free
//! (one compare-and-swap per take). The kernel spreads one address's connections over
//! every shard, so a per-address limit must be server-wide. An address is hashed to a
//! slot; two addresses sharing a slot share a bucket (with `SLOTS` slots that is rare, and
//! errs on the side of refusing).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

/// Slots in the table (a power of two): 128 KiB.
const SLOTS: usize = 16 * 1024;
/// A token is this many units (the refill is continuous, in units per ms).
const UNIT: u64 = 256;

const _: () = assert!(SLOTS.is_power_of_two());

/// Token buckets of `per_min` tokens, refilled at `per_min` per minute, keyed by address.
pub struct IpRate {
    per_min: u32,
    /// Each slot: bits 32.. the unix time (s-resolution is too coarse, so ms mod 2^32) of
    /// the last take, bits ..32 the tokens left in units (0 in a fresh slot means "full").
    slots: Box<[AtomicU64]>,
    hasher: RandomState,
}

impl IpRate {
    /// Buckets of `per_min` (≥ 1) connections per minute per address.
    pub fn new(per_min: u32) -> Self {
        assert!(per_min >= 1, "a bucket holds at least one token");
        IpRate {
            per_min,
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            hasher: RandomState::new(),
        }
    }

    /// Takes a token for `ip` at unix time `now_ms`: false when its bucket is empty.
    pub fn take(&self, ip: IpAddr, now_ms: u64) -> bool {
        let slot = &self.slots[self.hasher.hash_one(ip) as usize & (SLOTS - 1)];
        let cap = u64::from(self.per_min) * UNIT;
        let now = now_ms & 0xffff_ffff;
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            let (last, stored) = (current >> 32, current & 0xffff_ffff);
            // ms mod 2^32 wraps every 49 days. Shards' clocks differ by a little: a take
            // stamped a few ms before the last one (a difference above 2^31 once wrapped)
            // is no time at all, not a refill, and keeps the later stamp.
            let diff = now.wrapping_sub(last) & 0xffff_ffff;
            let (elapsed, stamp) = if diff > 0x7fff_ffff && current != 0 {
                (0, last)
            } else {
                (diff, now)
            };
            let tokens = if current == 0 {
                cap
            } else {
                (stored - 1 + elapsed * u64::from(self.per_min) * UNIT / 60_000).min(cap)
            };
            if tokens < UNIT {
                return false;
            }
            // Stored plus one, so that an emptied bucket is not mistaken for a fresh slot.
            let next = (stamp << 32) | (tokens - UNIT + 1);
            match slot.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_holds_per_min_and_refills_over_a_minute() {
        let rate = IpRate::new(3);
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        let other: IpAddr = "2001:db8::1".parse().unwrap();
        let t = 1_700_000_000_000;
        assert!((0..3).all(|_| rate.take(ip, t)), "a full bucket");
        assert!(!rate.take(ip, t), "the fourth within the minute is refused");
        assert!(rate.take(other, t), "another address has its own bucket");
        assert!(!rate.take(ip, t + 19_000), "a third of a token per 20 s");
        assert!(rate.take(ip, t + 20_000), "one token back after 20 s");
        assert!(!rate.take(ip, t + 20_000));
        assert!(
            (0..3).all(|_| rate.take(ip, t + 200_000)),
            "full again, never above"
        );
        assert!(!rate.take(ip, t + 200_000));
    }

    #[test]
    fn a_take_stamped_a_little_earlier_on_another_shard_is_no_refill() {
        let rate = IpRate::new(3);
        let ip: IpAddr = "203.0.113.8".parse().unwrap();
        let t = 1_700_000_000_000;
        assert!(rate.take(ip, t + 5));
        assert!(rate.take(ip, t + 3), "a shard whose clock is 2 ms behind");
        assert!(rate.take(ip, t + 6));
        assert!(!rate.take(ip, t + 4), "empty, whichever shard's clock asks");
        assert!(!rate.take(ip, t + 6));
        assert!(
            rate.take(ip, t + 6 + 20_000),
            "a token back 20 s after the latest take"
        );
    }

    #[test]
    fn shards_taking_at_once_never_overdraw() {
        let rate = std::sync::Arc::new(IpRate::new(1000));
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        let taken: usize = (0..4)
            .map(|_| {
                let rate = rate.clone();
                std::thread::spawn(move || (0..600).filter(|_| rate.take(ip, 5_000)).count())
            })
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(taken, 1000);
    }
}
