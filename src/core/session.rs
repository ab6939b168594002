//! A session: one client connection's record on its shard — the engine's transport side
//! (phase, outbound queue, rate bucket, liveness, whether its reads are held) plus the
//! state its dialect keeps (`dialect`, opaque here). No socket: the reactor keeps that and
//! refers to the session by key.

use super::bucket::TokenBucket;
use super::dialect::AfterClose;
use super::outbound::Outbound;

/// Where a session is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Connected; its messages go to its dialect.
    Open,
    /// A close frame is queued (ours, or the answer to the client's); the reactor closes
    /// the socket once it is written, and then `then` happens. Nothing more is read.
    Closing {
        /// What the dialect said the end of the connection means for the session.
        then: AfterClose,
    },
    /// The connection is gone; the session waits without one until `until_ms` (its
    /// dialect may hand it a new connection before then, see `Engine::take_over`).
    Parked {
        /// When the session ends for good.
        until_ms: u64,
    },
}

/// One session. `S` is the dialect set's per-session state.
///
/// The relay is bound by cache misses on these records (the kernel's networking evicts
/// them between messages), not by instructions, so the order of the fields is chosen:
/// `repr(C)` keeps what every fan-out touches per member (`phase`, `dirty`, `out`) at the
/// front of the slab slot, next to the slot's generation, and what reading a message
/// touches (the held flags, `last_rx_ms`, `bucket`, the front of `dialect`) right after.
#[repr(C)]
pub struct Session<S> {
    /// Life phase.
    pub phase: Phase,
    /// Listed in the shard's dirty list and not yet taken by the writer.
    pub dirty: bool,
    /// A ping went out since the last frame from the client.
    pub pinged: bool,
    /// Waiting to move to another shard: the connection is not read here (what the client
    /// sent after the message that asked for the move is read on the new shard).
    pub moving: bool,
    /// Its dialect paused reading (it waits for an answer from other shards).
    pub paused: bool,
    /// Frames not yet written.
    pub out: Outbound,
    /// The reactor's handle for the connection (opaque here; `usize::MAX` when parked).
    pub transport: usize,
    /// Last frame of any kind from the client.
    pub last_rx_ms: u64,
    /// Messages per second (the dialect decides which messages take a token).
    pub bucket: TokenBucket,
    /// What the session's dialect keeps for it.
    pub dialect: S,
}

impl<S> Session<S> {
    /// Its connection is not read now (moving, or paused by its dialect).
    pub fn reads_held(&self) -> bool {
        self.moving || self.paused
    }

    /// Open: connected, not closing.
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// A close is under way.
    pub fn is_closing(&self) -> bool {
        matches!(self.phase, Phase::Closing { .. })
    }
}
