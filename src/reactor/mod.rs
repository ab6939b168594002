//! One shard's reactor: the only IO in huddle. A `mio::Poll` loop that accepts on the
//! shard's `SO_REUSEPORT` listener, speaks HTTP until the upgrade, runs tungstenite's
//! WebSocket context over each socket, feeds complete messages to the shard core, moves
//! sessions through the mesh, and writes each connection's frames with one send per turn
//! (turns take in what arrives while they work; see `write`). It is the core's
//! [`Driver`]: the order of a turn is the core's. Protocol decisions are the dialects'.
//!
//! - `conn`: a connection's record, its states.
//! - [`inbound`]: a connection's bytes through its carry and tungstenite into the core
//!   (over any `Read`: the `inbound` fuzz target runs it too).
//! - `accept`: accepting, HTTP heads, upgrades, plain replies, refusals.
//! - `read`: reading WebSocket messages into the core, draining closed sockets.
//! - `write`: the turn's writes (gathered sends, flush intervals, interleaved reads).
//! - `moves`: sessions leaving for and arriving from other shards.

mod accept;
mod conn;
pub mod inbound;
mod moves;
mod read;
mod write;

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::core::{Dialect, Driver, MeshMsg, SessionKey, ShardCore, ShardId};
use crate::mesh::MeshPort;
use crate::metrics::ShardMetrics;
use conn::{Conn, ConnState};

const LISTENER: Token = Token(usize::MAX - 1);
/// The token of each shard's mesh waker.
pub const WAKER: Token = Token(usize::MAX - 2);

/// How long a closed connection may take to send its FIN after ours (the wait for the
/// close frame itself to be read is `limits.close_drain_ms`).
const DRAIN_MS: u64 = 2_000;
/// How long accepting pauses after EMFILE/ENFILE, so the loop does not spin.
const ACCEPT_PAUSE_MS: u64 = 100;
/// Mesh messages handled per turn, so one busy peer cannot starve the sockets.
const MESH_BATCH_MAX: usize = 4_096;
/// Connections past a cap that are answered 503 at once (beyond: closed unanswered).
const REFUSING_MAX: usize = 64;
/// Zero-timeout polls after a turn's events, while they return more, before writing.
const REPOLL_MAX: usize = 4;
/// Read size for HTTP heads and for draining.
const READ_CHUNK_BYTES: usize = 4_096;

/// A shard thread: its core and its reactor.
pub struct Shard<D: Dialect> {
    core: ShardCore<D>,
    reactor: Reactor<D>,
}

/// Everything a shard thread owns besides its core: the poll, the sockets, the mesh port,
/// the reused buffers.
struct Reactor<D: Dialect> {
    id: ShardId,
    poll: Poll,
    listener: TcpListener,
    conns: Slab<Conn>,
    port: MeshPort<MeshMsg<D>>,
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
    mesh_in: Vec<(ShardId, MeshMsg<D>)>,
    /// Poll events, also polled (without waiting) between the turn's writes.
    events: Events,
    last_sweep_ms: u64,
    /// `limits.flush_interval_us`.
    flush_interval_us: u64,
    /// `limits.close_drain_ms`.
    close_drain_ms: u64,
    /// Connections whose frames wait for their flush interval: (session, due µs).
    deferred: VecDeque<(SessionKey, u64)>,
    /// Connections accepted past a cap to be answered 503 and closed.
    refusing: usize,
    /// This turn's writes: zero-timeout polls so far, and connections written between two.
    interleaves: usize,
    chunk: usize,
}

/// What a shard needs from the server to run.
pub struct ShardParts<D: Dialect> {
    /// This shard.
    pub id: ShardId,
    /// Its poll (its waker is registered in it under [`WAKER`]).
    pub poll: Poll,
    /// Its `SO_REUSEPORT` listener.
    pub listener: std::net::TcpListener,
    /// Its core.
    pub core: ShardCore<D>,
    /// Its end of the mesh.
    pub port: MeshPort<MeshMsg<D>>,
    /// Set on SIGINT/SIGTERM.
    pub shutdown: Arc<AtomicBool>,
    /// Connections on all shards.
    pub total_conns: Arc<AtomicUsize>,
    /// Every shard's metrics (for `/metrics`).
    pub all_metrics: Arc<Vec<Arc<ShardMetrics>>>,
}

impl<D: Dialect> Shard<D> {
    /// Builds a shard from its parts.
    pub fn new(parts: ShardParts<D>) -> io::Result<Self> {
        let mut listener = TcpListener::from_std(parts.listener);
        parts
            .poll
            .registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let metrics = parts.core.metrics().clone();
        let flush_interval_us = parts.core.config().limits.flush_interval_us;
        let close_drain_ms = parts.core.config().limits.close_drain_ms;
        let reactor = Reactor {
            id: parts.id,
            poll: parts.poll,
            listener,
            conns: Slab::new(),
            port: parts.port,
            started: Instant::now(),
            shutdown: parts.shutdown,
            total_conns: parts.total_conns,
            all_metrics: parts.all_metrics,
            metrics,
            accept_paused_until: None,
            message: Vec::new(),
            tung_out: Vec::new(),
            gather: Vec::with_capacity(write::GATHER_BYTES_MAX),
            scratch: vec![0; inbound::RECV_BYTES].into_boxed_slice(),
            mesh_in: Vec::new(),
            events: Events::with_capacity(1024),
            last_sweep_ms: 0,
            flush_interval_us,
            close_drain_ms,
            deferred: VecDeque::new(),
            refusing: 0,
            interleaves: 0,
            chunk: 0,
        };
        Ok(Shard {
            core: parts.core,
            reactor,
        })
    }

    /// Runs until shutdown, then closes every client with 1001.
    pub fn run(self) {
        let Shard {
            mut core,
            mut reactor,
        } = self;
        let mut shutdown_deadline: Option<u64> = None;
        loop {
            let timeout = reactor.poll_timeout(&core);
            if let Err(e) = reactor.poll.poll(&mut reactor.events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(shard = reactor.id.0, "poll failed: {e}");
                    return;
                }
            }
            let now = reactor.now();
            reactor.handle_events(&mut core, now);
            // Whatever arrived while those were read joins this turn before anything is
            // written: its frames share the members' writes (a poll costs far less than a
            // write), and nobody waits for a timer.
            for _ in 0..REPOLL_MAX {
                if reactor.events.is_empty() || !reactor.poll_now() {
                    break;
                }
                reactor.handle_events(&mut core, now);
            }
            if let Some(until) = reactor.accept_paused_until {
                if now >= until {
                    reactor.accept_paused_until = None;
                    reactor.accept_all(&mut core, now);
                }
            }
            if now >= reactor.last_sweep_ms + 1000 {
                reactor.last_sweep_ms = now;
                reactor.sweep(&mut core, now);
            }
            if reactor.shutdown.load(Ordering::Relaxed) && shutdown_deadline.is_none() {
                tracing::info!(
                    shard = reactor.id.0,
                    conns = reactor.conns.len(),
                    "closing every client with 1001"
                );
                core.begin_shutdown(now);
                shutdown_deadline = Some(now + 1_000);
            }
            reactor.begin_writes();
            core.turn(&mut reactor, now);
            reactor.flush_deferred(&mut core, now);
            reactor.port.wake();
            if let Some(deadline) = shutdown_deadline {
                let only_draining = reactor
                    .conns
                    .iter()
                    .all(|(_, c)| matches!(c.state, ConnState::Draining { .. }));
                if reactor.conns.is_empty() || only_draining || now >= deadline {
                    return;
                }
            }
        }
    }
}

impl<D: Dialect> Reactor<D> {
    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn now_us(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    /// Until the next timer of the core, deferred flush or mesh retry, at most a tick.
    fn poll_timeout(&mut self, core: &ShardCore<D>) -> Duration {
        if self.port.retry_backlog() {
            return Duration::from_millis(1);
        }
        let now_us = self.now_us();
        let core_due_us = core.next_deadline().saturating_mul(1000);
        let flush_due_us = self.deferred.front().map_or(u64::MAX, |&(_, at)| at);
        let due_us = core_due_us.min(flush_due_us).saturating_sub(now_us);
        Duration::from_micros(due_us.clamp(100, crate::core::TICK_MS * 1000))
    }

    /// A poll that does not wait: true when it returned events.
    fn poll_now(&mut self) -> bool {
        self.poll
            .poll(&mut self.events, Some(Duration::ZERO))
            .is_ok()
            && !self.events.is_empty()
    }

    /// Handles the events of the last poll.
    fn handle_events(&mut self, core: &mut ShardCore<D>, now: u64) {
        let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        for event in events.iter() {
            let Token(t) = event.token();
            self.warm_reader(core, t);
        }
        for event in events.iter() {
            match event.token() {
                LISTENER => self.accept_all(core, now),
                WAKER => {}
                Token(t) => {
                    if event.is_readable() || event.is_read_closed() || event.is_error() {
                        let hup = event.is_read_closed() || event.is_error();
                        self.readable(core, t, now, hup);
                    }
                    if event.is_writable() {
                        self.writable(core, t, now);
                    }
                }
            }
        }
        self.events = events;
    }

    /// Once a second: HTTP heads that never completed, replies and drains past their
    /// deadline, and closing connections whose peer stopped reading.
    fn sweep(&mut self, core: &mut ShardCore<D>, now: u64) {
        let mut expired = Vec::new();
        for (t, c) in self.conns.iter_mut() {
            let gone = match &mut c.state {
                ConnState::Http { until_ms, .. }
                | ConnState::Reply { until_ms, .. }
                | ConnState::Draining { until_ms } => now >= *until_ms,
                ConnState::Ws {
                    closing_since_ms, ..
                } => {
                    // A closing connection whose peer stopped reading never gets its close
                    // frame out: give it `limits.close_drain_ms`, then drop it.
                    let closing = c
                        .session
                        .and_then(|k| core.session(k))
                        .is_some_and(|s| s.is_closing());
                    if closing && *closing_since_ms == 0 {
                        *closing_since_ms = now.max(1);
                    }
                    closing && now >= *closing_since_ms + self.close_drain_ms
                }
            };
            if gone {
                expired.push(t);
            }
        }
        for t in expired {
            self.remove(core, t, now);
        }
    }

    /// The socket failed, hit EOF or was given up: the session hears its connection is
    /// gone and the connection goes.
    fn remove(&mut self, core: &mut ShardCore<D>, t: usize, now: u64) {
        if !self.conns.contains(t) {
            return;
        }
        let mut conn = self.conns.remove(t);
        if let Some(key) = conn.session {
            core.handle_disconnect(key, now);
        }
        if conn.refused {
            self.refusing -= 1;
        }
        let _ = self.poll.registry().deregister(&mut conn.stream);
        self.total_conns.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<D: Dialect> Driver<D> for Reactor<D> {
    fn receive_mesh(&mut self, core: &mut ShardCore<D>, now: u64) {
        self.receive(core, now);
    }

    fn read(&mut self, core: &mut ShardCore<D>, key: SessionKey, now: u64) {
        if let Some(t) = core.session(key).map(|s| s.transport) {
            self.read_ws(core, t, now);
        }
    }

    fn rekey(&mut self, core: &ShardCore<D>, old: SessionKey, new: SessionKey) {
        self.rekey_conn(core, old, new);
    }

    fn move_session(&mut self, core: &mut ShardCore<D>, key: SessionKey, to: ShardId) {
        self.send_away(core, key, to);
    }

    fn post(&mut self, to: ShardId, msg: MeshMsg<D>) {
        self.port.send(to, msg);
    }

    fn write(&mut self, core: &mut ShardCore<D>, keys: &[SessionKey], now: u64) {
        self.write_batch(core, keys, now);
    }
}
