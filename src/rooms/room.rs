//! A room on its home shard: members (on this shard or another), creator's options,
//! state, logic, reserved seats. The fan-out itself is the engine's (`Engine::fan_out`);
//! a member is one of its recipients.

use std::sync::Arc;

use super::logic::RoomLogic;
use crate::codec::Codec;
use crate::core::keys::GenKey;
use crate::core::{Recipient, SessionAt};

/// A room on its home shard: slot plus generation (see `GenSlab`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RoomKey {
    /// Slot in the shard's room slab.
    pub index: u32,
    /// Generation of that slot when the key was issued.
    pub gen: u32,
}

impl GenKey for RoomKey {
    fn new(index: u32, gen: u32) -> Self {
        RoomKey { index, gen }
    }
    fn index(self) -> usize {
        self.index as usize
    }
    fn gen(self) -> u32 {
        self.gen
    }
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
    /// The member's session (on this shard or another).
    pub at: SessionAt,
    /// How frames to it are encoded.
    pub codec: Codec,
    /// What it negotiated.
    pub features: Features,
    /// The last `seq` it acknowledged.
    pub acked_seq: u64,
}

impl Recipient for Member {
    fn at(&self) -> SessionAt {
        self.at
    }
    fn codec(&self) -> Codec {
        self.codec
    }
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
    pub fn has(&self, at: SessionAt) -> bool {
        self.members.iter().any(|m| m.at == at)
    }

    /// Seats are reserved for a match's participants right now.
    pub fn is_reserved(&self, now: u64) -> bool {
        !self.reserved.is_empty() && now < self.reserved_until_ms
    }

    /// The member at a session.
    pub fn member_at(&self, at: SessionAt) -> Option<&Member> {
        self.members.iter().find(|m| m.at == at)
    }

    /// The member at a session, mutably.
    pub fn member_at_mut(&mut self, at: SessionAt) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.at == at)
    }

    /// Removes a member, returning it.
    pub fn remove(&mut self, at: SessionAt) -> Option<Member> {
        let i = self.members.iter().position(|m| m.at == at)?;
        Some(self.members.remove(i))
    }

    /// Full for one more member?
    pub fn is_full(&self, default_max: usize) -> bool {
        let max = self.options.max_players.map_or(default_max, |m| m as usize);
        self.members.len() >= max
    }
}
