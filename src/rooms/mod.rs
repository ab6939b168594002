//! The rooms dialect ("Message Catalog"): handshake with codec negotiation, rooms, room
//! messages, authoritative state sync, matchmaking, session resume. It owns its shard
//! state ([`Rooms`]: the room slab, the room directory, parked sessions, the matchmaker,
//! batched patches) and each session's rooms state ([`RoomsSession`]); it decodes frames
//! into commands (`decode`), applies them, and encodes replies and broadcasts (`encode`).
//! Everything else — sockets, queues, fan-out, moves, timers, the mesh — is the engine's,
//! reached through the [`Engine`] its hooks are handed. It runs in any dialect set that
//! carries its state ([`Host`]).

pub mod auth;
pub mod canon;
pub mod decode;
pub mod encode;
mod handshake;
pub mod logic;
pub mod matchmaking;
mod membership;
mod relay;
pub mod resume;
pub mod room;
pub mod session;
pub mod state;
pub mod sync;

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crate::codec::{self, Codec, Decoded, Frame, Value};
use crate::core::bucket::Verdict;
use crate::core::outbound::Class;
use crate::core::{
    home_shard, AfterClose, CloseReason, Dialect, Engine, GenSlab, Message, SessionAt, SessionKey,
    ShardId,
};
use crate::metrics::{DialectMetrics, DropReason, ErrorCounts, Sample, ShardMetrics};
use decode::{Command, ErrorCode, Refusal};
use logic::{Action, Input, RoomCtx};
use room::{Features, Member, Room, RoomKey, RoomOptions};
pub use session::{Client, Hello, Membership, PendingJoin, RoomsSession};
use state::Op;

use handshake::*;
pub(crate) use handshake::{handshake_ok, open_session};
pub(crate) use membership::{create_room, listing};
use membership::{join, join_member, leave, leave_here, list};
use membership::{join_here, leave_all, tick_rooms};
use relay::*;

/// The room type of a join that names none (and of a room id that names none).
pub const DEFAULT_ROOM_TYPE: &str = "echo_room";

/// What the rooms dialect needs of the dialect set it runs in: its session state, mesh
/// messages and timers, carried as the set's own.
pub trait Host: Dialect {
    /// The rooms state of a session (`None` for a session of another dialect).
    fn rooms(session: &Self::Session) -> Option<&RoomsSession>;
    /// The rooms state of a session, mutably.
    fn rooms_mut(session: &mut Self::Session) -> Option<&mut RoomsSession>;
    /// A rooms message between shards, as the set's.
    fn mesh(msg: Mesh) -> Self::Mesh;
    /// A rooms timer, as the set's.
    fn timer(timer: Timer) -> Self::Timer;
}

/// The rooms dialect's timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    /// `limits.handshake_ms` after the upgrade: no handshake yet means `bad_handshake`.
    Handshake(SessionKey),
    /// `session.resume_frames_delay_ms` after a resume: `room.reconnected` and snapshots.
    ResumeFrames(SessionKey),
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

/// A forwarded join.
pub struct RemoteJoin {
    /// The joining session, on the sender.
    pub from: SessionKey,
    /// Its public id.
    pub client_id: Arc<str>,
    /// Its codec.
    pub codec: Codec,
    /// Its features.
    pub features: Features,
    /// What to join.
    pub join: PendingJoin,
}

/// The rooms dialect's messages between shards.
pub enum Mesh {
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
        presence: resume::Presence,
        /// The session's codec now.
        codec: Codec,
        /// Its features now.
        features: Features,
    },
    /// To or from the matchmaker.
    Matchmaking(Box<matchmaking::MmMsg>),
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

/// The rooms dialect's counters on one shard.
pub struct RoomsMetrics {
    /// Rooms whose home is the shard (gauge).
    pub rooms: AtomicU64,
    /// Error codes sent.
    pub errors: ErrorCounts<ErrorCode>,
}

impl DialectMetrics for RoomsMetrics {
    fn samples(&self, sample: &mut dyn FnMut(Sample<'_>)) {
        sample(Sample {
            name: "huddle_rooms",
            kind: "gauge",
            help: "Rooms whose home is the shard.",
            labels: &[],
            value: self.rooms.load(std::sync::atomic::Ordering::Relaxed),
        });
        self.errors.samples(sample);
    }
}

/// The rooms dialect's state on one shard.
pub struct Rooms {
    /// Rooms whose home is this shard.
    pub slab: GenSlab<Room>,
    /// Their keys by room id.
    pub by_id: HashMap<Arc<str>, RoomKey>,
    /// Every room of every shard, for `room.list`.
    pub directory: BTreeMap<Arc<str>, Listing>,
    /// Parked sessions of every shard: session id → shard.
    pub parked: HashMap<Arc<str>, ShardId>,
    /// Sessions parked on this shard: session id → key.
    pub parked_here: HashMap<Arc<str>, SessionKey>,
    /// The matchmaker (live on `matchmaking::MATCHMAKER` only).
    pub matchmaker: matchmaking::Matchmaker,
    /// Rooms with state ops waiting for the end of the turn (one patch each).
    pub patches: Vec<RoomKey>,
    /// Snapshots asked for this turn (coalesced: one per member and room).
    pub resyncs: Vec<(RoomKey, SessionAt)>,
    /// Reused list of actions room logic asks for.
    actions: Vec<Action>,
    /// Project secrets for handshake tokens.
    secrets: auth::Secrets,
    /// Counters.
    pub metrics: Arc<RoomsMetrics>,
}

impl Rooms {
    /// The rooms state of one shard.
    pub fn new(cfg: &crate::config::Config) -> Self {
        Rooms {
            slab: GenSlab::default(),
            by_id: HashMap::new(),
            directory: BTreeMap::new(),
            parked: HashMap::new(),
            parked_here: HashMap::new(),
            matchmaker: Default::default(),
            patches: Vec::new(),
            resyncs: Vec::new(),
            actions: Vec::new(),
            secrets: auth::Secrets::new(cfg.auth.secrets.clone()),
            metrics: Arc::new(RoomsMetrics {
                rooms: AtomicU64::new(0),
                errors: ErrorCounts::new("rooms"),
            }),
        }
    }

    /// A room whose home is this shard, by id.
    pub fn room(&self, id: &str) -> Option<&Room> {
        self.by_id.get(id).and_then(|k| self.slab.get(*k))
    }

    /// Rooms whose home is this shard.
    pub fn room_count(&self) -> usize {
        self.slab.len()
    }

    fn cx<'a, H: Host>(&'a mut self, eng: &'a mut Engine<H>) -> Cx<'a, H> {
        Cx { rooms: self, eng }
    }

    /// A connection opened on `/rooms` (or `/`): its handshake is due within
    /// `limits.handshake_ms`.
    pub fn handle_open<H: Host>(&mut self, eng: &mut Engine<H>, key: SessionKey, now: u64) {
        let due = now + eng.cfg.limits.handshake_ms;
        eng.set_timer(due, H::timer(Timer::Handshake(key)));
    }

    /// One complete message: the handshake, then envelopes.
    pub fn handle_message<H: Host>(
        &mut self,
        eng: &mut Engine<H>,
        key: SessionKey,
        message: Message<'_>,
        now: u64,
    ) {
        let mut cx = self.cx(eng);
        let (open, expecting_handshake) = match cx.session(key) {
            Some(RoomsSession::Open(_)) => (true, false),
            Some(RoomsSession::Handshake { hello, .. }) => (false, hello.is_none()),
            None => (false, false),
        };
        if open {
            handle_envelope(&mut cx, key, message.bytes, now);
        } else if expecting_handshake {
            handshake(&mut cx, key, message.bytes, now);
        }
        // Else a validated handshake waits for other shards: its reads are paused.
    }

    /// A client that closes with 1000 has left: its rooms hear at once. Any other end of a
    /// handshaken session's connection (a drop, another close code) parks it for
    /// `session.resume_ttl_ms`. A server-initiated close leaves at once.
    pub fn handle_close<H: Host>(
        &mut self,
        eng: &mut Engine<H>,
        key: SessionKey,
        reason: CloseReason,
        now: u64,
    ) -> AfterClose {
        let mut cx = self.cx(eng);
        let handshaken = cx.client(key).is_some();
        let park = match reason {
            CloseReason::Dropped => handshaken,
            CloseReason::Client(code) => handshaken && code != 1000,
            CloseReason::Server => false,
        };
        if park {
            resume::park(&mut cx, key, now)
        } else {
            leave_all(&mut cx, key, now);
            AfterClose::Gone
        }
    }

    /// The session ends: it leaves every room it is still in, its ticket goes, and a
    /// parked session is no longer listed.
    pub fn handle_end<H: Host>(&mut self, eng: &mut Engine<H>, key: SessionKey, now: u64) {
        let mut cx = self.cx(eng);
        resume::unlist(&mut cx, key);
        leave_all(&mut cx, key, now);
        matchmaking::forget_ticket(&mut cx, key);
    }

    /// A rooms timer is due.
    pub fn handle_timer<H: Host>(&mut self, eng: &mut Engine<H>, timer: Timer) {
        let mut cx = self.cx(eng);
        match timer {
            Timer::Handshake(key) => {
                if matches!(
                    cx.session(key),
                    Some(RoomsSession::Handshake { hello: None, .. })
                ) {
                    fail_handshake(&mut cx, key, ErrorCode::BadHandshake, "handshake timeout");
                }
            }
            Timer::ResumeFrames(key) => resume::send_resume_frames(&mut cx, key),
        }
    }

    /// Room ticks, reservations ending, matchmaking tickets expiring.
    pub fn handle_tick<H: Host>(&mut self, eng: &mut Engine<H>, now: u64) {
        let mut cx = self.cx(eng);
        tick_rooms(&mut cx, now);
        matchmaking::tick(&mut cx, now);
    }

    /// A session moved here: its pending join (or the handshake that resumes a session
    /// parked here) runs now; its matchmaking ticket follows it.
    pub fn handle_arrival<H: Host>(
        &mut self,
        eng: &mut Engine<H>,
        key: SessionKey,
        from: SessionAt,
        now: u64,
    ) {
        let mut cx = self.cx(eng);
        let here = cx.eng.here(key);
        let (pending, ticket, hello) = match cx.session_mut(key) {
            Some(RoomsSession::Open(client)) => (client.pending_join.take(), client.ticket, None),
            Some(RoomsSession::Handshake { hello, .. }) => (None, false, hello.take()),
            None => return,
        };
        if ticket {
            matchmaking::rekey(&mut cx, from, here);
        }
        if let Some(join) = pending {
            join_here(&mut cx, here, *join, now);
        }
        if let Some(hello) = hello {
            resume::finish_handshake(&mut cx, key, *hello, now);
        }
    }

    /// End of a turn: batched state ops become one patch per room, then the turn's
    /// resyncs.
    pub fn end_turn<H: Host>(&mut self, eng: &mut Engine<H>) {
        sync::flush_patches(&mut self.cx(eng));
    }

    /// `error {code:"slow_consumer"}` in the session's codec, before the close.
    pub fn overflow_frame<H: Host>(
        &mut self,
        eng: &mut Engine<H>,
        key: SessionKey,
    ) -> Option<Frame> {
        let cx = self.cx(eng);
        let codec = cx.client(key).map_or(Codec::Json, |c| c.codec);
        cx.rooms.metrics.errors.count(ErrorCode::SlowConsumer);
        Some(encode::error(
            codec,
            &mut cx.eng.scratch,
            None,
            ErrorCode::SlowConsumer.as_str(),
            "outbound queue full",
        ))
    }

    /// A rooms message from another shard.
    pub fn handle_mesh<H: Host>(
        &mut self,
        eng: &mut Engine<H>,
        from: ShardId,
        msg: Mesh,
        now: u64,
    ) {
        handle_mesh(&mut self.cx(eng), from, msg, now);
    }
}

/// What every rooms handler works with: the dialect's shard state and the engine.
pub(crate) struct Cx<'a, H: Host> {
    /// The rooms state of this shard.
    pub rooms: &'a mut Rooms,
    /// The engine.
    pub eng: &'a mut Engine<H>,
}

impl<H: Host> Cx<'_, H> {
    /// A session's rooms state.
    fn session(&self, key: SessionKey) -> Option<&RoomsSession> {
        H::rooms(&self.eng.session(key)?.dialect)
    }

    /// A session's rooms state, mutably.
    fn session_mut(&mut self, key: SessionKey) -> Option<&mut RoomsSession> {
        H::rooms_mut(&mut self.eng.session_mut(key)?.dialect)
    }

    /// A handshaken session's client state.
    fn client(&self, key: SessionKey) -> Option<&Client> {
        self.session(key)?.client()
    }

    /// A handshaken session's client state, mutably.
    fn client_mut(&mut self, key: SessionKey) -> Option<&mut Client> {
        self.session_mut(key)?.client_mut()
    }

    /// Sends a rooms message to another shard.
    fn post(&mut self, to: ShardId, msg: Mesh) {
        self.eng.post(to, H::mesh(msg));
    }

    /// Sends a rooms message to every other shard.
    fn post_to_others(&mut self, msg: impl Fn() -> Mesh) {
        self.eng.post_to_others(|| H::mesh(msg()));
    }

    /// Counts an error code sent.
    fn count_error(&self, code: ErrorCode) {
        self.rooms.metrics.errors.count(code);
    }

    /// Fans a frame out to a room's members (see `Engine::fan_out`).
    fn fan_out(
        &mut self,
        rk: RoomKey,
        class: Class,
        skip: Option<SessionAt>,
        variant: fn(&Member) -> usize,
        encode: impl Fn(&mut codec::Writer<'_>, &Member),
    ) {
        if let Some(room) = self.rooms.slab.get(rk) {
            self.eng
                .fan_out(&room.members, class, skip, variant, encode);
        }
    }

    /// Tells every other shard about a room's listing.
    fn publish_listing(&mut self, room_id: &Arc<str>, listing: Option<Listing>) {
        match &listing {
            Some(l) => {
                self.rooms.directory.insert(room_id.clone(), l.clone());
            }
            None => {
                self.rooms.directory.remove(room_id);
            }
        }
        self.post_to_others(|| Mesh::Directory {
            room_id: room_id.clone(),
            listing: listing.clone(),
        });
    }
}

/// Encodings of a broadcast that differ only by codec.
pub fn by_codec(m: &Member) -> usize {
    m.codec.index()
}

/// Encodings that differ by codec and, for msgpack, by `bin_bytes` (relayed bytes).
pub fn by_codec_and_bin(m: &Member) -> usize {
    match (m.codec, m.features.bin_bytes) {
        (Codec::Json, _) => 0,
        (Codec::Msgpack, false) => 1,
        (Codec::Msgpack, true) => 2,
    }
}

/// Encodings that differ by codec, `nested_ops` and `crc32` (state patches).
pub fn by_codec_nesting_and_crc(m: &Member) -> usize {
    m.codec.index() * 4 + usize::from(m.features.nested_ops) * 2 + usize::from(m.features.crc32)
}

/// A room type clients may use: registered in `rooms.types` and built in.
fn registered_type<H: Host>(cx: &Cx<'_, H>, name: &str) -> Result<&'static str, Refusal> {
    let registered = cx.eng.cfg.rooms.types.iter().any(|t| t == name);
    match logic::builtin(name).filter(|_| registered) {
        Some((room_type, _)) => Ok(room_type),
        None => Err(Refusal::new(
            ErrorCode::UnknownRoomType,
            format!("unknown room type {name:?}"),
        )),
    }
}

/// A handshaken session's client state (its frames are only handled once it is open).
fn client_of<'c, H: Host>(cx: &'c Cx<'_, H>, key: SessionKey) -> &'c Client {
    cx.client(key).expect("open session")
}

/// A handshaken session's client state, mutably.
fn client_of_mut<'c, H: Host>(cx: &'c mut Cx<'_, H>, key: SessionKey) -> &'c mut Client {
    cx.client_mut(key).expect("open session")
}

/// The refusal of a room command that names no room.
fn no_room_named() -> Refusal {
    Refusal::new(ErrorCode::BadRequest, "no room named")
}

/// Where an answer goes: the session (on this shard or another) and its codec.
#[derive(Clone, Copy)]
struct ReplyTo {
    at: SessionAt,
    codec: Codec,
}

fn reply_to<H: Host>(cx: &Cx<'_, H>, key: SessionKey) -> Option<ReplyTo> {
    let client = cx.client(key)?;
    Some(ReplyTo {
        at: cx.eng.here(key),
        codec: client.codec,
    })
}

/// Sends `error {code, reason}` to a local session (before its handshake: as JSON).
fn send_error<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey, code: ErrorCode, reason: &str) {
    let codec = cx.client(key).map_or(Codec::Json, |c| c.codec);
    cx.count_error(code);
    let frame = encode::error(codec, &mut cx.eng.scratch, None, code.as_str(), reason);
    cx.eng.send(key, frame, Class::Reliable);
}

/// A failed handshake: `error {code, reason}` in JSON, then close 1008.
fn fail_handshake<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey, code: ErrorCode, reason: &str) {
    send_error(cx, key, code, reason);
    cx.eng.close(key, 1008, code.as_str());
}

/// Answers a refused request: `rpc.response {ok:false}` when it had an id, else `error`.
fn refuse<H: Host>(
    cx: &mut Cx<'_, H>,
    to: ReplyTo,
    rid: Option<&str>,
    room: Option<&str>,
    refusal: &Refusal,
) {
    let code = refusal.code.as_str();
    cx.count_error(refusal.code);
    let frame = match rid {
        Some(rid) => encode::rpc_error(
            to.codec,
            &mut cx.eng.scratch,
            rid,
            room,
            code,
            &refusal.reason,
        ),
        None => encode::error(to.codec, &mut cx.eng.scratch, room, code, &refusal.reason),
    };
    cx.eng.send_to(to.at, frame, Class::Reliable);
}

/// `rpc.response {ok:true}` with no other fields.
fn ack<H: Host>(cx: &mut Cx<'_, H>, to: ReplyTo, rid: Option<&str>, room: Option<&str>) {
    if let Some(rid) = rid {
        let frame = encode::rpc_ok(to.codec, &mut cx.eng.scratch, rid, room, 0, |_| {});
        cx.eng.send_to(to.at, frame, Class::Reliable);
    }
}

/// An envelope from a handshaken session: decoded in its codec (a JSON `room.message`
/// straight off the tape), admitted by the rate buckets, carried out.
fn handle_envelope<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey, bytes: &mut [u8], now: u64) {
    let Some(to) = reply_to(cx, key) else {
        return;
    };
    let too_large = bytes.len() > cx.eng.cfg.limits.frame_bytes_max;
    // A frame for a room on another shard is forwarded as it came, so keep the original
    // bytes when this session has such rooms (JSON decoding unescapes in place).
    let has_remote = client_of(cx, key).has_remote_rooms(cx.eng.id);
    let original: Option<Box<[u8]>> = has_remote.then(|| Box::from(&*bytes));
    let failure = match cx.eng.decoder.decode_fast(to.codec, bytes, |root| {
        (!too_large).then(|| decode::tape_message(root)).flatten()
    }) {
        Ok(Decoded::Fast(message)) => {
            dispatch_message(cx, key, to, message, original, now);
            None
        }
        Ok(Decoded::Tree(value)) if too_large => {
            cx.eng.metrics.dropped(DropReason::TooLarge);
            let refusal = Refusal::new(
                ErrorCode::PayloadTooLarge,
                "frame over limits.frame_bytes_max",
            );
            refuse(cx, to, decode::rid_of(&value), None, &refusal);
            None
        }
        Ok(Decoded::Tree(value)) => {
            dispatch(cx, key, to, &value, original, now);
            None
        }
        Err(_) if too_large => Some(Refusal::new(
            ErrorCode::PayloadTooLarge,
            "frame over limits.frame_bytes_max",
        )),
        Err(e) => Some(Refusal::new(ErrorCode::BadRequest, e.to_string())),
    };
    if let Some(refusal) = failure {
        if refusal.code == ErrorCode::PayloadTooLarge {
            cx.eng.metrics.dropped(DropReason::TooLarge);
        }
        // Answer the RPC even so, when its id can still be read.
        let rid = codec::recover::top_level_str(to.codec, bytes, "rid");
        refuse(cx, to, rid.as_deref(), None, &refusal);
    }
}

fn dispatch<H: Host>(
    cx: &mut Cx<'_, H>,
    key: SessionKey,
    to: ReplyTo,
    value: &Value<'_>,
    original: Option<Box<[u8]>>,
    now: u64,
) {
    let env = match decode::envelope(value) {
        Ok(e) => e,
        Err(r) => return refuse(cx, to, decode::rid_of(value), None, &r),
    };
    if !admit(cx, key, to, &env, now) {
        return;
    }
    let relay_types = &cx.eng.cfg.policy.unreliable_types;
    let cmd = match decode::command(&env, relay_types) {
        Ok(c) => c,
        Err(r) => return refuse(cx, to, env.rid, env.room, &r),
    };
    run_command(cx, key, to, &env, cmd, original, now);
}

/// A `room.message` the JSON fast path read off the tape: the same admission and command
/// as the full path, without the value tree.
fn dispatch_message<H: Host>(
    cx: &mut Cx<'_, H>,
    key: SessionKey,
    to: ReplyTo,
    message: decode::TapeMessage<'_>,
    original: Option<Box<[u8]>>,
    now: u64,
) {
    let env = decode::Envelope {
        t: "room.message",
        rid: message.rid,
        room: Some(message.room),
        p: None,
    };
    if !admit(cx, key, to, &env, now) {
        return;
    }
    let cmd = Command::Message {
        msg_type: std::borrow::Cow::Borrowed(message.msg_type),
        data: message.data.as_ref(),
        bytes_b64: None,
    };
    run_command(cx, key, to, &env, cmd, original, now);
}

/// The session's rate buckets (state acks and resyncs have their own): false when the
/// frame was refused (or the session closed for abuse).
fn admit<H: Host>(
    cx: &mut Cx<'_, H>,
    key: SessionKey,
    to: ReplyTo,
    env: &decode::Envelope<'_, '_>,
    now: u64,
) -> bool {
    let state_control = matches!(env.t, "state.ack" | "state.resync");
    let verdict = if state_control {
        let client = client_of_mut(cx, key);
        client.state_bucket.take(now, crate::limits::ABUSE_FACTOR)
    } else {
        cx.eng.take_token(key, now)
    };
    match verdict {
        Verdict::Allow => true,
        Verdict::Limited => {
            cx.eng.metrics.dropped(DropReason::RateLimited);
            let r = Refusal::new(ErrorCode::RateLimited, "over limits.msgs_per_s");
            refuse(cx, to, env.rid, env.room, &r);
            false
        }
        Verdict::Abusive => {
            let reason = "far over limits.msgs_per_s: closing";
            send_error(cx, key, ErrorCode::RateLimited, reason);
            cx.eng.close(key, 1008, ErrorCode::RateLimited.as_str());
            false
        }
    }
}

/// Carries out a validated, admitted command.
fn run_command<H: Host>(
    cx: &mut Cx<'_, H>,
    key: SessionKey,
    to: ReplyTo,
    env: &decode::Envelope<'_, '_>,
    cmd: Command<'_, '_>,
    original: Option<Box<[u8]>>,
    now: u64,
) {
    match cmd {
        Command::Join { room_type, options } => join(cx, key, to, env, room_type, options, now),
        Command::Leave => leave(cx, key, to, env, now),
        Command::List { room_type } => list(cx, to, env.rid, room_type),
        Command::Enqueue { room_type, size } => {
            if let Err(r) = matchmaking::enqueue(cx, key, room_type, size, env.rid, now) {
                refuse(cx, to, env.rid, None, &r);
            }
        }
        Command::Dequeue => matchmaking::dequeue(cx, key, env.rid, now),
        Command::Unknown => {
            let r = Refusal::new(
                ErrorCode::UnknownType,
                format!("unknown message type {:?}", env.t),
            );
            refuse(cx, to, env.rid, env.room, &r)
        }
        cmd => {
            let Some(room_id) = env.room else {
                // A late ack (the room was just left) is not worth an error, unless it is an RPC.
                if matches!(cmd, Command::StateAck { .. }) && env.rid.is_none() {
                    return;
                }
                return refuse(cx, to, env.rid, None, &no_room_named());
            };
            let home = match client_of(cx, key).membership(room_id) {
                Some(m) if m.joined => m.home,
                _ => {
                    if matches!(cmd, Command::StateAck { .. }) && env.rid.is_none() {
                        return;
                    }
                    let r = Refusal::new(ErrorCode::NotInRoom, format!("not in room {room_id:?}"));
                    return refuse(cx, to, env.rid, Some(room_id), &r);
                }
            };
            if home == cx.eng.id {
                let Some(&rk) = cx.rooms.by_id.get(room_id) else {
                    let r = Refusal::new(ErrorCode::RoomNotFound, "room is gone");
                    return refuse(cx, to, env.rid, Some(room_id), &r);
                };
                room_input(cx, rk, to, env, cmd, now);
            } else {
                let bytes = original.unwrap_or_default();
                let room_id: Arc<str> = Arc::from(room_id);
                let msg = Mesh::RemoteInput {
                    from: key,
                    room_id,
                    codec: to.codec,
                    bytes,
                };
                cx.post(home, msg);
            }
        }
    }
}

/// Rooms-dialect mesh messages.
fn handle_mesh<H: Host>(cx: &mut Cx<'_, H>, from: ShardId, msg: Mesh, now: u64) {
    match msg {
        Mesh::RemoteJoin(rj) => {
            let at = SessionAt {
                shard: from,
                key: rj.from,
            };
            let join = rj.join.clone();
            join_member(cx, at, Some(&rj), join, now);
        }
        Mesh::JoinResult {
            session,
            room_id,
            ok,
            rid,
        } => {
            let Some(client) = cx.client_mut(session) else {
                if ok {
                    let msg = Mesh::RemoteLeave {
                        from: session,
                        room_id,
                        rid: None,
                    };
                    cx.post(from, msg);
                }
                return;
            };
            if let Some(rid) = rid {
                client.answered(&rid);
            }
            let still_wanted = client.memberships.iter_mut().find(|m| m.room_id == room_id);
            match (ok, still_wanted) {
                (true, Some(m)) => m.joined = true,
                (true, None) => cx.post(
                    from,
                    Mesh::RemoteLeave {
                        from: session,
                        room_id,
                        rid: None,
                    },
                ),
                (false, _) => client.forget(&room_id),
            }
        }
        Mesh::RemoteLeave {
            from: key,
            room_id,
            rid,
        } => {
            let at = SessionAt { shard: from, key };
            leave_here(cx, at, &room_id, rid.as_deref(), now);
        }
        Mesh::RemoteInput {
            from: key,
            room_id,
            codec,
            bytes,
        } => {
            let to = ReplyTo {
                at: SessionAt { shard: from, key },
                codec,
            };
            let mut bytes = bytes.into_vec();
            // The sending shard validated the frame already.
            let decoded = cx.eng.decoder.decode(codec, &mut bytes);
            if let Ok(value) = decoded {
                if let Ok(env) = decode::envelope(&value) {
                    if let Ok(cmd) = decode::command(&env, &cx.eng.cfg.policy.unreliable_types) {
                        match cx.rooms.by_id.get(&room_id) {
                            Some(&rk) => room_input(cx, rk, to, &env, cmd, now),
                            None => {
                                let r = Refusal::new(ErrorCode::RoomNotFound, "room is gone");
                                refuse(cx, to, env.rid, Some(&room_id), &r);
                            }
                        }
                    }
                }
            }
        }
        Mesh::RemotePresence {
            from: key,
            room_id,
            presence,
            codec,
            features,
        } => {
            if let Some(&rk) = cx.rooms.by_id.get(&room_id) {
                let at = SessionAt { shard: from, key };
                resume::remote_presence(cx, rk, at, presence, codec, features);
            }
        }
        Mesh::Matchmaking(msg) => matchmaking::handle(cx, from, *msg, now),
        Mesh::ResumeProbe { from: key } => cx.post(from, Mesh::ResumeProbeAck { session: key }),
        Mesh::ResumeProbeAck { session } => resume::probe_answered(cx, session, now),
        Mesh::Parked { session_id, at } => match at {
            Some(shard) => {
                cx.rooms.parked.insert(session_id, shard);
            }
            None => {
                cx.rooms.parked.remove(&session_id);
            }
        },
        Mesh::Directory { room_id, listing } => match listing {
            Some(l) => {
                cx.rooms.directory.insert(room_id, l);
            }
            None => {
                cx.rooms.directory.remove(&room_id);
            }
        },
    }
}
