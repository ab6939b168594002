//! A session: one client connection's record on its shard (phase, outbound queue, rate
//! buckets, liveness) plus what its dialect negotiated. No socket: the reactor keeps that
//! and refers to the session by key.

use std::sync::Arc;

use smallvec::SmallVec;

use super::bucket::TokenBucket;
use super::keys::ShardId;
use super::outbound::Outbound;
use super::room::Features;
use crate::codec::Codec;

/// Where a session is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Upgraded; the handshake frame must arrive before `deadline_ms`.
    ExpectHandshake {
        /// When the handshake times out.
        deadline_ms: u64,
    },
    /// Handshaken.
    Open,
    /// The connection dropped; the session waits for a resume until `until_ms`.
    Parked {
        /// When the session expires and leaves its rooms.
        until_ms: u64,
    },
    /// A close frame is queued; the reactor closes the socket once it is written.
    Closing,
}

/// A room this session is in (or is joining), wherever its home is.
#[derive(Clone, Debug)]
pub struct Membership {
    /// Room id.
    pub room_id: Arc<str>,
    /// The room's home shard.
    pub home: ShardId,
    /// False while a join forwarded to another shard awaits its result.
    pub joined: bool,
}

/// What a rooms-dialect session negotiated. What each message reads (`codec`,
/// `memberships`) comes first (see `Session`).
#[derive(Clone, Debug)]
#[repr(C)]
pub struct RoomsSession {
    /// Negotiated codec of every frame after the handshake.
    pub codec: Codec,
    /// A valid token was presented.
    pub authenticated: bool,
    /// Holds a matchmaking ticket.
    pub ticket: bool,
    /// Features accepted.
    pub features: Features,
    /// Rooms joined or being joined.
    pub memberships: SmallVec<[Membership; 1]>,
    /// Secret resume id (only its owner ever sees it).
    pub session_id: Box<str>,
    /// Public id other members see.
    pub client_id: Arc<str>,
    /// Project of the handshake.
    pub project_id: Box<str>,
    /// RPC ids forwarded to another shard and not yet answered.
    pub inflight: Vec<Box<str>>,
}

impl RoomsSession {
    /// The membership of a room id.
    pub fn membership(&self, room_id: &str) -> Option<&Membership> {
        self.memberships.iter().find(|m| &*m.room_id == room_id)
    }

    /// Forgets a room.
    pub fn forget(&mut self, room_id: &str) {
        self.memberships.retain(|m| &*m.room_id != room_id);
    }

    /// Forgets an answered RPC id.
    pub fn answered(&mut self, rid: &str) {
        self.inflight.retain(|r| &**r != rid);
    }
}

/// A join whose room lives on another shard, carried with the session when it moves there.
#[derive(Clone, Debug)]
pub struct PendingJoin {
    /// RPC id of the join.
    pub rid: Option<Box<str>>,
    /// Room id.
    pub room_id: Arc<str>,
    /// Registered room type; `None`: join whatever the room is, create an `echo_room`.
    pub room_type: Option<&'static str>,
    /// Creator options as JSON (used only if the join creates the room).
    pub options: Option<serde_json::Value>,
}

/// A validated handshake, owned so it can travel with a session moving to the shard
/// where the session it resumes is parked.
#[derive(Clone, Debug)]
pub struct Hello {
    /// Negotiated codec.
    pub codec: Codec,
    /// Project.
    pub project_id: Box<str>,
    /// A valid token was presented.
    pub authenticated: bool,
    /// Accepted features.
    pub features: Features,
    /// The session id to resume.
    pub resume: Option<Box<str>>,
}

/// One session.
///
/// The relay is bound by cache misses on these records (the kernel's networking evicts
/// them between messages), not by instructions, so the order of the fields is chosen:
/// `repr(C)` keeps what every fan-out touches per member (`phase`, `dirty`, `out`) at the
/// front of the slab slot, next to the slot's generation, and what reading a message
/// touches (`pending_*`, `last_rx_ms`, `bucket`, the front of `rooms`) right after it —
/// three cache lines for a message in, rather than all five.
#[repr(C)]
pub struct Session {
    /// Life phase.
    pub phase: Phase,
    /// Listed in the shard's dirty list and not yet taken by the writer.
    pub dirty: bool,
    /// A ping went out since the last frame from the client.
    pub pinged: bool,
    /// The client closed with a code other than 1000: park instead of leaving.
    pub park_on_close: bool,
    /// Shards yet to answer a resume probe.
    pub probes: u16,
    /// Frames not yet written.
    pub out: Outbound,
    /// The reactor's handle for the connection (opaque here).
    pub transport: usize,
    /// A join to run once the session has moved to the room's home shard.
    pub pending_join: Option<Box<PendingJoin>>,
    /// A handshake to finish once the session has moved to where the session it resumes
    /// is parked.
    pub pending_hello: Option<Box<Hello>>,
    /// Last frame of any kind from the client.
    pub last_rx_ms: u64,
    /// Messages per second.
    pub bucket: TokenBucket,
    /// Set once the rooms handshake succeeded.
    pub rooms: Option<RoomsSession>,
    /// `state.ack` / `state.resync` per second.
    pub state_bucket: TokenBucket,
}

impl Session {
    /// Waiting to move to another shard.
    pub fn is_moving(&self) -> bool {
        self.pending_join.is_some() || self.pending_hello.is_some()
    }
}
