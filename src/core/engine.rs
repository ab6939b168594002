//! The engine's half of a shard: what every dialect uses and none owns — the sessions'
//! transport side, outbound queues and their policy, rate buckets, the frame pool, the
//! dirty list, moves, take-overs, the timer heap, messages to other shards, metrics, the
//! RNG. Dialect hooks are handed `&mut Engine` and act through its methods; nothing here
//! knows what a message means.

use std::any::Any;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use smallvec::SmallVec;

use super::bucket::{TokenBucket, Verdict};
use super::dialect::{AfterClose, Dialect};
use super::keys::{GenSlab, SessionAt, SessionKey, ShardId};
use super::outbound::{Class, Pushed};
use super::session::{Phase, Session};
use super::timers::Timers;
use crate::codec::{frame, Codec, Decoder, Frame, Writer};
use crate::config::Config;
use crate::metrics::{DropReason, ShardMetrics};

/// Messages between shards: the engine's own, and one variant for the dialects'.
pub enum MeshMsg<D: Dialect> {
    /// Take over a session (it moves to the receiver; see [`Engine::request_move`]).
    Adopt(Box<Moved<D>>),
    /// Queue a frame for sessions of the receiver (a fan-out on the sender reaching
    /// members that live on the receiver).
    Deliver {
        /// Recipients on the receiving shard.
        to: SmallVec<[SessionKey; 8]>,
        /// The frame, encoded once.
        frame: Frame,
        /// Reliable or not.
        class: Class,
    },
    /// A dialect's own message.
    Dialect(D::Mesh),
}

/// What leaves a shard at the end of its turn.
pub(super) enum Out<D: Dialect> {
    /// A session moves to a shard.
    Move(SessionKey, ShardId),
    /// A message to a shard.
    Post(ShardId, MeshMsg<D>),
}

/// A session handed from one shard to another: its record (dialect state and outbound
/// queue included), where it was, and its transport.
pub struct Moved<D: Dialect> {
    /// The session record.
    pub session: Session<D::Session>,
    /// Where it was.
    pub from: SessionAt,
    /// The driver's transport (socket and WebSocket context); opaque to the core.
    pub transport: Box<dyn Any + Send>,
}

/// Someone a fan-out delivers to: where its session lives and the codec of its frames.
pub trait Recipient {
    /// Its session.
    fn at(&self) -> SessionAt;
    /// The codec frames to it are written in.
    fn codec(&self) -> Codec;
}

/// What the timer heap holds: the engine's own deadlines and the dialects' timers.
pub(super) enum Due<T> {
    /// A parked session's deadline.
    Parked(SessionKey),
    /// A dialect's timer.
    Dialect(T),
}

/// A close the dialect has not heard of yet (it may have been asked for mid-fan-out).
pub(super) struct PendingClose {
    pub key: SessionKey,
    /// The close is a reliable queue's overflow: the dialect's overflow frame goes first.
    pub overflow: bool,
}

/// Remote recipients of one frame on one shard.
type RemoteBatch = (ShardId, Frame, SmallVec<[SessionKey; 8]>);

/// Members whose session records a fan-out loads together before queueing to them.
const WARM_MEMBERS: usize = 16;
/// Encodings one fan-out may need (codec × features a dialect tells apart).
pub const FAN_OUT_VARIANTS_MAX: usize = 8;
/// A session that sent nothing for this long gives back its emptied outbound queue's
/// slots: idle connections hold no queue memory, busy ones keep reusing theirs.
const QUIET_RELEASE_MS: u64 = 1_000;

/// The engine's state of one shard.
pub struct Engine<D: Dialect> {
    /// This shard.
    pub id: ShardId,
    /// Shards in the server.
    pub shards: usize,
    /// The configuration.
    pub cfg: Arc<Config>,
    /// This shard's counters.
    pub metrics: Arc<ShardMetrics>,
    /// Reused decode state (simd-json's buffers and tape) for any dialect's frames.
    pub decoder: Decoder,
    /// Reused frame encoding buffer.
    pub scratch: Vec<u8>,
    /// The shard's RNG (ids, secrets), seeded by whoever built the shard.
    pub rng: StdRng,
    pub(super) sessions: GenSlab<Session<D::Session>>,
    /// Sessions with frames to write, each listed once until the writer takes it.
    pub(super) dirty: Vec<SessionKey>,
    /// Moves and messages to other shards, in the order they were asked for.
    pub(super) out: Vec<Out<D>>,
    /// Sessions whose held reads may go on: their connections are read again.
    pub(super) rereads: Vec<SessionKey>,
    /// Connections whose session changed (a take-over): (old key, new key).
    pub(super) rekeys: Vec<(SessionKey, SessionKey)>,
    /// Closes the dialect has yet to hear of.
    pub(super) closing: Vec<PendingClose>,
    pub(super) timers: Timers<Due<D::Timer>>,
    /// Broadcast frame buffers, reused once written.
    frame_pool: frame::FramePool,
    /// Unix time (ms) at `now = 0`.
    unix_base_ms: u64,
    pub(super) last_tick_ms: u64,
}

impl<D: Dialect> Engine<D> {
    pub(super) fn new(
        id: ShardId,
        shards: usize,
        cfg: Arc<Config>,
        metrics: Arc<ShardMetrics>,
        seed: [u8; 32],
        unix_base_ms: u64,
    ) -> Self {
        Engine {
            id,
            shards,
            cfg,
            metrics,
            decoder: Decoder::default(),
            scratch: Vec::with_capacity(4096),
            rng: StdRng::from_seed(seed),
            sessions: GenSlab::default(),
            dirty: Vec::new(),
            out: Vec::new(),
            rereads: Vec::new(),
            rekeys: Vec::new(),
            closing: Vec::new(),
            timers: Timers::default(),
            frame_pool: Default::default(),
            unix_base_ms,
            last_tick_ms: 0,
        }
    }

    /// A session.
    pub fn session(&self, key: SessionKey) -> Option<&Session<D::Session>> {
        self.sessions.get(key)
    }

    /// A session, mutably.
    pub fn session_mut(&mut self, key: SessionKey) -> Option<&mut Session<D::Session>> {
        self.sessions.get_mut(key)
    }

    /// Live sessions on this shard (parked ones included).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// A session of this shard as an address other shards can use.
    pub fn here(&self, key: SessionKey) -> SessionAt {
        SessionAt {
            shard: self.id,
            key,
        }
    }

    pub(super) fn insert(&mut self, transport: usize, dialect: D::Session, now: u64) -> SessionKey {
        let limits = &self.cfg.limits;
        let session = Session {
            phase: Phase::Open,
            dirty: false,
            pinged: false,
            moving: false,
            paused: false,
            out: Default::default(),
            transport,
            last_rx_ms: now,
            bucket: TokenBucket::new(limits.msgs_per_s, limits.msgs_burst, now),
            dialect,
        };
        ShardMetrics::add(&self.metrics.connections, 1);
        self.sessions.insert(session)
    }

    /// Queues one frame for a local session under the outbound policy: an unreliable
    /// frame past `limits.outbound_congested_bytes` replaces a queued one of its key or
    /// is dropped; a reliable one past `limits.outbound_bytes_max` closes the session
    /// (the dialect's overflow frame, then 1008 `slow_consumer`). Frames for a closing or
    /// parked session are dropped.
    pub fn send(&mut self, key: SessionKey, frame: Frame, class: Class) {
        let limits = &self.cfg.limits;
        let (bytes_max, congested) = (limits.outbound_bytes_max, limits.outbound_congested_bytes);
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        if s.phase != Phase::Open {
            return;
        }
        match s.out.push(frame, class, bytes_max, congested) {
            Pushed::Queued => ShardMetrics::add(&self.metrics.frames_out, 1),
            Pushed::Replaced => self.metrics.dropped(DropReason::Replaced),
            Pushed::Dropped => self.metrics.dropped(DropReason::Congested),
            Pushed::Overflow => {
                s.out.truncate_unstarted();
                s.phase = Phase::Closing {
                    then: AfterClose::Gone,
                };
                self.closing.push(PendingClose {
                    key,
                    overflow: true,
                });
                return;
            }
        }
        self.mark_dirty(key);
    }

    /// Queues one frame for a session wherever it lives (through the mesh when it lives on
    /// another shard).
    pub fn send_to(&mut self, at: SessionAt, frame: Frame, class: Class) {
        if at.shard == self.id {
            self.send(at.key, frame, class);
        } else {
            let msg = MeshMsg::Deliver {
                to: smallvec::smallvec![at.key],
                frame,
                class,
            };
            self.post_engine(at.shard, msg);
        }
    }

    /// Queues one frame per member, each encoded once per encoding variant present (as
    /// `variant` tells members apart), lazily. Members on other shards get the same frame
    /// through one mesh message per shard. `skip` leaves one member out (a sender).
    pub fn fan_out<R: Recipient>(
        &mut self,
        members: &[R],
        class: Class,
        skip: Option<SessionAt>,
        variant: impl Fn(&R) -> usize,
        encode: impl Fn(&mut Writer<'_>, &R),
    ) {
        let mut frames: [Option<Frame>; FAN_OUT_VARIANTS_MAX] = Default::default();
        let mut remote: SmallVec<[RemoteBatch; 2]> = SmallVec::new();
        for (i, m) in members.iter().enumerate() {
            if i % WARM_MEMBERS == 0 {
                // Load the next members' records in one pass: their cache misses overlap
                // instead of each stalling its own queueing (A/B at `fanout`: huddle's
                // own CPU per delivery 0.395 -> 0.375 us, perf-sampled, three runs each).
                for m in members.iter().skip(i).take(WARM_MEMBERS) {
                    let at = m.at();
                    if at.shard == self.id {
                        std::hint::black_box(self.sessions.get(at.key).map(|s| s.dirty));
                    }
                }
            }
            let at = m.at();
            if Some(at) == skip {
                continue;
            }
            let v = variant(m);
            let frame = match &frames[v] {
                Some(f) => f.clone(),
                None => {
                    let mut f = self.frame_pool.take();
                    let buf = Arc::get_mut(&mut f).expect("pooled frames are unique");
                    let mut w = Writer::new(m.codec(), buf);
                    encode(&mut w, m);
                    w.finish_in_place();
                    self.frame_pool.track(&f);
                    frames[v] = Some(f.clone());
                    f
                }
            };
            if at.shard == self.id {
                self.send(at.key, frame, class);
            } else {
                match remote
                    .iter_mut()
                    .find(|(s, f, _)| *s == at.shard && Arc::ptr_eq(f, &frame))
                {
                    Some((_, _, keys)) => keys.push(at.key),
                    None => remote.push((at.shard, frame, smallvec::smallvec![at.key])),
                }
            }
        }
        for (shard, frame, to) in remote {
            self.post_engine(shard, MeshMsg::Deliver { to, frame, class });
        }
    }

    /// Queues a close frame (after anything already queued) and marks the session closing;
    /// its dialect hears of it once the current event is handled. The driver closes the
    /// socket once the frame is written. Only open sessions close this way.
    pub fn close(&mut self, key: SessionKey, code: u16, reason: &str) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        if s.phase != Phase::Open {
            return;
        }
        s.phase = Phase::Closing {
            then: AfterClose::Gone,
        };
        self.push_final(key, frame::close(code, reason));
        self.closing.push(PendingClose {
            key,
            overflow: false,
        });
    }

    /// Queues a frame past the byte bounds and whatever the phase (a session's last frames:
    /// an overflow's error, the close frame).
    pub(super) fn push_final(&mut self, key: SessionKey, frame: Frame) {
        if let Some(s) = self.sessions.get_mut(key) {
            s.out.push(frame, Class::Reliable, usize::MAX, usize::MAX);
            self.mark_dirty(key);
        }
    }

    /// Takes one token of the session's message bucket (`limits.msgs_per_s`); the dialect
    /// decides which messages pay and what a refusal looks like.
    pub fn take_token(&mut self, key: SessionKey, now: u64) -> Verdict {
        match self.sessions.get_mut(key) {
            Some(s) => s.bucket.take(now, crate::limits::ABUSE_FACTOR),
            None => Verdict::Allow,
        }
    }

    /// Sends a dialect message to another shard.
    pub fn post(&mut self, to: ShardId, msg: D::Mesh) {
        self.post_engine(to, MeshMsg::Dialect(msg));
    }

    /// Sends a dialect message to every other shard (replicated directories).
    pub fn post_to_others(&mut self, msg: impl Fn() -> D::Mesh) {
        for i in 0..self.shards {
            let to = ShardId(i as u16);
            if to != self.id {
                self.post(to, msg());
            }
        }
    }

    pub(super) fn post_engine(&mut self, to: ShardId, msg: MeshMsg<D>) {
        debug_assert_ne!(to, self.id, "mesh messages go to other shards");
        self.out.push(Out::Post(to, msg));
    }

    /// Moves a session (socket, WebSocket state and record) to shard `to` at the end of
    /// the turn; its connection is not read here meanwhile. The dialect hears of it
    /// there, in `handle_arrival`. Moves and messages to one shard arrive in the order
    /// they were asked for: what was posted before the move is handled there before
    /// the session arrives.
    pub fn request_move(&mut self, key: SessionKey, to: ShardId) {
        if let Some(s) = self.sessions.get_mut(key) {
            s.moving = true;
            self.out.push(Out::Move(key, to));
        }
    }

    /// Stops reading a session's connection (its dialect waits for something first).
    pub fn pause_reads(&mut self, key: SessionKey) {
        if let Some(s) = self.sessions.get_mut(key) {
            s.paused = true;
        }
    }

    /// Reads a paused session's connection again (what arrived meanwhile is read in this
    /// turn; a session that is moving is read on the shard it moves to).
    pub fn resume_reads(&mut self, key: SessionKey) {
        if let Some(s) = self.sessions.get_mut(key) {
            s.paused = false;
            if !s.moving {
                self.rereads.push(key);
            }
        }
    }

    /// The connection of session `fresh` takes over the parked session `parked`: its
    /// socket, outbound queue and rate bucket go to `parked`, which is open again, and
    /// `fresh` is removed. Returns `fresh`'s dialect state; `None` (and nothing changes)
    /// when `parked` is not parked or `fresh` is gone.
    pub fn take_over(
        &mut self,
        fresh: SessionKey,
        parked: SessionKey,
        now: u64,
    ) -> Option<D::Session> {
        let is_parked = self
            .sessions
            .get(parked)
            .is_some_and(|s| matches!(s.phase, Phase::Parked { .. }));
        if !is_parked || self.sessions.get(fresh).is_none() {
            return None;
        }
        let new = self.sessions.remove(fresh).expect("checked above");
        let s = self.sessions.get_mut(parked).expect("checked above");
        s.transport = new.transport;
        s.out = new.out;
        s.bucket = new.bucket;
        s.last_rx_ms = now;
        s.pinged = false;
        s.moving = false;
        s.paused = false;
        s.phase = Phase::Open;
        s.dirty = false;
        if !s.out.is_empty() {
            self.mark_dirty(parked);
        }
        for key in self.rereads.iter_mut().filter(|k| **k == fresh) {
            *key = parked;
        }
        self.rekeys.push((fresh, parked));
        Some(new.dialect)
    }

    /// Sets a timer: the dialect's `handle_timer` gets `timer` at `due_ms` (or in the first
    /// turn after it).
    pub fn set_timer(&mut self, due_ms: u64, timer: D::Timer) {
        self.timers.set(due_ms, Due::Dialect(timer));
    }

    /// Encodes one frame in `codec` into a pooled buffer (reused once every recipient has
    /// written it): a dialect's replies and forwards allocate nothing in steady state.
    pub fn encode(&mut self, codec: Codec, write: impl FnOnce(&mut Writer<'_>)) -> Frame {
        let mut f = self.frame_pool.take();
        let buf = Arc::get_mut(&mut f).expect("pooled frames are unique");
        let mut w = Writer::new(codec, buf);
        write(&mut w);
        w.finish_in_place();
        self.frame_pool.track(&f);
        f
    }

    /// Fresh random bytes as lowercase hex (ids and secrets).
    pub fn random_hex(&mut self, bytes: usize) -> String {
        let mut raw = vec![0u8; bytes];
        self.rng.fill_bytes(&mut raw);
        raw.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Unix time (ms) of `now`.
    pub fn unix_ms(&self, now: u64) -> u64 {
        self.unix_base_ms + now
    }

    pub(super) fn mark_dirty(&mut self, key: SessionKey) {
        if let Some(s) = self.sessions.get_mut(key) {
            if !s.dirty {
                s.dirty = true;
                self.dirty.push(key);
            }
        }
    }

    /// The connection is gone and the session waits for a new one until `until_ms`.
    pub(super) fn park(&mut self, key: SessionKey, until_ms: u64) {
        if let Some(s) = self.sessions.get_mut(key) {
            s.phase = Phase::Parked { until_ms };
            s.transport = usize::MAX;
            s.out = Default::default();
            s.moving = false;
            s.paused = false;
            self.timers.set(until_ms, Due::Parked(key));
        }
    }

    /// Liveness, every tick: a quiet connection gets a ping, then is closed (1001 "idle");
    /// quiet ones give back their emptied queue's slots.
    pub(super) fn sweep_sessions(&mut self, now: u64) {
        let (idle_ms, ping_ms) = (self.cfg.limits.idle_ms, self.cfg.limits.ping_ms);
        let keys: Vec<SessionKey> = self.sessions.keys().collect();
        for key in keys {
            let Some(s) = self.sessions.get_mut(key) else {
                continue;
            };
            if s.phase != Phase::Open {
                continue;
            }
            let quiet = now.saturating_sub(s.last_rx_ms);
            if quiet >= QUIET_RELEASE_MS {
                s.out.release_if_empty();
            }
            if quiet >= idle_ms {
                self.close(key, 1001, "idle");
            } else if quiet >= ping_ms && !s.pinged {
                s.pinged = true;
                self.send(key, frame::ping(), Class::Reliable);
            }
        }
    }
}
