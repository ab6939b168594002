//! A room on its home shard: members (local or on another shard), options, state, logic.
//! Membership and fan-out are dialect-neutral; the rooms dialect adds its join rules.

use std::sync::Arc;

use super::keys::{SessionKey, ShardId};
use super::logic::RoomLogic;
use crate::codec::Codec;

/// Where a member's session lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemberAt {
    /// On this (the room's home) shard.
    Local(SessionKey),
    /// On another shard: frames go through the mesh.
    Remote(ShardId, SessionKey),
}

/// Feature flags a rooms client negotiated (handshake `features`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Features {
    /// CRC-32 checksums on state frames.
    pub crc32: bool,
    /// State ops deeper than one level.
    pub nested_ops: bool,
    /// Relayed bytes as msgpack `bin` (msgpack sessions only).
    pub bin_bytes: bool,
}

/// One member of a room.
#[derive(Clone, Debug)]
pub struct Member {
    /// Public id other members see.
    pub client_id: Arc<str>,
    /// The member's session.
    pub at: MemberAt,
    /// How frames to it are encoded.
    pub codec: Codec,
    /// What it negotiated.
    pub features: Features,
    /// The last `seq` it acknowledged.
    pub acked_seq: u64,
}

/// Creator's options (`options` of the first `room.join_or_create`).
#[derive(Clone, Debug, Default)]
pub struct RoomOptions {
    /// Members at most (`room_full` past it).
    pub max_players: Option<u32>,
    /// Not listed by `room.list`.
    pub private: bool,
    /// Listed as is by `room.list`.
    pub metadata: Option<serde_json::Value>,
}

/// A room.
pub struct Room {
    /// Its id (unique server-wide; its hash picks the home shard).
    pub id: Arc<str>,
    /// Registered type name.
    pub room_type: &'static str,
    /// Members in join order.
    pub members: Vec<Member>,
    /// Creator's options.
    pub options: RoomOptions,
    /// Authoritative state (an object at the root).
    pub state: serde_json::Value,
    /// Patches emitted so far.
    pub seq: u64,
    /// The type's behaviour.
    pub logic: Box<dyn RoomLogic>,
    /// Ops applied this turn, sent as one patch at its end.
    pub pending_ops: Vec<super::state::Op>,
    /// CRC-32 of the state's canonical JSON, kept per top-level key.
    pub digest: super::canon::StateDigest,
    /// Client ids whose seats a match reserved (until `reserved_until_ms`).
    pub reserved: Vec<Arc<str>>,
    /// When the reservation ends.
    pub reserved_until_ms: u64,
}

impl Room {
    /// The member with this client id.
    pub fn member(&self, client_id: &str) -> Option<&Member> {
        self.members.iter().find(|m| &*m.client_id == client_id)
    }

    /// Is this session a member?
    pub fn has(&self, at: MemberAt) -> bool {
        self.members.iter().any(|m| m.at == at)
    }

    /// Seats are reserved for a match's participants right now.
    pub fn is_reserved(&self, now: u64) -> bool {
        !self.reserved.is_empty() && now < self.reserved_until_ms
    }

    /// The member at a session.
    pub fn member_at(&self, at: MemberAt) -> Option<&Member> {
        self.members.iter().find(|m| m.at == at)
    }

    /// The member at a session, mutably.
    pub fn member_at_mut(&mut self, at: MemberAt) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.at == at)
    }

    /// Removes a member, returning it.
    pub fn remove(&mut self, at: MemberAt) -> Option<Member> {
        let i = self.members.iter().position(|m| m.at == at)?;
        Some(self.members.remove(i))
    }

    /// Full for one more member?
    pub fn is_full(&self, default_max: usize) -> bool {
        let max = self.options.max_players.map_or(default_max, |m| m as usize);
        self.members.len() >= max
    }
}

/// The home shard of a key: `crc32(key) % shards`. Stable across runs and builds.
pub fn home_shard(key: &str, shards: usize) -> ShardId {
    assert!(shards > 0 && shards <= usize::from(u16::MAX));
    ShardId((crc32fast::hash(key.as_bytes()) as usize % shards) as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_shard_is_stable_and_in_range() {
        assert_eq!(home_shard("lobby", 1), ShardId(0));
        let a = home_shard("echo_room:default", 4);
        assert_eq!(a, home_shard("echo_room:default", 4));
        assert!(a.0 < 4);
        // different keys spread over shards
        let spread: std::collections::HashSet<_> =
            (0..64).map(|i| home_shard(&format!("r{i}"), 2)).collect();
        assert_eq!(spread.len(), 2);
    }
}
