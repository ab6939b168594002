//! The sans-IO shard core: one shard's [`Engine`] (sessions' transport side, queues,
//! limits, timers, moves, metrics) and its [`Dialect`] set, and the order in which a turn
//! runs them ([`ShardCore::turn`], written once for the reactor and the simulator). It
//! takes `now` (ms) and its RNG seed from outside and never touches sockets, threads or
//! the clock. It knows no dialect: what a message means is the dialect's, behind the seam
//! in [`dialect`].

pub mod bucket;
pub mod dialect;
pub mod engine;
pub mod iprate;
pub mod keys;
pub mod outbound;
pub mod session;
pub mod timers;

use std::sync::Arc;

use rand::{Rng, SeedableRng};

use crate::codec::frame;
use crate::config::Config;
use crate::metrics::{DropReason, ShardMetrics};
pub use dialect::{
    AfterClose, CloseReason, Dialect, HttpGet, HttpRefusal, HttpReply, Message, Routed, Upgrade,
};
use engine::{Due, PendingClose};
pub use engine::{Engine, MeshMsg, Moved, Recipient};
pub use keys::{home_shard, GenSlab, SessionAt, SessionKey, ShardId};
use session::{Phase, Session};

/// How often the tick runs (liveness sweep, the dialects' `handle_tick`).
pub const TICK_MS: u64 = 100;

/// One shard: the engine and the dialects.
pub struct ShardCore<D: Dialect> {
    /// What every dialect uses.
    pub engine: Engine<D>,
    /// The dialects' shard state.
    pub dialect: D,
    /// Reused list of sessions to write.
    writes: Vec<SessionKey>,
}

/// The RNG seed of shard `shard` in a run seeded with `seed` (a fixed seed reproduces a
/// run; the server draws one from the OS when the configuration says 0).
pub fn shard_seed(seed: u64, shard: ShardId) -> [u8; 32] {
    rand::rngs::StdRng::seed_from_u64(seed.wrapping_add(u64::from(shard.0))).gen()
}

/// What runs a shard: the reactor with sockets, the simulator in memory. The order of a
/// turn is [`ShardCore::turn`]'s; the driver supplies the IO each step needs.
pub trait Driver<D: Dialect> {
    /// Delivers what other shards sent since the last call (at most a batch): a moved
    /// session through [`ShardCore::handle_adopt`] once its transport is registered,
    /// anything else through [`ShardCore::handle_mesh`].
    fn receive_mesh(&mut self, core: &mut ShardCore<D>, now: u64);
    /// Reads a connection whose reads were held and may go on.
    fn read(&mut self, core: &mut ShardCore<D>, key: SessionKey, now: u64);
    /// The connection of session `old` belongs to `new` now (a take-over).
    fn rekey(&mut self, core: &ShardCore<D>, old: SessionKey, new: SessionKey);
    /// Hands a session to shard `to`: takes it out of the core
    /// ([`ShardCore::take_session`]) and sends it with its transport.
    fn move_session(&mut self, core: &mut ShardCore<D>, key: SessionKey, to: ShardId);
    /// Sends a message to another shard.
    fn post(&mut self, to: ShardId, msg: MeshMsg<D>);
    /// Writes (or holds, for a flush interval) the queued frames of these sessions, each
    /// taken with [`ShardCore::session_to_flush`]. A driver may read what arrives
    /// meanwhile ([`ShardCore::settle_input`] after it): its frames ride in the writes
    /// not yet made.
    fn write(&mut self, core: &mut ShardCore<D>, keys: &[SessionKey], now: u64);
}

impl<D: Dialect> ShardCore<D> {
    /// A shard core. `seed` seeds its RNG (see [`shard_seed`]); `unix_base_ms` is the
    /// unix time at `now = 0`.
    pub fn new(
        id: ShardId,
        shards: usize,
        cfg: Arc<Config>,
        metrics: Arc<ShardMetrics>,
        dialect: D,
        seed: [u8; 32],
        unix_base_ms: u64,
    ) -> Self {
        ShardCore {
            engine: Engine::new(id, shards, cfg, metrics, seed, unix_base_ms),
            dialect,
            writes: Vec::new(),
        }
    }

    /// A shard core with its dialects built for it (`shared` is [`Dialect::shared`], once
    /// per server) and its counters created.
    pub fn build(
        id: ShardId,
        shards: usize,
        cfg: Arc<Config>,
        shared: &Arc<D::Shared>,
        seed: [u8; 32],
        unix_base_ms: u64,
    ) -> Self {
        let dialect = D::new(id, shards, &cfg, shared);
        let metrics = Arc::new(ShardMetrics::new(dialect.metrics()));
        ShardCore::new(id, shards, cfg, metrics, dialect, seed, unix_base_ms)
    }

    /// A lone shard (shard 0 of 1) on `cfg`, its RNG seeded from `cfg.seed` (1 when it is
    /// 0), at unix time 1,700,000,000,000 ms: for tests and benches that drive one core.
    pub fn alone(cfg: Config) -> Self {
        let cfg = Arc::new(cfg);
        let shared = Arc::new(D::shared(&cfg));
        let seed = shard_seed(cfg.seed.max(1), ShardId(0));
        ShardCore::build(ShardId(0), 1, cfg, &shared, seed, 1_700_000_000_000)
    }

    /// This shard.
    pub fn id(&self) -> ShardId {
        self.engine.id
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.engine.cfg
    }

    /// This shard's counters.
    pub fn metrics(&self) -> &Arc<ShardMetrics> {
        &self.engine.metrics
    }

    /// Picks the dialect of a WebSocket upgrade.
    pub fn route(
        &mut self,
        upgrade: &Upgrade<'_>,
        now: u64,
    ) -> Result<Routed<D::Route>, HttpRefusal> {
        self.dialect.route(&mut self.engine, upgrade, now)
    }

    /// A plain `GET` of a path the engine does not serve: a dialect's reply, or `None`.
    pub fn http_get(&mut self, get: &HttpGet<'_>, now: u64) -> Option<HttpReply> {
        self.dialect.http_get(&mut self.engine, get, now)
    }

    /// A new connection finished its WebSocket upgrade on `route`: `response` (the HTTP 101, empty when there is none to write) goes out first, then
    /// anything the dialect sends as the session opens.
    pub fn handle_open(
        &mut self,
        transport: usize,
        route: D::Route,
        response: &[u8],
        now: u64,
    ) -> SessionKey {
        let key = self.engine.insert(transport, D::session(&route), now);
        self.push_raw(key, response);
        self.dialect.handle_open(&mut self.engine, key, route, now);
        self.run_closes(now);
        key
    }

    /// A ping or pong (or any frame) arrived: the connection is alive.
    pub fn handle_activity(&mut self, key: SessionKey, now: u64) {
        if let Some(s) = self.engine.sessions.get_mut(key) {
            s.last_rx_ms = now;
            s.pinged = false;
        }
    }

    /// A complete text or binary message arrived; it goes to the session's dialect unless
    /// the session is closing.
    pub fn handle_message(&mut self, key: SessionKey, message: Message<'_>, now: u64) {
        self.handle_activity(key, now);
        ShardMetrics::add(&self.engine.metrics.frames_in, 1);
        ShardMetrics::add(&self.engine.metrics.bytes_in, message.bytes.len() as u64);
        if !self.engine.session(key).is_some_and(Session::is_open) {
            return;
        }
        self.dialect
            .handle_message(&mut self.engine, key, message, now);
        self.run_closes(now);
    }

    /// The client sent a close frame (the driver queued the reply): the session's dialect
    /// hears it now; the socket closes once the reply is written.
    pub fn handle_peer_close(&mut self, key: SessionKey, code: u16, now: u64) {
        let Some(s) = self.engine.sessions.get_mut(key) else {
            return;
        };
        if s.phase != Phase::Open {
            return;
        }
        s.phase = Phase::Closing {
            then: AfterClose::Gone,
        };
        self.engine.mark_dirty(key);
        let then = self
            .dialect
            .handle_close(&mut self.engine, key, CloseReason::Client(code), now);
        self.set_after_close(key, then);
        self.run_closes(now);
    }

    /// The connection is gone (EOF, error, or closed after the close frames): the session
    /// ends, or is parked if its dialect said so.
    pub fn handle_disconnect(&mut self, key: SessionKey, now: u64) {
        let Some(s) = self.engine.sessions.get(key) else {
            return;
        };
        let then = match s.phase {
            Phase::Parked { .. } => return,
            Phase::Closing { then } => then,
            Phase::Open => {
                self.dialect
                    .handle_close(&mut self.engine, key, CloseReason::Dropped, now)
            }
        };
        ShardMetrics::sub(&self.engine.metrics.connections, 1);
        match then {
            AfterClose::Park { until_ms } => self.engine.park(key, until_ms),
            AfterClose::Gone => self.end_session(key, now),
        }
        self.run_closes(now);
    }

    /// Closes a session with a WebSocket close code (the driver's protocol errors).
    pub fn close_session(&mut self, key: SessionKey, code: u16, reason: &str, now: u64) {
        self.engine.close(key, code, reason);
        self.run_closes(now);
    }

    /// Due timers, then every `TICK_MS` the liveness sweep and the dialects' tick.
    pub fn handle_tick(&mut self, now: u64) {
        while let Some(due) = self.engine.timers.pop_due(now) {
            match due {
                Due::Parked(key) => self.expire_parked(key, now),
                Due::Dialect(timer) => self.dialect.handle_timer(&mut self.engine, timer, now),
            }
            self.run_closes(now);
        }
        if now < self.engine.last_tick_ms + TICK_MS {
            return;
        }
        self.engine.last_tick_ms = now.max(1);
        self.engine.sweep_sessions(now);
        self.dialect.handle_tick(&mut self.engine, now);
        self.run_closes(now);
    }

    /// The next time `handle_tick` has work due (for the driver's poll timeout).
    pub fn next_deadline(&self) -> u64 {
        let tick = self.engine.last_tick_ms + TICK_MS;
        self.engine.timers.next_due().map_or(tick, |t| t.min(tick))
    }

    /// The end of a turn: the dialects send what they batch per turn.
    pub fn end_turn(&mut self, now: u64) {
        self.dialect.end_turn(&mut self.engine, now);
        self.run_closes(now);
    }

    /// A message from another shard. `Adopt` must go to [`ShardCore::handle_adopt`]
    /// (with the transport the driver registered).
    pub fn handle_mesh(&mut self, from: ShardId, msg: MeshMsg<D>, now: u64) {
        match msg {
            MeshMsg::Adopt(_) => unreachable!("the driver adopts sessions with their transport"),
            MeshMsg::Deliver { to, frame, class } => {
                for key in to {
                    if self.engine.sessions.get(key).is_some() {
                        self.engine.send(key, frame.clone(), class);
                    } else {
                        self.engine.metrics.dropped(DropReason::StaleSession);
                    }
                }
            }
            MeshMsg::Dialect(msg) => self.dialect.handle_mesh(&mut self.engine, from, msg, now),
        }
        self.run_closes(now);
    }

    /// Takes over a session moved here; returns its key. Its dialect hears of it.
    pub fn handle_adopt(
        &mut self,
        mut session: Session<D::Session>,
        from: SessionAt,
        transport: usize,
        now: u64,
    ) -> SessionKey {
        session.transport = transport;
        session.dirty = false;
        session.moving = false;
        let has_output = !session.out.is_empty();
        ShardMetrics::add(&self.engine.metrics.connections, 1);
        let key = self.engine.sessions.insert(session);
        if has_output {
            self.engine.mark_dirty(key);
        }
        self.dialect
            .handle_arrival(&mut self.engine, key, from, now);
        self.run_closes(now);
        key
    }

    /// Removes a session that is moving to another shard; the caller sends it on in a
    /// [`Moved`] that says where it was.
    pub fn take_session(&mut self, key: SessionKey) -> Option<Session<D::Session>> {
        let s = self.engine.sessions.remove(key)?;
        ShardMetrics::sub(&self.engine.metrics.connections, 1);
        ShardMetrics::add(&self.engine.metrics.moves_out, 1);
        Some(s)
    }

    /// Queues bytes the WebSocket layer wrote itself (a pong, the reply to a close) for a
    /// session, in order with its other frames.
    pub fn push_raw(&mut self, key: SessionKey, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.engine.push_final(key, Arc::new(bytes.to_vec()));
        }
    }

    /// Closes every session with 1001 (server shutting down).
    pub fn begin_shutdown(&mut self, now: u64) {
        let keys: Vec<SessionKey> = self.engine.sessions.keys().collect();
        for key in keys {
            self.engine.close(key, 1001, "server shutting down");
        }
        self.run_closes(now);
    }

    /// Sessions with frames to write or a close to finish, since the last call. A key
    /// stays marked (its session is not listed again) until the caller takes the session
    /// with [`ShardCore::session_to_flush`]; frames queued before that ride along. The
    /// sessions are not touched here: at a wide room that is one cache miss per member
    /// saved, the writer visits each one anyway.
    pub fn drain_dirty(&mut self, into: &mut Vec<SessionKey>) {
        into.append(&mut self.engine.dirty);
    }

    /// Connections whose session key changed (a take-over), since the last call.
    pub fn drain_rekeys(&mut self, into: &mut Vec<(SessionKey, SessionKey)>) {
        into.append(&mut self.engine.rekeys);
    }

    /// A session whose outbound queue the caller is about to write (or to hold for its
    /// flush interval); its next frame lists it in [`ShardCore::drain_dirty`] again.
    pub fn session_to_flush(&mut self, key: SessionKey) -> Option<&mut Session<D::Session>> {
        let session = self.engine.sessions.get_mut(key)?;
        session.dirty = false;
        Some(session)
    }

    /// A session.
    pub fn session(&self, key: SessionKey) -> Option<&Session<D::Session>> {
        self.engine.sessions.get(key)
    }

    /// Live sessions on this shard (parked ones included).
    pub fn session_count(&self) -> usize {
        self.engine.sessions.len()
    }

    /// One turn, once the driver has fed this poll's input (opens, messages, closes):
    /// 1. what other shards sent (sessions moving here, dialect messages),
    /// 2. connections whose held reads may go on are read,
    /// 3. due timers and the tick,
    /// 4. the dialects' end of turn (what they batch per turn),
    /// 5. outputs: take-overs, then moves and messages to other shards in the order they
    ///    were asked for, then writes.
    pub fn turn(&mut self, driver: &mut impl Driver<D>, now: u64) {
        driver.receive_mesh(self, now);
        self.read_resumed(driver, now);
        self.handle_tick(now);
        self.end_turn(now);
        self.drain_outputs(driver, now);
    }

    /// After input read within a turn (between writes): held reads that may go on, then
    /// the dialects' end of turn, so what they produced joins the writes still to come.
    pub fn settle_input(&mut self, driver: &mut impl Driver<D>, now: u64) {
        self.read_resumed(driver, now);
        self.end_turn(now);
    }

    /// Step 5 of a turn: until nothing is left, take-overs reach the driver, moving
    /// sessions leave (their frames go with them), messages go to other shards, and the
    /// dirty sessions are written.
    pub fn drain_outputs(&mut self, driver: &mut impl Driver<D>, now: u64) {
        let mut writes = std::mem::take(&mut self.writes);
        loop {
            let rekeys = std::mem::take(&mut self.engine.rekeys);
            for (old, new) in rekeys {
                driver.rekey(self, old, new);
            }
            // In the order they were asked for: to one shard, a message posted before a
            // move is handled there before the session arrives, and one after, after.
            let mut out = std::mem::take(&mut self.engine.out);
            for o in out.drain(..) {
                match o {
                    // A session closed since it asked to move stays to finish its close here.
                    engine::Out::Move(key, to) => match self.engine.sessions.get_mut(key) {
                        Some(s) if s.is_open() => driver.move_session(self, key, to),
                        Some(s) => s.moving = false,
                        None => {}
                    },
                    engine::Out::Post(to, msg) => driver.post(to, msg),
                }
            }
            if self.engine.out.is_empty() {
                self.engine.out = out;
            }
            writes.append(&mut self.engine.dirty);
            if writes.is_empty() {
                break;
            }
            driver.write(self, &writes, now);
            writes.clear();
        }
        self.writes = writes;
    }

    fn read_resumed(&mut self, driver: &mut impl Driver<D>, now: u64) {
        while !self.engine.rereads.is_empty() {
            let keys = std::mem::take(&mut self.engine.rereads);
            for key in keys {
                driver.read(self, key, now);
            }
        }
    }

    /// Tells the dialects of closes asked for while the last event was handled (a close
    /// may come mid-fan-out), after an overflowing session's last frames are queued.
    fn run_closes(&mut self, now: u64) {
        while let Some(PendingClose { key, overflow }) = self.engine.closing.pop() {
            if overflow {
                if let Some(frame) = self.dialect.overflow_frame(&mut self.engine, key) {
                    self.engine.push_final(key, frame);
                }
                self.engine
                    .push_final(key, frame::close(1008, "slow_consumer"));
            }
            let then = self
                .dialect
                .handle_close(&mut self.engine, key, CloseReason::Server, now);
            self.set_after_close(key, then);
        }
    }

    fn set_after_close(&mut self, key: SessionKey, after: AfterClose) {
        if let Some(s) = self.engine.sessions.get_mut(key) {
            if let Phase::Closing { then } = &mut s.phase {
                *then = after;
            }
        }
    }

    /// A parked session's deadline passed (unless a new connection took it over since).
    fn expire_parked(&mut self, key: SessionKey, now: u64) {
        let due = self
            .engine
            .sessions
            .get(key)
            .is_some_and(|s| matches!(s.phase, Phase::Parked { until_ms } if until_ms <= now));
        if due {
            self.end_session(key, now);
        }
    }

    fn end_session(&mut self, key: SessionKey, now: u64) {
        self.dialect.handle_end(&mut self.engine, key, now);
        self.engine.sessions.remove(key);
    }
}

#[cfg(test)]
mod tests;
