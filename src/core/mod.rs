//! The sans-IO shard core: the sessions and rooms one shard owns, membership, fan-out with
//! encode-once frames, limits, timers and cross-shard messages. It takes `now` (ms) as an
//! argument and never touches sockets, threads or the clock; the reactor drives it, and
//! tests drive it directly. Dialect rules live in their modules (`crate::rooms`).

pub mod bucket;
pub mod canon;
pub mod keys;
pub mod logic;
pub mod outbound;
pub mod room;
pub mod session;
pub mod state;

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use smallvec::SmallVec;

use crate::codec::{frame, Codec, Decoder, Frame, Writer};
use crate::config::Config;
use crate::metrics::{DropReason, ShardMetrics};
pub use keys::{GenSlab, RoomKey, SessionKey, ShardId};
use outbound::{Class, Pushed};
use room::{MemberAt, Room};
use session::{Phase, Session};

/// A session handed from one shard to another (socket, WebSocket state and record).
pub struct Moved {
    /// The session record, outbound queue and pending join included.
    pub session: Session,
    /// Where it was: its shard and key there (to re-address its matchmaking ticket).
    pub from: (ShardId, SessionKey),
    /// The reactor's transport (socket and WebSocket context); opaque to the core.
    pub transport: Box<dyn Any + Send>,
}

/// A room as `room.list` shows it, replicated to every shard.
#[derive(Clone, Debug, PartialEq)]
pub struct Listing {
    /// Registered type.
    pub room_type: &'static str,
    /// Member count.
    pub members: usize,
    /// Creator's `max_players`.
    pub max_players: Option<u32>,
    /// Not listed.
    pub private: bool,
    /// Creator's metadata.
    pub metadata: Option<serde_json::Value>,
}

/// Messages between shards. Every variant is owned and `Send`.
pub enum MeshMsg {
    /// Take over a session (it joined a room whose home is the receiver).
    Adopt(Box<Moved>),
    /// Queue a frame for sessions of the receiver (fan-out of a room on the sender).
    Deliver {
        /// Recipients on the receiving shard.
        to: SmallVec<[SessionKey; 8]>,
        /// The frame, encoded once.
        frame: Frame,
        /// Reliable or not.
        class: Class,
    },
    /// A session on the sender joins a room whose home is the receiver.
    RemoteJoin(Box<RemoteJoin>),
    /// The outcome of a `RemoteJoin`, back to the session's shard.
    JoinResult {
        /// The session.
        session: SessionKey,
        /// The room.
        room_id: Arc<str>,
        /// Joined or refused.
        ok: bool,
        /// The join's RPC id (no longer in flight).
        rid: Option<Box<str>>,
    },
    /// A session on the sender leaves (or lost) a room whose home is the receiver.
    RemoteLeave {
        /// The session, on the sender.
        from: SessionKey,
        /// The room.
        room_id: Arc<str>,
        /// The `room.leave` RPC id, when the client asked.
        rid: Option<Box<str>>,
    },
    /// A frame from a session on the sender for a room whose home is the receiver.
    RemoteInput {
        /// The session, on the sender.
        from: SessionKey,
        /// The room.
        room_id: Arc<str>,
        /// The frame's codec.
        codec: Codec,
        /// The frame's payload.
        bytes: Box<[u8]>,
    },
    /// A parked session's shard (`None`: no longer parked), replicated to every shard.
    Parked {
        /// The session's secret id.
        session_id: Arc<str>,
        /// Where it is parked.
        at: Option<ShardId>,
    },
    /// A session on the sender dropped or came back; its room on the receiver hears it.
    RemotePresence {
        /// The session, on the sender.
        from: SessionKey,
        /// The room.
        room_id: Arc<str>,
        /// What happened.
        presence: crate::rooms::resume::Presence,
        /// The session's codec now.
        codec: Codec,
        /// Its features now.
        features: room::Features,
    },
    /// To or from the matchmaker.
    Matchmaking(Box<crate::rooms::matchmaking::MmMsg>),
    /// A resume this shard knows nothing of: answer once everything sent before is read.
    ResumeProbe {
        /// The resuming connection's session, on the sender.
        from: SessionKey,
    },
    /// The answer to a `ResumeProbe`.
    ResumeProbeAck {
        /// The resuming connection's session, on the receiver.
        session: SessionKey,
    },
    /// A room's listing changed (`None`: the room is gone).
    Directory {
        /// Room id.
        room_id: Arc<str>,
        /// New listing.
        listing: Option<Listing>,
    },
}

/// A forwarded join.
pub struct RemoteJoin {
    /// The joining session, on the sender.
    pub from: SessionKey,
    /// Its public id.
    pub client_id: Arc<str>,
    /// Its codec.
    pub codec: Codec,
    /// Its features.
    pub features: room::Features,
    /// What to join.
    pub join: session::PendingJoin,
}

/// One shard's sessions and rooms.
pub struct ShardCore {
    /// This shard.
    pub id: ShardId,
    /// Shards in the server.
    pub shards: usize,
    pub(crate) cfg: Arc<Config>,
    pub(crate) sessions: GenSlab<Session>,
    pub(crate) rooms: GenSlab<Room>,
    pub(crate) room_ids: HashMap<Arc<str>, RoomKey>,
    /// Every room of every shard, for `room.list`.
    pub(crate) directory: BTreeMap<Arc<str>, Listing>,
    dirty: Vec<SessionKey>,
    mesh_out: Vec<(ShardId, MeshMsg)>,
    moves: Vec<(SessionKey, ShardId)>,
    /// Rooms with state ops waiting for the end of the turn.
    pub(crate) dirty_rooms: Vec<RoomKey>,
    /// Sessions closed mid-fan-out whose rooms are left once the current input is done.
    closed: Vec<SessionKey>,
    pub(crate) rng: StdRng,
    pub(crate) decoder: Decoder,
    /// Frame encoding buffer, reused.
    pub(crate) scratch: Vec<u8>,
    /// Broadcast frame buffers, reused once written.
    frame_pool: frame::FramePool,
    /// Counters.
    pub metrics: Arc<ShardMetrics>,
    /// Unix time (ms) at `now = 0`.
    pub(crate) unix_base_ms: u64,
    /// Project secrets for handshake tokens.
    pub(crate) secrets: crate::auth::Secrets,
    /// Delayed resume frames: (due ms, session).
    pub(crate) timers: Vec<(u64, SessionKey)>,
    /// Connections whose session key changed (a resume took over a parked session).
    pub(crate) rekeys: Vec<(SessionKey, SessionKey)>,
    /// Parked sessions of every shard: session id → shard.
    pub(crate) parked: HashMap<Arc<str>, ShardId>,
    /// Sessions parked on this shard: session id → key.
    pub(crate) parked_here: HashMap<Arc<str>, SessionKey>,
    /// Sessions whose connection must be read again (it was paused while they waited).
    pub(crate) rereads: Vec<SessionKey>,
    /// The matchmaker (live on `rooms::matchmaking::MATCHMAKER` only).
    pub(crate) matchmaker: crate::rooms::matchmaking::Matchmaker,
    /// Snapshots asked for this turn (coalesced: one per member and room).
    pub(crate) resyncs: Vec<(RoomKey, MemberAt)>,
    /// Reused list of actions room logic asks for.
    pub(crate) actions: Vec<logic::Action>,
    last_tick_ms: u64,
}

/// Remote recipients of one frame on one shard.
type RemoteBatch = (ShardId, Frame, SmallVec<[SessionKey; 8]>);

/// How often `handle_tick` does its sweep.
pub const TICK_MS: u64 = 100;
/// A session that sent nothing for this long gives back its emptied outbound queue's
/// slots: idle connections hold no queue memory, busy ones keep reusing theirs.
const QUIET_RELEASE_MS: u64 = 1_000;
/// Members whose session records a fan-out loads together before queueing to them.
const WARM_MEMBERS: usize = 16;

impl ShardCore {
    /// A shard core. `seed` 0 seeds the RNG from the OS.
    pub fn new(
        id: ShardId,
        shards: usize,
        cfg: Arc<Config>,
        metrics: Arc<ShardMetrics>,
        unix_base_ms: u64,
    ) -> Self {
        let rng = if cfg.seed == 0 {
            StdRng::from_entropy()
        } else {
            StdRng::seed_from_u64(cfg.seed.wrapping_add(u64::from(id.0)))
        };
        let secrets = crate::auth::Secrets::new(cfg.auth.secrets.clone());
        ShardCore {
            id,
            shards,
            secrets,
            cfg,
            sessions: GenSlab::default(),
            rooms: GenSlab::default(),
            room_ids: HashMap::new(),
            directory: BTreeMap::new(),
            dirty: Vec::new(),
            mesh_out: Vec::new(),
            moves: Vec::new(),
            dirty_rooms: Vec::new(),
            closed: Vec::new(),
            rng,
            decoder: Decoder::default(),
            scratch: Vec::with_capacity(4096),
            frame_pool: Default::default(),
            metrics,
            unix_base_ms,
            actions: Vec::new(),
            resyncs: Vec::new(),
            timers: Vec::new(),
            rekeys: Vec::new(),
            parked: HashMap::new(),
            parked_here: HashMap::new(),
            rereads: Vec::new(),
            matchmaker: Default::default(),
            last_tick_ms: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// A new connection finished its WebSocket upgrade.
    pub fn handle_open(&mut self, transport: usize, now: u64) -> SessionKey {
        let limits = &self.cfg.limits;
        let session = Session {
            transport,
            phase: Phase::ExpectHandshake {
                deadline_ms: now + limits.handshake_ms,
            },
            rooms: None,
            out: Default::default(),
            bucket: bucket::TokenBucket::new(limits.msgs_per_s, limits.msgs_burst, now),
            state_bucket: bucket::TokenBucket::new(
                limits.msgs_per_s * crate::limits::STATE_CONTROL_FACTOR,
                limits.msgs_burst * crate::limits::STATE_CONTROL_FACTOR,
                now,
            ),
            last_rx_ms: now,
            pinged: false,
            dirty: false,
            pending_join: None,
            pending_hello: None,
            probes: 0,
            park_on_close: false,
        };
        ShardMetrics::add(&self.metrics.connections, 1);
        self.sessions.insert(session)
    }

    /// A ping or pong (or any frame) arrived: the connection is alive.
    pub fn handle_activity(&mut self, key: SessionKey, now: u64) {
        if let Some(s) = self.sessions.get_mut(key) {
            s.last_rx_ms = now;
            s.pinged = false;
        }
    }

    /// A complete text or binary message arrived. The buffer may be modified (JSON is
    /// unescaped in place).
    pub fn handle_message(&mut self, key: SessionKey, bytes: &mut [u8], now: u64) {
        self.handle_activity(key, now);
        ShardMetrics::add(&self.metrics.frames_in, 1);
        ShardMetrics::add(&self.metrics.bytes_in, bytes.len() as u64);
        crate::rooms::handle_frame(self, key, bytes, now);
        self.settle(now);
    }

    /// The connection is gone (EOF, error, or closed after our close frame): the session
    /// leaves its rooms and is removed.
    pub fn handle_disconnect(&mut self, key: SessionKey, now: u64) {
        let Some(s) = self.sessions.get(key) else {
            return;
        };
        let handshaken = s.rooms.is_some();
        let park = handshaken
            && (s.phase == Phase::Open || (s.phase == Phase::Closing && s.park_on_close));
        if matches!(s.phase, Phase::Parked { .. }) {
            return;
        }
        ShardMetrics::sub(&self.metrics.connections, 1);
        if park {
            crate::rooms::resume::park(self, key, now);
        } else {
            crate::rooms::leave_all(self, key, now);
            crate::rooms::matchmaking::forget_ticket(self, key);
            self.sessions.remove(key);
        }
        self.settle(now);
    }

    /// The client sent a close frame (tungstenite queued the reply): the session leaves its
    /// rooms and the socket closes once the reply is written.
    /// A client that closes with 1000 has left (its rooms hear at once); any other code
    /// parks the session for a resume once the socket is gone.
    pub fn handle_peer_close(&mut self, key: SessionKey, code: u16, now: u64) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        if s.phase == Phase::Open && code != 1000 {
            s.phase = Phase::Closing;
            s.park_on_close = true;
        } else if s.phase != Phase::Closing {
            s.phase = Phase::Closing;
            self.closed.push(key);
        }
        self.mark_dirty(key);
        self.settle(now);
    }

    /// Closes a session with a WebSocket close code (the reactor's protocol errors).
    pub fn close_session(&mut self, key: SessionKey, code: u16, reason: &str) {
        self.close(key, code, reason);
        self.settle(self.last_tick_ms);
    }

    /// Periodic work: due timers (every call), then every `TICK_MS` handshake deadlines,
    /// pings, idle closes, parked-session expiry, tickets and room ticks.
    pub fn handle_tick(&mut self, now: u64) {
        self.run_timers(now);
        if now < self.last_tick_ms + TICK_MS && self.last_tick_ms != 0 {
            return;
        }
        self.last_tick_ms = now.max(1);
        let limits = self.cfg.limits.clone();
        let keys: Vec<SessionKey> = self.sessions.keys().collect();
        for key in keys {
            let Some(s) = self.sessions.get_mut(key) else {
                continue;
            };
            match s.phase {
                Phase::ExpectHandshake { deadline_ms } if now >= deadline_ms => {
                    crate::rooms::fail_handshake(self, key, "bad_handshake", "handshake timeout");
                }
                Phase::Parked { until_ms } if now >= until_ms => {
                    crate::rooms::resume::expire(self, key, now);
                }
                Phase::Closing | Phase::ExpectHandshake { .. } | Phase::Parked { .. } => {}
                Phase::Open => {
                    let quiet = now.saturating_sub(s.last_rx_ms);
                    if quiet >= QUIET_RELEASE_MS {
                        s.out.release_if_empty();
                    }
                    if quiet >= limits.idle_ms {
                        self.close(key, 1001, "idle");
                    } else if quiet >= limits.ping_ms && !s.pinged {
                        s.pinged = true;
                        self.send(key, frame::ping(), Class::Reliable);
                    }
                }
            }
        }
        crate::rooms::tick_rooms(self, now);
        crate::rooms::matchmaking::tick(self, now);
        self.settle(now);
    }

    fn run_timers(&mut self, now: u64) {
        if self.timers.is_empty() {
            return;
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.timers)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.timers = later;
        for (_, key) in due {
            crate::rooms::resume::send_resume_frames(self, key, now);
        }
        self.settle(now);
    }

    /// The next time `handle_tick` has work due (for the reactor's poll timeout).
    pub fn next_deadline(&self) -> u64 {
        let tick = self.last_tick_ms + TICK_MS;
        self.timers.iter().map(|(at, _)| *at).fold(tick, u64::min)
    }

    /// Sessions whose connections the reactor must read again, since the last call.
    pub fn drain_rereads(&mut self, into: &mut Vec<SessionKey>) {
        into.append(&mut self.rereads);
    }

    /// Sessions that took over another session's key (a resume), since the last call:
    /// the connection of `old` now belongs to `new`.
    pub fn drain_rekeys(&mut self, into: &mut Vec<(SessionKey, SessionKey)>) {
        into.append(&mut self.rekeys);
    }

    /// End of a reactor turn: batched state ops become one patch per room.
    pub fn end_turn(&mut self, now: u64) {
        crate::rooms::sync::flush_patches(self);
        self.settle(now);
    }

    /// A message from another shard. `Adopt` must go to [`ShardCore::handle_adopt`].
    pub fn handle_mesh(&mut self, from: ShardId, msg: MeshMsg, now: u64) {
        match msg {
            MeshMsg::Adopt(_) => unreachable!("the reactor adopts sessions with their transport"),
            MeshMsg::Deliver { to, frame, class } => {
                for key in to {
                    if self.sessions.get(key).is_some() {
                        self.send(key, frame.clone(), class);
                    } else {
                        self.metrics.dropped(DropReason::StaleSession);
                    }
                }
            }
            MeshMsg::Parked { session_id, at } => match at {
                Some(shard) => {
                    self.parked.insert(session_id, shard);
                }
                None => {
                    self.parked.remove(&session_id);
                }
            },
            MeshMsg::Directory { room_id, listing } => match listing {
                Some(l) => {
                    self.directory.insert(room_id, l);
                }
                None => {
                    self.directory.remove(&room_id);
                }
            },
            other => crate::rooms::handle_mesh(self, from, other, now),
        }
        self.settle(now);
    }

    /// Takes over a session moved here; returns its new key. Runs its pending join.
    pub fn handle_adopt(
        &mut self,
        mut session: Session,
        moved_from: (ShardId, SessionKey),
        transport: usize,
        now: u64,
    ) -> SessionKey {
        session.transport = transport;
        session.dirty = false;
        let pending = session.pending_join.take();
        let hello = session.pending_hello.take();
        let has_ticket = session.rooms.as_ref().is_some_and(|r| r.ticket);
        let has_output = !session.out.is_empty();
        ShardMetrics::add(&self.metrics.connections, 1);
        let key = self.sessions.insert(session);
        if has_output {
            self.mark_dirty(key);
        }
        if has_ticket {
            crate::rooms::matchmaking::rekey(self, moved_from, (self.id, key));
        }
        if let Some(join) = pending {
            crate::rooms::join_here(self, room::MemberAt::Local(key), *join, now);
        }
        let key = match hello {
            Some(hello) => crate::rooms::resume::finish_handshake(self, key, *hello, now),
            None => key,
        };
        self.settle(now);
        key
    }

    /// Removes a session that is moving to another shard (its room memberships are none);
    /// the caller sends it on in a [`Moved`] that says where it was.
    pub fn take_session(&mut self, key: SessionKey) -> Option<Session> {
        let s = self.sessions.remove(key)?;
        ShardMetrics::sub(&self.metrics.connections, 1);
        ShardMetrics::add(&self.metrics.moves_out, 1);
        Some(s)
    }

    /// Queues a frame written by tungstenite (pong, close reply) for a session.
    pub fn push_raw(&mut self, key: SessionKey, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.send(key, Arc::new(bytes.to_vec()), Class::Reliable);
        }
    }

    /// Closes every session with 1001 (server shutting down).
    pub fn begin_shutdown(&mut self) {
        let keys: Vec<SessionKey> = self.sessions.keys().collect();
        for key in keys {
            self.close(key, 1001, "server shutting down");
        }
    }

    /// Sessions with frames to write or a close to finish, since the last call. A key
    /// stays marked (its session is not listed again) until the caller takes the session
    /// with [`ShardCore::session_to_flush`]; frames queued before that ride along. The
    /// sessions are not touched here: at a wide room that is one cache miss per member
    /// saved, the writer visits each one anyway.
    pub fn drain_dirty(&mut self, into: &mut Vec<SessionKey>) {
        into.append(&mut self.dirty);
    }

    /// Sessions to hand to another shard, since the last call.
    pub fn drain_moves(&mut self, into: &mut Vec<(SessionKey, ShardId)>) {
        into.append(&mut self.moves);
    }

    /// Messages for other shards, since the last call.
    pub fn drain_mesh(&mut self, into: &mut Vec<(ShardId, MeshMsg)>) {
        into.append(&mut self.mesh_out);
    }

    /// A session whose outbound queue the caller is about to write (or to hold for its
    /// flush interval); its next frame lists it in [`ShardCore::drain_dirty`] again.
    pub fn session_to_flush(&mut self, key: SessionKey) -> Option<&mut Session> {
        let session = self.sessions.get_mut(key)?;
        session.dirty = false;
        Some(session)
    }

    /// A session.
    pub fn session(&self, key: SessionKey) -> Option<&Session> {
        self.sessions.get(key)
    }

    /// Live sessions on this shard.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Rooms whose home is this shard.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// A local room by id.
    pub fn room(&self, id: &str) -> Option<&Room> {
        self.room_ids.get(id).and_then(|k| self.rooms.get(*k))
    }

    pub(crate) fn mark_dirty(&mut self, key: SessionKey) {
        if let Some(s) = self.sessions.get_mut(key) {
            if !s.dirty {
                s.dirty = true;
                self.dirty.push(key);
            }
        }
    }

    pub(crate) fn post(&mut self, to: ShardId, msg: MeshMsg) {
        debug_assert_ne!(to, self.id, "mesh messages go to other shards");
        self.mesh_out.push((to, msg));
    }

    pub(crate) fn request_move(&mut self, key: SessionKey, to: ShardId) {
        self.moves.push((key, to));
    }

    /// Queues one frame for a local session under the outbound policy.
    pub(crate) fn send(&mut self, key: SessionKey, frame: Frame, class: Class) {
        let limits = &self.cfg.limits;
        let (bytes_max, congested) = (limits.outbound_bytes_max, limits.outbound_congested_bytes);
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        if matches!(s.phase, Phase::Closing | Phase::Parked { .. }) {
            return;
        }
        match s.out.push(frame, class, bytes_max, congested) {
            Pushed::Queued => ShardMetrics::add(&self.metrics.frames_out, 1),
            Pushed::Replaced => self.metrics.dropped(DropReason::Replaced),
            Pushed::Dropped => self.metrics.dropped(DropReason::Congested),
            Pushed::Overflow => {
                s.out.truncate_unstarted();
                crate::rooms::send_error(self, key, "slow_consumer", "outbound queue full");
                self.close(key, 1008, "slow_consumer");
                return;
            }
        }
        self.mark_dirty(key);
    }

    /// Queues one frame for a member wherever it lives.
    pub(crate) fn send_to(&mut self, at: MemberAt, frame: Frame, class: Class) {
        match at {
            MemberAt::Local(key) => self.send(key, frame, class),
            MemberAt::Remote(shard, key) => self.post(
                shard,
                MeshMsg::Deliver {
                    to: smallvec::smallvec![key],
                    frame,
                    class,
                },
            ),
        }
    }

    /// Queues a close frame (after anything already queued) and marks the session closing;
    /// the session leaves its rooms now. The reactor closes the socket once it is written.
    pub(crate) fn close(&mut self, key: SessionKey, code: u16, reason: &str) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        if s.phase == Phase::Closing {
            return;
        }
        // Bypass the byte bound: the close frame must go out.
        s.out.push(
            frame::close(code, reason),
            Class::Reliable,
            usize::MAX,
            usize::MAX,
        );
        s.phase = Phase::Closing;
        self.mark_dirty(key);
        self.closed.push(key);
    }

    /// Leaves the rooms of sessions closed while handling the last input.
    pub(crate) fn settle(&mut self, now: u64) {
        while let Some(key) = self.closed.pop() {
            crate::rooms::leave_all(self, key, now);
        }
    }

    /// Fans a frame out to room members; encodes once per codec present, lazily.
    /// `skip` leaves one member out (the sender of `position.update`).
    pub(crate) fn fan_out(
        &mut self,
        room: RoomKey,
        class: Class,
        skip: Option<MemberAt>,
        variant: fn(&room::Member) -> usize,
        encode: &dyn Fn(&mut Writer<'_>, &room::Member),
    ) {
        let members = match self.rooms.get_mut(room) {
            Some(r) => std::mem::take(&mut r.members),
            None => return,
        };
        let mut frames: [Option<Frame>; 8] = Default::default();
        let mut remote: SmallVec<[RemoteBatch; 2]> = SmallVec::new();
        for (i, m) in members.iter().enumerate() {
            if i % WARM_MEMBERS == 0 {
                // Load the next members' records in one pass: their cache misses overlap
                // instead of each stalling its own queueing (A/B at `fanout`: huddle's
                // own CPU per delivery 0.395 -> 0.375 us, perf-sampled, three runs each).
                for m in members.iter().skip(i).take(WARM_MEMBERS) {
                    if let MemberAt::Local(key) = m.at {
                        std::hint::black_box(self.sessions.get(key).map(|s| s.dirty));
                    }
                }
            }
            if Some(m.at) == skip {
                continue;
            }
            let v = variant(m);
            let frame = match &frames[v] {
                Some(f) => f.clone(),
                None => {
                    let mut f = self.frame_pool.take();
                    let buf = Arc::get_mut(&mut f).expect("pooled frames are unique");
                    let mut w = Writer::new(m.codec, buf);
                    encode(&mut w, m);
                    w.finish_in_place();
                    self.frame_pool.track(&f);
                    frames[v] = Some(f.clone());
                    f
                }
            };
            match m.at {
                MemberAt::Local(key) => self.send(key, frame, class),
                MemberAt::Remote(shard, key) => {
                    match remote
                        .iter_mut()
                        .find(|(s, f, _)| *s == shard && Arc::ptr_eq(f, &frame))
                    {
                        Some((_, _, keys)) => keys.push(key),
                        None => remote.push((shard, frame, smallvec::smallvec![key])),
                    }
                }
            }
        }
        if let Some(r) = self.rooms.get_mut(room) {
            r.members = members;
        }
        for (shard, frame, to) in remote {
            self.post(shard, MeshMsg::Deliver { to, frame, class });
        }
    }

    /// Fresh random bytes as lowercase hex (ids and secrets).
    pub(crate) fn random_hex(&mut self, bytes: usize) -> String {
        let mut raw = vec![0u8; bytes];
        self.rng.fill_bytes(&mut raw);
        raw.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Unix time of `now`.
    pub(crate) fn unix_ms(&self, now: u64) -> u64 {
        self.unix_base_ms + now
    }

    /// Tells every other shard about a room's listing.
    pub(crate) fn publish_listing(&mut self, room_id: &Arc<str>, listing: Option<Listing>) {
        match &listing {
            Some(l) => {
                self.directory.insert(room_id.clone(), l.clone());
            }
            None => {
                self.directory.remove(room_id);
            }
        }
        self.post_to_others(|| MeshMsg::Directory {
            room_id: room_id.clone(),
            listing: listing.clone(),
        });
    }

    /// Sends a message to every other shard (replicated directories).
    pub(crate) fn post_to_others(&mut self, msg: impl Fn() -> MeshMsg) {
        for i in 0..self.shards {
            let to = ShardId(i as u16);
            if to != self.id {
                self.post(to, msg());
            }
        }
    }
}

/// Encodings of a broadcast that differ only by codec.
pub fn by_codec(m: &room::Member) -> usize {
    m.codec.index()
}

/// Encodings that differ by codec and, for msgpack, by `bin_bytes` (relayed bytes).
pub fn by_codec_and_bin(m: &room::Member) -> usize {
    match (m.codec, m.features.bin_bytes) {
        (Codec::Json, _) => 0,
        (Codec::Msgpack, false) => 1,
        (Codec::Msgpack, true) => 2,
    }
}

/// Encodings that differ by codec, `nested_ops` and `crc32` (state patches).
pub fn by_codec_nesting_and_crc(m: &room::Member) -> usize {
    m.codec.index() * 4 + usize::from(m.features.nested_ops) * 2 + usize::from(m.features.crc32)
}
