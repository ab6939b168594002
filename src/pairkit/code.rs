//! Session codes: 4 characters of a 32-letter alphabet without 0/O/1/I, issued upper
//! case and read case-insensitively. A code is drawn so that its home shard (`crc32` of
//! `pairkit/<CODE>`) is the shard that creates the session: a join with the code finds
//! the session on the code's home shard. And the per-address key of the join throttle.

use std::net::IpAddr;

use rand::Rng;

use crate::core::{home_shard, ShardId};

/// The code alphabet (no 0/O/1/I).
pub const ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
/// Characters in a code.
pub const CODE_LEN: usize = 4;
/// Codes there are: 32⁴ = 1,048,576.
pub const CODE_SPACE: u32 = 32 * 32 * 32 * 32;
/// Random draws tried before a code is searched for candidate by candidate.
const DRAWS: u32 = 64;

/// A session code, upper case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code(pub [u8; CODE_LEN]);

impl Code {
    /// Reads a code as a client typed it (either case); `None` when it is not 4 letters
    /// of the alphabet.
    pub fn parse(text: &str) -> Option<Code> {
        let bytes = text.as_bytes();
        if bytes.len() != CODE_LEN {
            return None;
        }
        let mut code = [0u8; CODE_LEN];
        for (out, b) in code.iter_mut().zip(bytes) {
            let up = b.to_ascii_uppercase();
            if !ALPHABET.contains(&up) {
                return None;
            }
            *out = up;
        }
        Some(Code(code))
    }

    /// The code numbered `n` (< [`CODE_SPACE`]).
    pub fn nth(n: u32) -> Code {
        let mut code = [0u8; CODE_LEN];
        let mut rest = n;
        for c in code.iter_mut().rev() {
            *c = ALPHABET[(rest % 32) as usize];
            rest /= 32;
        }
        Code(code)
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("codes are ASCII")
    }

    /// The shard a session with this code lives on.
    pub fn home(&self, shards: usize) -> ShardId {
        let mut key = [0u8; 8 + CODE_LEN];
        key[..8].copy_from_slice(b"pairkit/");
        key[8..].copy_from_slice(&self.0);
        home_shard(std::str::from_utf8(&key).expect("ASCII"), shards)
    }
}

/// Draws a code whose home is `shard` and that `taken` does not hold, among the first
/// `space` codes (all of them in service; fewer in tests of exhaustion). A few random
/// draws first; then every candidate, from a random start, so a code is found whenever
/// one is free. `None`: every candidate is taken.
pub fn allocate(
    rng: &mut impl Rng,
    shard: ShardId,
    shards: usize,
    space: u32,
    taken: impl Fn(Code) -> bool,
) -> Option<Code> {
    let space = space.clamp(1, CODE_SPACE);
    let free = |code: Code| code.home(shards) == shard && !taken(code);
    for _ in 0..DRAWS {
        let code = Code::nth(rng.gen_range(0..space));
        if free(code) {
            return Some(code);
        }
    }
    let start = rng.gen_range(0..space);
    (0..space)
        .map(|i| Code::nth((start + i) % space))
        .find(|c| free(*c))
}

/// What the join throttle counts failures against: the address, or its /64 for IPv6 (an
/// IPv4-mapped IPv6 address is its IPv4 address).
pub fn ip_key(ip: Option<IpAddr>) -> IpAddr {
    match ip {
        None => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        Some(IpAddr::V4(v4)) => IpAddr::V4(v4),
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut seg = v6.segments();
                seg[4..].fill(0);
                IpAddr::V6(std::net::Ipv6Addr::from(seg))
            }
        },
    }
}

/// The shard that keeps the join failures of an address key.
pub fn ip_home(ip: IpAddr, shards: usize) -> ShardId {
    home_shard(&format!("pairkit-ip/{ip}"), shards)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn codes_are_four_letters_of_the_alphabet_in_either_case() {
        assert_eq!(Code::parse("abcd").unwrap().as_str(), "ABCD");
        assert_eq!(Code::parse("Z9x2").unwrap().as_str(), "Z9X2");
        for bad in [
            "ABC", "ABCDE", "ABC0", "ABCO", "ABC1", "ABCI", "abci", "AB D", "ÄBCD", "",
        ] {
            assert!(Code::parse(bad).is_none(), "{bad:?}");
        }
        assert_eq!(Code::nth(0).as_str(), "AAAA");
        assert_eq!(Code::nth(CODE_SPACE - 1).as_str(), "9999");
        assert_eq!(Code::nth(33).as_str(), "AABB");
    }

    #[test]
    fn allocation_finds_the_last_free_code_of_its_shard_and_then_none() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut taken = std::collections::HashSet::new();
        let shard = ShardId(1);
        // In the first 64 codes, those whose home is shard 1 of 2.
        let mine: Vec<Code> = (0..64)
            .map(Code::nth)
            .filter(|c| c.home(2) == shard)
            .collect();
        assert!(!mine.is_empty());
        for _ in 0..mine.len() {
            let code = allocate(&mut rng, shard, 2, 64, |c| taken.contains(&c)).unwrap();
            assert_eq!(code.home(2), shard);
            assert!(taken.insert(code), "never a live code");
        }
        assert_eq!(
            allocate(&mut rng, shard, 2, 64, |c| taken.contains(&c)),
            None
        );
    }

    #[test]
    fn ipv6_addresses_count_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ip_key(Some(a)), ip_key(Some(b)));
        assert_ne!(ip_key(Some(a)), ip_key(Some(c)));
        let mapped: IpAddr = "::ffff:203.0.113.9".parse().unwrap();
        assert_eq!(
            ip_key(Some(mapped)),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
    }
}
