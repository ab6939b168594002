//! One shard's reactor: the only IO in huddle. A `mio::Poll` loop that accepts on the
//! shard's `SO_REUSEPORT` listener, speaks HTTP until the upgrade, runs tungstenite's
//! WebSocket context over each socket, feeds complete messages to the shard core, moves
//! sessions through the mesh, and writes each connection's frames with one send per turn
//! (turns take in what arrives while they work; see `after_turn`). Protocol decisions are
//! the core's, not this module's.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use tungstenite::error::ProtocolError;
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};
use tungstenite::{Error as WsError, Message};

use crate::core::outbound::IOVECS_MAX;
use crate::core::session::Phase;
use crate::core::{MeshMsg, Moved, SessionKey, ShardCore, ShardId};
use crate::http;
use crate::mesh::MeshPort;
use crate::metrics::ShardMetrics;

const LISTENER: Token = Token(usize::MAX - 1);
/// The token of each shard's mesh waker.
pub const WAKER: Token = Token(usize::MAX - 2);

/// How long a closed connection may take to send its FIN after ours.
const DRAIN_MS: u64 = 2_000;
/// How long accepting pauses after EMFILE/ENFILE, so the loop does not spin.
const ACCEPT_PAUSE_MS: u64 = 100;
/// Mesh messages handled per turn, so one busy peer cannot starve the sockets.
const MESH_BATCH_MAX: usize = 4_096;
/// tungstenite's read buffer per connection.
const READ_BUFFER_BYTES: usize = 256;
/// Connections past a cap that are answered 503 at once (beyond: closed unanswered).
const REFUSING_MAX: usize = 64;
/// Zero-timeout polls after a turn's events, while they return more, before writing.
const REPOLL_MAX: usize = 4;
/// Connections written between two zero-timeout polls while flushing every turn; the
/// gap doubles after each poll that found nothing, up to `FLUSH_CHUNK_MAX`.
const FLUSH_CHUNK: usize = 4;
const FLUSH_CHUNK_MAX: usize = 64;
/// Zero-timeout polls while flushing one turn, so a flood cannot hold the turn open.
const INTERLEAVES_MAX: usize = 256;
/// Connections whose records are loaded together, in one pass, before they are
/// written (see `Shard::warm`).
const WARM_AHEAD: usize = 16;
/// Queued bytes up to which a connection's frames are gathered into one buffer.
const GATHER_BYTES_MAX: usize = 16 * 1024;
/// One `recv` of a WebSocket connection takes up to this much (see `Io::read`).
const RECV_BYTES: usize = 16 * 1024;
/// A connection's carried-over bytes keep their buffer up to this size once emptied.
const CARRY_KEEP_BYTES: usize = 1024;
/// Read size for HTTP heads and for draining.
const READ_CHUNK_BYTES: usize = 4_096;

/// The socket and WebSocket state that travel with a moving session.
struct MovedConn {
    stream: TcpStream,
    ctx: Box<WebSocketContext>,
    carry: Carry,
}

enum ConnState {
    /// Reading the HTTP request head.
    Http { buf: Vec<u8> },
    /// Upgraded. `carry` holds bytes read from the socket that did not fit tungstenite's
    /// buffer (see `Io::read`).
    Ws {
        ctx: Box<WebSocketContext>,
        carry: Carry,
    },
    /// Writing a plain HTTP reply, then closing.
    Reply { bytes: Vec<u8>, written: usize },
    /// Our side is shut; reading until the client's FIN or the deadline.
    Draining { until_ms: u64 },
}

/// One cache line, aligned to one (the slab's slots then never straddle two).
#[repr(align(64))]
struct Conn {
    stream: TcpStream,
    state: ConnState,
    session: Option<SessionKey>,
    /// When the connection was accepted; once `closing_seen`, when a sweep first saw its
    /// session closing with the close frame unwritten.
    since_ms: u64,
    closing_seen: bool,
    /// Registered for WRITABLE too (a write would have blocked).
    wants_write: bool,
    /// In the shard's deferred list.
    deferred: bool,
    /// Accepted past a connection cap only to be answered 503.
    refused: bool,
    /// The last read returned less than asked (see `Io::drained`).
    drained: bool,
}

/// Tungstenite's view of a socket: reads from it; its own writes (pongs, close replies)
/// go to a buffer that the core queues in order with our frames.
struct Io<'a> {
    stream: &'a mut TcpStream,
    out: &'a mut Vec<u8>,
    /// A read returned less than asked: the socket is empty until epoll says otherwise
    /// (edge-triggered epoll reports every new arrival), so the next read would only
    /// return EAGAIN — answer WouldBlock without the syscall.
    drained: &'a mut bool,
    /// Bytes already read that tungstenite has not taken yet (the connection's).
    carry: &'a mut Carry,
    /// The shard's receive buffer.
    scratch: &'a mut [u8],
}

impl Read for Io<'_> {
    /// tungstenite asks for what fits the rest of its buffer, which is often less than
    /// the next message (121 of a 143-byte frame, say): read straight into it and every
    /// such message costs two `recv`s. So one `recv` takes all the socket has (up to the
    /// shard's receive buffer); what did not fit waits in `carry` for tungstenite's next
    /// call, which needs no syscall.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(n) = self.carry.take_into(buf) {
            return Ok(n);
        }
        if *self.drained {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if buf.len() >= self.scratch.len() {
            let n = self.stream.read(buf)?;
            *self.drained = n < buf.len();
            return Ok(n);
        }
        let n = self.stream.read(self.scratch)?;
        *self.drained = n < self.scratch.len();
        let fits = n.min(buf.len());
        buf[..fits].copy_from_slice(&self.scratch[..fits]);
        self.carry.keep(&self.scratch[fits..n]);
        Ok(fits)
    }
}

/// A connection's bytes read but not yet taken by tungstenite; boxed, so a connection
/// that never needs it pays one pointer.
#[derive(Default)]
#[expect(
    clippy::box_collection,
    reason = "a thin pointer keeps `Conn` within one cache line"
)]
struct Carry(Option<Box<Vec<u8>>>);

impl Carry {
    /// Moves carried bytes into `buf`; `None` when there are none.
    fn take_into(&mut self, buf: &mut [u8]) -> Option<usize> {
        let bytes = self.0.as_mut().filter(|b| !b.is_empty())?;
        let n = buf.len().min(bytes.len());
        buf[..n].copy_from_slice(&bytes[..n]);
        bytes.drain(..n);
        if bytes.is_empty() && bytes.capacity() > CARRY_KEEP_BYTES {
            self.0 = None;
        }
        Some(n)
    }

    /// Keeps bytes for tungstenite's next read.
    fn keep(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.0.get_or_insert_default().extend_from_slice(bytes);
        }
    }
}

impl Write for Io<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Everything a shard thread owns.
pub struct Shard {
    id: ShardId,
    poll: Poll,
    listener: TcpListener,
    conns: Slab<Conn>,
    core: ShardCore,
    port: MeshPort,
    ws_config: WebSocketConfig,
    started: Instant,
    shutdown: Arc<AtomicBool>,
    total_conns: Arc<AtomicUsize>,
    all_metrics: Arc<Vec<Arc<ShardMetrics>>>,
    /// This shard's counters (the core's, kept here for the write path).
    metrics: Arc<ShardMetrics>,
    accept_paused_until: Option<u64>,
    /// Reused buffers.
    message: Vec<u8>,
    tung_out: Vec<u8>,
    gather: Vec<u8>,
    scratch: Box<[u8]>,
    dirty: Vec<SessionKey>,
    moves: Vec<(SessionKey, ShardId)>,
    mesh_out: Vec<(ShardId, MeshMsg)>,
    last_sweep_ms: u64,
    /// `limits.flush_interval_us`.
    flush_interval_us: u64,
    /// Connections whose frames wait for their flush interval: (session, due µs).
    deferred: VecDeque<(SessionKey, u64)>,
    /// Connections accepted past a cap to be answered 503 and closed.
    refusing: usize,
}

/// What a shard needs from the server to run.
pub struct ShardParts {
    /// This shard.
    pub id: ShardId,
    /// Its poll (its waker is registered in it under [`WAKER`]).
    pub poll: Poll,
    /// Its `SO_REUSEPORT` listener.
    pub listener: std::net::TcpListener,
    /// Its core.
    pub core: ShardCore,
    /// Its end of the mesh.
    pub port: MeshPort,
    /// Set on SIGINT/SIGTERM.
    pub shutdown: Arc<AtomicBool>,
    /// Connections on all shards.
    pub total_conns: Arc<AtomicUsize>,
    /// Every shard's metrics (for `/metrics`).
    pub all_metrics: Arc<Vec<Arc<ShardMetrics>>>,
}

impl Shard {
    /// Builds a shard from its parts.
    pub fn new(parts: ShardParts) -> io::Result<Self> {
        let mut listener = TcpListener::from_std(parts.listener);
        parts
            .poll
            .registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let limits = parts.core.config().limits.clone();
        let mut ws_config = WebSocketConfig::default();
        // tungstenite keeps this much per connection even when idle; a game message with
        // its envelope fits in one read, and bigger frames reserve their own length.
        ws_config.read_buffer_size = READ_BUFFER_BYTES;
        ws_config.write_buffer_size = 0;
        ws_config.max_write_buffer_size = 64 * 1024;
        ws_config.max_message_size = Some(limits.declared_bytes_max());
        ws_config.max_frame_size = Some(limits.declared_bytes_max());
        let metrics = parts.core.metrics.clone();
        Ok(Shard {
            id: parts.id,
            poll: parts.poll,
            listener,
            conns: Slab::new(),
            core: parts.core,
            port: parts.port,
            ws_config,
            started: Instant::now(),
            shutdown: parts.shutdown,
            total_conns: parts.total_conns,
            all_metrics: parts.all_metrics,
            metrics,
            accept_paused_until: None,
            message: Vec::new(),
            tung_out: Vec::new(),
            gather: Vec::with_capacity(GATHER_BYTES_MAX),
            scratch: vec![0; RECV_BYTES].into_boxed_slice(),
            dirty: Vec::new(),
            moves: Vec::new(),
            mesh_out: Vec::new(),
            last_sweep_ms: 0,
            flush_interval_us: limits.flush_interval_us,
            deferred: VecDeque::new(),
            refusing: 0,
        })
    }

    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn now_us(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    /// Until the next timer of the core, deferred flush or mesh retry, at most a tick.
    fn poll_timeout(&mut self) -> Duration {
        if self.port_has_backlog() {
            return Duration::from_millis(1);
        }
        let now_us = self.now_us();
        let core_due_us = self.core.next_deadline().saturating_mul(1000);
        let flush_due_us = self.deferred.front().map_or(u64::MAX, |&(_, at)| at);
        let due_us = core_due_us.min(flush_due_us).saturating_sub(now_us);
        Duration::from_micros(due_us.clamp(100, crate::core::TICK_MS * 1000))
    }

    /// Runs until shutdown, then closes every client with 1001.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut shutdown_deadline: Option<u64> = None;
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(shard = self.id.0, "poll failed: {e}");
                    return;
                }
            }
            let now = self.now();
            self.handle_events(&events, now);
            // Whatever arrived while those were read joins this turn before anything is
            // written: its frames share the members' writes (a poll costs far less than a
            // write), and nobody waits for a timer.
            for _ in 0..REPOLL_MAX {
                if events.is_empty() || !self.poll_now(&mut events) {
                    break;
                }
                self.handle_events(&events, now);
            }
            if let Some(until) = self.accept_paused_until {
                if now >= until {
                    self.accept_paused_until = None;
                    self.accept_all(now);
                }
            }
            self.drain_mesh(now);
            self.reread(now);
            self.core.handle_tick(now);
            self.core.end_turn(now);
            if now >= self.last_sweep_ms + 1000 {
                self.last_sweep_ms = now;
                self.sweep(now);
            }
            if self.shutdown.load(Ordering::Relaxed) && shutdown_deadline.is_none() {
                tracing::info!(
                    shard = self.id.0,
                    conns = self.conns.len(),
                    "closing every client with 1001"
                );
                self.core.begin_shutdown();
                shutdown_deadline = Some(now + 1_000);
            }
            self.after_turn(&mut events, now);
            if let Some(deadline) = shutdown_deadline {
                let only_draining = self
                    .conns
                    .iter()
                    .all(|(_, c)| matches!(c.state, ConnState::Draining { .. }));
                if self.conns.is_empty() || only_draining || now >= deadline {
                    return;
                }
            }
        }
    }

    fn handle_events(&mut self, events: &Events, now: u64) {
        for event in events.iter() {
            let Token(t) = event.token();
            self.warm_reader(t);
        }
        for event in events.iter() {
            match event.token() {
                LISTENER => self.accept_all(now),
                WAKER => {}
                Token(t) => {
                    if event.is_readable() || event.is_read_closed() || event.is_error() {
                        self.readable(t, now);
                    }
                    if event.is_writable() {
                        self.writable(t, now);
                    }
                }
            }
        }
    }

    fn port_has_backlog(&mut self) -> bool {
        self.port.retry_backlog()
    }

    /// A poll that does not wait: true when it returned events.
    fn poll_now(&mut self, events: &mut Events) -> bool {
        self.poll.poll(events, Some(Duration::ZERO)).is_ok() && !events.is_empty()
    }

    /// Moves, mesh sends, flushes and wakes: the end of every turn.
    ///
    /// Flushing every turn, the dirty connections are written `FLUSH_CHUNK` at a time
    /// with a poll that does not wait between chunks: messages that arrived meanwhile are
    /// handled first, so their frames ride in the writes of the members not yet written
    /// instead of costing each member a write of its own next turn. Frames per write is
    /// what the kernel charges for (see the README's performance section).
    fn after_turn(&mut self, events: &mut Events, now: u64) {
        let mut chunk = if self.flush_interval_us == 0 {
            FLUSH_CHUNK
        } else {
            usize::MAX
        };
        let mut interleaves = 0;
        let mut dirty = std::mem::take(&mut self.dirty);
        let mut next: usize = 0;
        loop {
            self.core.drain_moves(&mut self.moves);
            let moves = std::mem::take(&mut self.moves);
            for (key, to) in &moves {
                self.move_session(*key, *to);
            }
            self.moves = moves;
            self.moves.clear();
            self.core.drain_mesh(&mut self.mesh_out);
            for (to, msg) in self.mesh_out.drain(..) {
                self.port.send(to, msg);
            }
            self.core.drain_dirty(&mut dirty);
            let end = if interleaves < INTERLEAVES_MAX {
                next.saturating_add(chunk).min(dirty.len())
            } else {
                dirty.len()
            };
            while next < end {
                let warm_end = (next + WARM_AHEAD).min(end);
                self.warm(&dirty[next..warm_end]);
                while next < warm_end {
                    self.flush_or_defer(dirty[next], now);
                    next += 1;
                }
            }
            if next == dirty.len() {
                break;
            }
            interleaves += 1;
            if self.poll_now(events) {
                self.handle_events(events, now);
                self.reread(now);
                self.core.end_turn(now);
                chunk = FLUSH_CHUNK;
            } else {
                // Nothing came: look less often (a wide room written frame by frame pays
                // for no empty polls), yet often enough to catch the next arrival.
                chunk = (chunk * 2).min(FLUSH_CHUNK_MAX);
            }
        }
        dirty.clear();
        self.dirty = dirty;
        self.flush_deferred(now);
        self.port.wake();
    }

    /// Loads what the next writes touch (each session's front line and first queued
    /// frame, its connection) in one pass: the loads are independent, so their cache
    /// misses overlap instead of each stalling its own write. At a wide room every write
    /// is its own `send`, and the kernel's networking evicts these records between two
    /// writes (`hugeroom`: huddle's own code fell from 5.0% to 3.1% of server CPU).
    fn warm(&self, keys: &[SessionKey]) {
        for &key in keys {
            if let Some(session) = self.core.session(key) {
                std::hint::black_box(session.out.front_len());
                if let Some(conn) = self.conns.get(session.transport) {
                    std::hint::black_box(conn.session);
                }
            }
        }
    }

    /// Loads the records reading a connection's next message touches (its tungstenite
    /// context, its session's lines) in one pass, so their cache misses overlap rather
    /// than each stalling in turn (A/B at `fanout`: huddle's own CPU per delivery 0.394 ->
    /// 0.382 µs, perf-sampled, three runs each). Tokens that are not connections find
    /// nothing.
    fn warm_reader(&self, t: usize) {
        let Some(conn) = self.conns.get(t) else {
            return;
        };
        if let ConnState::Ws { ctx, .. } = &conn.state {
            std::hint::black_box(ctx.can_read());
            std::hint::black_box(ctx.get_config().max_frame_size);
        }
        if let Some(session) = conn.session.and_then(|key| self.core.session(key)) {
            std::hint::black_box(session.is_moving());
            std::hint::black_box(session.last_rx_ms);
            std::hint::black_box(session.rooms.as_ref().map(|r| r.codec));
        }
    }

    /// Reads connections the core paused (a resume probe) once they may go on.
    fn reread(&mut self, now: u64) {
        let mut keys = Vec::new();
        self.core.drain_rereads(&mut keys);
        for key in keys {
            if let Some(t) = self.core.session(key).map(|s| s.transport) {
                self.read_ws(t, now);
            }
        }
    }

    /// With `limits.flush_interval_us` > 0 a connection's frames are held for one
    /// interval from the first one queued (a game tick batching its sends), so it is
    /// written at most once per interval; closing connections go at once. Every hold is
    /// the same length, so the deferred queue is in due order.
    fn flush_or_defer(&mut self, key: SessionKey, now: u64) {
        let interval = self.flush_interval_us;
        if interval == 0 {
            return self.flush(key, now);
        }
        let Some(session) = self.core.session_to_flush(key) else {
            return;
        };
        let (t, closing) = (session.transport, session.phase == Phase::Closing);
        let now_us = self.now_us();
        let Some(conn) = self.conns.get_mut(t) else {
            return;
        };
        if closing {
            self.flush(key, now);
        } else if !conn.deferred {
            conn.deferred = true;
            self.deferred.push_back((key, now_us + interval));
        }
    }

    /// Flushes deferred connections whose interval has passed.
    fn flush_deferred(&mut self, now: u64) {
        if self.deferred.is_empty() {
            return;
        }
        let now_us = self.now_us();
        while let Some(&(key, at)) = self.deferred.front() {
            if at > now_us {
                break;
            }
            self.deferred.pop_front();
            let t = self.core.session(key).map(|s| s.transport);
            if let Some(conn) = t.and_then(|t| self.conns.get_mut(t)) {
                if conn.session == Some(key) {
                    conn.deferred = false;
                }
            }
            self.flush(key, now);
        }
    }

    fn accept_all(&mut self, now: u64) {
        if self.accept_paused_until.is_some() {
            return;
        }
        let limits = self.core.config().limits.clone();
        loop {
            match self.listener.accept() {
                Ok((mut stream, addr)) => {
                    let total = self.total_conns.load(Ordering::Relaxed);
                    let full =
                        total >= limits.conns_max || self.conns.len() >= limits.conns_per_shard_max;
                    if full {
                        tracing::debug!(shard = self.id.0, %addr, total, "connection refused: at the connection cap");
                        ShardMetrics::add(&self.core.metrics.refused, 1);
                        if self.refusing >= REFUSING_MAX {
                            // Past the slack for clean refusals: just close.
                            let _ = stream.shutdown(Shutdown::Both);
                            continue;
                        }
                    }
                    let _ = stream.set_nodelay(true);
                    let entry = self.conns.vacant_entry();
                    let token = Token(entry.key());
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, token, Interest::READABLE)
                        .is_err()
                    {
                        continue;
                    }
                    self.total_conns.fetch_add(1, Ordering::Relaxed);
                    tracing::trace!(shard = self.id.0, %addr, "connection accepted");
                    let state = if full {
                        // Answer 503, then close gracefully (reading what the client sent, so
                        // the kernel does not reset the connection before it reads the answer).
                        self.refusing += 1;
                        let body =
                            http::reply(503, "Service Unavailable", "text/plain", b"server full\n");
                        ConnState::Reply {
                            bytes: body,
                            written: 0,
                        }
                    } else {
                        ConnState::Http { buf: Vec::new() }
                    };
                    let t = token.0;
                    entry.insert(Conn {
                        stream,
                        state,
                        session: None,
                        since_ms: now,
                        wants_write: false,
                        closing_seen: false,
                        deferred: false,
                        refused: full,
                        drained: false,
                    });
                    if full {
                        self.write_reply(t, now);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if e.kind() == io::ErrorKind::Interrupted
                        || e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    // EMFILE / ENFILE / ENOBUFS: pause instead of spinning on a ready listener.
                    tracing::warn!(
                        shard = self.id.0,
                        "accept failed ({e}); pausing accepts for {ACCEPT_PAUSE_MS} ms"
                    );
                    self.accept_paused_until = Some(now + ACCEPT_PAUSE_MS);
                    return;
                }
            }
        }
    }

    fn readable(&mut self, t: usize, now: u64) {
        let Some(conn) = self.conns.get_mut(t) else {
            return;
        };
        // A readiness event means new bytes may be there.
        conn.drained = false;
        match conn.state {
            ConnState::Http { .. } => self.read_http(t, now),
            ConnState::Ws { .. } => self.read_ws(t, now),
            ConnState::Reply { .. } => {}
            ConnState::Draining { .. } => self.read_drain(t),
        }
    }

    fn writable(&mut self, t: usize, now: u64) {
        let Some(conn) = self.conns.get_mut(t) else {
            return;
        };
        match (&conn.state, conn.session) {
            (ConnState::Reply { .. }, _) => self.write_reply(t, now),
            (ConnState::Ws { .. }, Some(key)) => self.flush(key, now),
            _ => {}
        }
    }

    fn read_http(&mut self, t: usize, now: u64) {
        let all_metrics = self.all_metrics.clone();
        let conn = &mut self.conns[t];
        let ConnState::Http { buf } = &mut conn.state else {
            return;
        };
        let mut chunk = [0u8; READ_CHUNK_BYTES];
        loop {
            match conn.stream.read(&mut chunk) {
                Ok(0) => return self.remove(t, now),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.remove(t, now),
            }
            if buf.len() > crate::limits::HTTP_HEAD_BYTES_MAX {
                break;
            }
        }
        let parsed = http::parse(buf, || crate::metrics::render(&all_metrics));
        match parsed {
            Ok(None) if buf.len() > crate::limits::HTTP_HEAD_BYTES_MAX => {
                let r = http::reply(
                    431,
                    "Request Header Fields Too Large",
                    "text/plain",
                    b"head too large\n",
                );
                self.start_reply(t, r, now);
            }
            Ok(None) => {}
            Err(reply) => self.start_reply(t, reply, now),
            Ok(Some(http::Request::Reply(reply))) => self.start_reply(t, reply, now),
            Ok(Some(http::Request::Upgrade {
                response,
                route: _,
                head_len,
            })) => {
                let rest = buf.split_off(head_len);
                let ctx = Box::new(WebSocketContext::from_partially_read(
                    rest,
                    Role::Server,
                    Some(self.ws_config),
                ));
                conn.state = ConnState::Ws {
                    ctx,
                    carry: Carry::default(),
                };
                let key = self.core.handle_open(t, now);
                conn.session = Some(key);
                self.core.push_raw(key, &response);
                self.read_ws(t, now);
            }
        }
    }

    fn start_reply(&mut self, t: usize, bytes: Vec<u8>, now: u64) {
        self.conns[t].state = ConnState::Reply { bytes, written: 0 };
        self.write_reply(t, now);
    }

    fn write_reply(&mut self, t: usize, now: u64) {
        let conn = &mut self.conns[t];
        let ConnState::Reply { bytes, written } = &mut conn.state else {
            return;
        };
        while *written < bytes.len() {
            match conn.stream.write(&bytes[*written..]) {
                Ok(n) => *written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let _ = self.set_write_interest(t, true);
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.remove(t, now),
            }
        }
        self.start_drain(t, now);
    }

    fn read_ws(&mut self, t: usize, now: u64) {
        loop {
            let Some(conn) = self.conns.get_mut(t) else {
                return;
            };
            let Some(key) = conn.session else { return };
            // A session waiting to move is not read here: what it sent after its join (or
            // resume) is read on the shard it moves to, after the join. A poll within the
            // same turn (before the move is carried out) must not read it either.
            if self.core.session(key).is_some_and(|s| s.is_moving()) {
                return;
            }
            let ConnState::Ws { ctx, carry } = &mut conn.state else {
                return;
            };
            let mut io = Io {
                stream: &mut conn.stream,
                out: &mut self.tung_out,
                drained: &mut conn.drained,
                carry,
                scratch: &mut self.scratch,
            };
            let result = ctx.read(&mut io);
            if !self.tung_out.is_empty() {
                self.core.push_raw(key, &self.tung_out);
                self.tung_out.clear();
            }
            match result {
                Ok(Message::Text(text)) => {
                    self.message.clear();
                    self.message.extend_from_slice(text.as_bytes());
                    self.core.handle_message(key, &mut self.message, now);
                    self.apply_rekeys();
                }
                Ok(Message::Binary(bytes)) => {
                    self.message.clear();
                    self.message.extend_from_slice(&bytes);
                    self.core.handle_message(key, &mut self.message, now);
                    self.apply_rekeys();
                }
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {
                    self.core.handle_activity(key, now)
                }
                Ok(Message::Close(frame)) => {
                    // tungstenite only queued the close reply: have it written out (into
                    // our buffer, which never blocks) and queue it after our frames.
                    let code = frame.map_or(1005, |f| u16::from(f.code));
                    if let Some(Conn {
                        stream,
                        state: ConnState::Ws { ctx, carry },
                        drained,
                        ..
                    }) = self.conns.get_mut(t)
                    {
                        let mut io = Io {
                            stream,
                            out: &mut self.tung_out,
                            drained,
                            carry,
                            scratch: &mut self.scratch,
                        };
                        let _ = ctx.flush(&mut io);
                    }
                    self.core.push_raw(key, &self.tung_out);
                    self.tung_out.clear();
                    self.core.handle_activity(key, now);
                    self.core.handle_peer_close(key, code, now);
                    return;
                }
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(WsError::Capacity(_)) => {
                    return self.core.close_session(key, 1009, "message too big")
                }
                Err(WsError::Utf8(_)) => {
                    return self.core.close_session(key, 1007, "invalid UTF-8")
                }
                // The peer vanished without a close frame: a drop, not a protocol breach
                // (the session is parked for a resume).
                Err(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => {
                    return self.remove(t, now)
                }
                Err(WsError::Protocol(_)) => {
                    return self.core.close_session(key, 1002, "protocol error")
                }
                Err(_) => return self.remove(t, now),
            }
            let Some(key) = self.conns.get(t).and_then(|c| c.session) else {
                return;
            };
            match self.core.session(key) {
                None => return,
                Some(s) if s.phase == Phase::Closing => return,
                Some(_) => {}
            }
        }
    }

    /// A resume handed a connection to the parked session it resumed.
    fn apply_rekeys(&mut self) {
        let mut rekeys = Vec::new();
        self.core.drain_rekeys(&mut rekeys);
        for (old, new) in rekeys {
            let Some(t) = self.core.session(new).map(|s| s.transport) else {
                continue;
            };
            if let Some(conn) = self.conns.get_mut(t) {
                if conn.session == Some(old) {
                    conn.session = Some(new);
                }
            }
        }
    }

    fn read_drain(&mut self, t: usize) {
        let conn = &mut self.conns[t];
        let mut chunk = [0u8; READ_CHUNK_BYTES];
        loop {
            match conn.stream.read(&mut chunk) {
                Ok(0) => return self.remove(t, 0),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.remove(t, 0),
            }
        }
    }

    /// Writes a session's queued frames: one gathered send (or, past `GATHER_BYTES_MAX`,
    /// one vectored write) per round, until the queue is empty or the socket would block.
    fn flush(&mut self, key: SessionKey, now: u64) {
        let Some(session) = self.core.session_to_flush(key) else {
            return;
        };
        let t = session.transport;
        let Some(conn) = self.conns.get_mut(t) else {
            return;
        };
        if conn.session != Some(key) {
            return;
        }
        let mut blocked = false;
        while !session.out.is_empty() {
            // Small frames are copied into one buffer: a plain send of contiguous bytes
            // costs the kernel less than a vectored write of many small pieces.
            let result = if session.out.bytes() <= GATHER_BYTES_MAX {
                self.gather.clear();
                session.out.gather_into(&mut self.gather);
                conn.stream.write(&self.gather)
            } else {
                let mut slices = [IoSlice::new(&[]); IOVECS_MAX];
                let n = session.out.slices(&mut slices);
                conn.stream.write_vectored(&slices[..n])
            };
            match result {
                Ok(0) => return self.disconnect(t, now),
                Ok(written) => {
                    session.out.advance(written);
                    ShardMetrics::add(&self.metrics.bytes_out, written as u64);
                    ShardMetrics::add(&self.metrics.writes, 1);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    blocked = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.disconnect(t, now),
            }
        }
        let closing = session.phase == Phase::Closing;
        if blocked != self.conns[t].wants_write {
            let _ = self.set_write_interest(t, blocked);
        }
        if !blocked && closing {
            self.core.handle_disconnect(key, now);
            self.conns[t].session = None;
            self.start_drain(t, now);
        }
    }

    fn set_write_interest(&mut self, t: usize, on: bool) -> io::Result<()> {
        let conn = &mut self.conns[t];
        let interest = if on {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        conn.wants_write = on;
        self.poll
            .registry()
            .reregister(&mut conn.stream, Token(t), interest)
    }

    fn start_drain(&mut self, t: usize, now: u64) {
        let conn = &mut self.conns[t];
        let _ = conn.stream.shutdown(Shutdown::Write);
        conn.state = ConnState::Draining {
            until_ms: now + DRAIN_MS,
        };
        self.read_drain(t);
    }

    /// The socket failed or hit EOF: the session ends and the connection goes.
    fn disconnect(&mut self, t: usize, now: u64) {
        self.remove(t, now);
    }

    fn remove(&mut self, t: usize, now: u64) {
        if !self.conns.contains(t) {
            return;
        }
        let mut conn = self.conns.remove(t);
        if let Some(key) = conn.session {
            self.core.handle_disconnect(key, now);
        }
        if conn.refused {
            self.refusing -= 1;
        }
        let _ = self.poll.registry().deregister(&mut conn.stream);
        self.total_conns.fetch_sub(1, Ordering::Relaxed);
    }

    /// Once a second: HTTP heads that never completed, drains past their deadline, and
    /// closing connections whose peer stopped reading.
    fn sweep(&mut self, now: u64) {
        let handshake_ms = self.core.config().limits.handshake_ms;
        let core = &self.core;
        let mut expired = Vec::new();
        for (t, c) in self.conns.iter_mut() {
            let gone = match c.state {
                ConnState::Http { .. } | ConnState::Reply { .. } => {
                    now >= c.since_ms + handshake_ms
                }
                ConnState::Draining { until_ms } => now >= until_ms,
                ConnState::Ws { .. } => {
                    // A closing connection whose peer stopped reading never gets its close
                    // frame out: give it DRAIN_MS, then drop it.
                    let closing = c
                        .session
                        .and_then(|k| core.session(k))
                        .is_some_and(|s| s.phase == Phase::Closing);
                    if closing && !c.closing_seen {
                        c.closing_seen = true;
                        c.since_ms = now;
                    }
                    closing && now >= c.since_ms + DRAIN_MS
                }
            };
            if gone {
                expired.push(t);
            }
        }
        for t in expired {
            self.remove(t, now);
        }
    }

    fn move_session(&mut self, key: SessionKey, to: ShardId) {
        let Some(session) = self.core.session(key) else {
            return;
        };
        let t = session.transport;
        if !self.conns.contains(t) {
            return;
        }
        let mut conn = self.conns.remove(t);
        let _ = self.poll.registry().deregister(&mut conn.stream);
        let ConnState::Ws { ctx, carry } = conn.state else {
            return;
        };
        let Some(session) = self.core.take_session(key) else {
            return;
        };
        let moved = Moved {
            session,
            from: (self.id, key),
            transport: Box::new(MovedConn {
                stream: conn.stream,
                ctx,
                carry,
            }),
        };
        // The connection stays counted in total_conns: it is alive on another shard.
        tracing::debug!(
            shard = self.id.0,
            to = to.0,
            "session moves to its room's home shard"
        );
        self.port.send(to, MeshMsg::Adopt(Box::new(moved)));
    }

    fn drain_mesh(&mut self, now: u64) {
        let mut msgs = Vec::new();
        self.port
            .drain(MESH_BATCH_MAX, |from, msg| msgs.push((from, msg)));
        for (from, msg) in msgs {
            match msg {
                MeshMsg::Adopt(moved) => self.adopt(*moved, now),
                other => self.core.handle_mesh(from, other, now),
            }
        }
    }

    fn adopt(&mut self, moved: Moved, now: u64) {
        let Ok(conn) = moved.transport.downcast::<MovedConn>() else {
            tracing::error!(shard = self.id.0, "adopted a session without a connection");
            return;
        };
        let MovedConn {
            mut stream,
            ctx,
            carry,
        } = *conn;
        let entry = self.conns.vacant_entry();
        let t = entry.key();
        if self
            .poll
            .registry()
            .register(&mut stream, Token(t), Interest::READABLE)
            .is_err()
        {
            self.total_conns.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        entry.insert(Conn {
            stream,
            state: ConnState::Ws { ctx, carry },
            session: None,
            since_ms: now,
            wants_write: false,
            closing_seen: false,
            deferred: false,
            refused: false,
            drained: false,
        });
        let key = self.core.handle_adopt(moved.session, moved.from, t, now);
        self.conns[t].session = Some(key);
        // Frames may already sit in the WebSocket buffer: epoll will not report them.
        self.read_ws(t, now);
    }
}
#[cfg(test)]
mod tests {
    /// Idle memory per connection is these records plus tungstenite's context and read
    /// buffer (README, `idle`): keep them from growing unnoticed.
    #[test]
    fn per_connection_records_stay_small() {
        // mio keeps a selector id in every source in debug builds only: the one-line
        // budget is the release build's (`.ci/run` runs this test in release too).
        if !cfg!(debug_assertions) {
            assert!(std::mem::size_of::<super::Conn>() <= 64);
            assert_eq!(
                std::mem::size_of::<Option<super::Conn>>(),
                64,
                "slab slots stay one line"
            );
        }
        assert!(std::mem::size_of::<crate::core::session::Session>() <= 320);
    }

    /// A frame longer than the room left in tungstenite's buffer is read with one `recv`:
    /// the part that did not fit is carried over, and the socket is known drained.
    #[test]
    fn a_message_longer_than_tungstenites_buffer_costs_one_recv() {
        use super::{Carry, Io, RECV_BYTES};
        use std::io::{ErrorKind, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let mut stream = mio::net::TcpStream::from_std(server);
        let frame: Vec<u8> = (0..143u8).collect();
        client.write_all(&frame).unwrap();
        let (mut out, mut drained, mut carry) = (Vec::new(), false, Carry::default());
        let mut scratch = vec![0u8; RECV_BYTES];
        let mut io = Io {
            stream: &mut stream,
            out: &mut out,
            drained: &mut drained,
            carry: &mut carry,
            scratch: &mut scratch,
        };
        let mut head = [0u8; 121];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let n = loop {
            match io.read(&mut head) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    assert!(std::time::Instant::now() < deadline, "nothing arrived");
                    *io.drained = false;
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                other => break other.unwrap(),
            }
        };
        assert_eq!(n, 121);
        assert!(*io.drained, "one recv took all the socket had");
        let mut tail = [0u8; 64];
        assert_eq!(
            io.read(&mut tail).unwrap(),
            22,
            "the rest came from the carry"
        );
        assert_eq!([&head[..], &tail[..22]].concat(), frame);
        assert_eq!(
            io.read(&mut tail).unwrap_err().kind(),
            ErrorKind::WouldBlock,
            "drained and nothing carried: no syscall"
        );
    }
}
