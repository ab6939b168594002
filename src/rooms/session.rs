//! What the rooms dialect keeps for each session (in the engine's session record, so it
//! moves with the session): the handshake stage, then what the client negotiated, its ids,
//! its rooms and what waits for a move.

use std::sync::Arc;

use smallvec::SmallVec;

use super::room::Features;
use crate::codec::Codec;
use crate::core::bucket::TokenBucket;
use crate::core::ShardId;

/// A rooms session's state.
#[derive(Debug)]
pub enum RoomsSession {
    /// Upgraded; the handshake frame is due (its timer runs). `hello` holds a validated
    /// handshake while the session waits for other shards to answer a probe, or for the
    /// move to the shard where the session it resumes is parked.
    Handshake {
        /// The validated handshake, once read.
        hello: Option<Box<Hello>>,
        /// Shards yet to answer a resume probe.
        probes: u16,
    },
    /// Handshaken.
    Open(Client),
}

impl RoomsSession {
    /// A session that has not sent its handshake yet.
    pub fn new() -> Self {
        RoomsSession::Handshake {
            hello: None,
            probes: 0,
        }
    }

    /// The handshaken client, if the handshake succeeded.
    pub fn client(&self) -> Option<&Client> {
        match self {
            RoomsSession::Open(c) => Some(c),
            RoomsSession::Handshake { .. } => None,
        }
    }

    /// The handshaken client, mutably.
    pub fn client_mut(&mut self) -> Option<&mut Client> {
        match self {
            RoomsSession::Open(c) => Some(c),
            RoomsSession::Handshake { .. } => None,
        }
    }
}

impl Default for RoomsSession {
    fn default() -> Self {
        RoomsSession::new()
    }
}

/// A handshaken rooms client. What each message reads (`codec`, `memberships`) comes
/// first: `repr(C)` keeps it on the session record's third cache line, with the rate
/// bucket (see `core::session::Session`).
#[derive(Debug)]
#[repr(C)]
pub struct Client {
    /// Negotiated codec of every frame after the handshake.
    pub codec: Codec,
    /// Features accepted.
    pub features: Features,
    /// A valid token was presented.
    pub authenticated: bool,
    /// Holds a matchmaking ticket.
    pub ticket: bool,
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
    /// A join to run once the session has moved to the room's home shard.
    pub pending_join: Option<Box<PendingJoin>>,
    /// `state.ack` / `state.resync` per second (the engine's bucket counts the rest).
    pub state_bucket: TokenBucket,
}

impl Client {
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

    /// In a room whose home is another shard.
    pub fn has_remote_rooms(&self, here: ShardId) -> bool {
        self.memberships.iter().any(|m| m.home != here)
    }
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
