//! Ids as newtypes, a slab whose keys carry a generation (so a stale key can never reach a
//! reused slot), where a session lives, and the home-shard rule.

use slab::Slab;

/// A shard (reactor thread) index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(pub u16);

impl ShardId {
    /// The index as usize.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// A session on one shard: slot plus generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SessionKey {
    /// Slot in the shard's session slab.
    pub index: u32,
    /// Generation of that slot when the key was issued.
    pub gen: u32,
}

/// A session wherever it lives: its shard and its key there. The one spelling of "a
/// session on some shard" (room members, matchmaking tickets, where a moved session came
/// from).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SessionAt {
    /// The shard that owns the session.
    pub shard: ShardId,
    /// Its key on that shard.
    pub key: SessionKey,
}

/// The home shard of a key (room id, lobby, code): `crc32(key) % shards`. Stable across
/// runs and builds, so every shard computes the same home.
pub fn home_shard(key: &str, shards: usize) -> ShardId {
    assert!(shards > 0 && shards <= usize::from(u16::MAX));
    ShardId((crc32fast::hash(key.as_bytes()) as usize % shards) as u16)
}

/// Keys that a [`GenSlab`] issues.
pub trait GenKey: Copy {
    /// Builds a key.
    fn new(index: u32, gen: u32) -> Self;
    /// The slot.
    fn index(self) -> usize;
    /// The generation.
    fn gen(self) -> u32;
}

impl GenKey for SessionKey {
    fn new(index: u32, gen: u32) -> Self {
        SessionKey { index, gen }
    }
    fn index(self) -> usize {
        self.index as usize
    }
    fn gen(self) -> u32 {
        self.gen
    }
}

/// A slab whose keys are checked against the slot's generation.
pub struct GenSlab<T> {
    slots: Slab<Slot<T>>,
    next_gen: u32,
}

/// A slot starts on a cache line with its generation first: checking a key and reading
/// the fields a record keeps at its front (see `Session`) is one line, not two.
#[repr(C, align(64))]
struct Slot<T> {
    gen: u32,
    value: T,
}

impl<T> Default for GenSlab<T> {
    fn default() -> Self {
        GenSlab {
            slots: Slab::new(),
            next_gen: 1,
        }
    }
}

impl<T> GenSlab<T> {
    /// Inserts a value and returns its key.
    pub fn insert<K: GenKey>(&mut self, value: T) -> K {
        let gen = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1).max(1);
        let index = self.slots.insert(Slot { gen, value });
        K::new(u32::try_from(index).expect("slab index fits u32"), gen)
    }

    /// The value of a live key.
    pub fn get<K: GenKey>(&self, key: K) -> Option<&T> {
        match self.slots.get(key.index()) {
            Some(slot) if slot.gen == key.gen() => Some(&slot.value),
            _ => None,
        }
    }

    /// The value of a live key, mutably.
    pub fn get_mut<K: GenKey>(&mut self, key: K) -> Option<&mut T> {
        match self.slots.get_mut(key.index()) {
            Some(slot) if slot.gen == key.gen() => Some(&mut slot.value),
            _ => None,
        }
    }

    /// Removes a live key's value.
    pub fn remove<K: GenKey>(&mut self, key: K) -> Option<T> {
        self.get::<K>(key)?;
        Some(self.slots.remove(key.index()).value)
    }

    /// Live entries.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// No live entries.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Every live key.
    pub fn keys<K: GenKey>(&self) -> impl Iterator<Item = K> + '_ {
        self.slots
            .iter()
            .map(|(i, slot)| K::new(i as u32, slot.gen))
    }
}

/// The slab slot a record of type `T` takes (its generation and the record, aligned to a
/// cache line): for the record-size tests of whoever defines `T`.
pub fn slot_layout<T>() -> (usize, usize, usize) {
    (
        std::mem::size_of::<Slot<T>>(),
        std::mem::align_of::<Slot<T>>(),
        std::mem::offset_of!(Slot<T>, value),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_key_cannot_reach_a_reused_slot() {
        let mut slab = GenSlab::default();
        let a: SessionKey = slab.insert("a");
        slab.remove(a).unwrap();
        let b: SessionKey = slab.insert("b");
        assert_eq!(a.index, b.index, "slot reused");
        assert!(slab.get(a).is_none());
        assert!(slab.remove(a).is_none());
        assert_eq!(slab.get(b), Some(&"b"));
    }

    #[test]
    fn home_shard_is_stable_and_in_range() {
        assert_eq!(home_shard("lobby", 1), ShardId(0));
        let a = home_shard("lobby:default", 4);
        assert_eq!(a, home_shard("lobby:default", 4));
        assert!(a.0 < 4);
        // different keys spread over shards
        let spread: std::collections::HashSet<_> =
            (0..64).map(|i| home_shard(&format!("r{i}"), 2)).collect();
        assert_eq!(spread.len(), 2);
    }
}
