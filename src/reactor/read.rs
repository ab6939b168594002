//! Reading: a readable connection's bytes go through `inbound` (the carry, tungstenite,
//! the shard core) until the socket would block; pings, pongs and close frames are
//! answered in order with the session's frames. Closed connections are drained to EOF.

use std::io::{self, Read};

use super::conn::ConnState;
use super::inbound::{self, Step, WsIo};
use super::{Reactor, READ_CHUNK_BYTES};
use crate::core::{Dialect, SessionKey, ShardCore};

impl<D: Dialect> Reactor<D> {
    /// A connection is readable; `hup`: the event also says the peer closed its side (or
    /// the socket failed).
    pub(super) fn readable(&mut self, core: &mut ShardCore<D>, t: usize, now: u64, hup: bool) {
        let Some(conn) = self.conns.get_mut(t) else {
            return;
        };
        // A readiness event means new bytes may be there.
        conn.drained = false;
        match conn.state {
            ConnState::Http { .. } => self.read_http(core, t, now),
            ConnState::Ws { .. } if hup => self.read_ws_to_eof(core, t, now),
            ConnState::Ws { .. } => self.read_ws(core, t, now),
            ConnState::Reply { .. } => {}
            ConnState::Draining { .. } => self.read_drain(core, t, now),
        }
    }

    pub(super) fn writable(&mut self, core: &mut ShardCore<D>, t: usize, now: u64) {
        let Some(conn) = self.conns.get_mut(t) else {
            return;
        };
        match (&conn.state, conn.session) {
            (ConnState::Reply { .. }, _) => self.write_reply(core, t, now),
            (ConnState::Ws { .. }, Some(key)) => self.flush(core, key, now),
            _ => {}
        }
    }

    /// Loads the records reading a connection's next message touches (its tungstenite
    /// context, its session's lines) in one pass, so their cache misses overlap rather
    /// than each stalling in turn (A/B at `fanout`: huddle's own CPU per delivery 0.394 ->
    /// 0.382 µs, perf-sampled, three runs each). Tokens that are not connections find
    /// nothing.
    pub(super) fn warm_reader(&self, core: &ShardCore<D>, t: usize) {
        let Some(conn) = self.conns.get(t) else {
            return;
        };
        if let ConnState::Ws { ctx, .. } = &conn.state {
            std::hint::black_box(ctx.can_read());
            std::hint::black_box(ctx.get_config().max_frame_size);
        }
        if let Some(session) = conn.session.and_then(|key| core.session(key)) {
            std::hint::black_box(session.reads_held());
            std::hint::black_box(session.last_rx_ms);
            std::hint::black_box(&session.bucket);
        }
    }

    /// Reads complete messages into the core until the socket would block, the session
    /// closes, or its reads are held (a session waiting to move is read on the shard it
    /// moves to); see [`inbound::read_message`].
    pub(super) fn read_ws(&mut self, core: &mut ShardCore<D>, t: usize, now: u64) {
        loop {
            let Some(conn) = self.conns.get_mut(t) else {
                return;
            };
            let Some(key) = conn.session else { return };
            let ConnState::Ws { ctx, carry, .. } = &mut conn.state else {
                return;
            };
            let mut io = WsIo {
                stream: &mut conn.stream,
                out: &mut self.tung_out,
                drained: &mut conn.drained,
                carry,
                scratch: &mut self.scratch,
            };
            match inbound::read_message(core, key, ctx, &mut io, &mut self.message, now) {
                Step::Delivered => self.follow_rekeys(core),
                Step::Again => {}
                Step::Stop => return,
                Step::Gone => return self.remove(core, t, now),
            }
        }
    }

    /// `read_ws` for a peer that has closed its side. The FIN may have come with the last
    /// bytes, in the same edge: a short read then marks the socket drained and `read_ws`
    /// stops before the `recv` that would return 0, and no further edge would ever come (the
    /// socket sat in CLOSE-WAIT until the idle timeout). So read on past short reads until
    /// the end is seen (the connection is removed), or the session stops being read (held
    /// for a move, or closing: then draining or the new shard's registration sees the end).
    fn read_ws_to_eof(&mut self, core: &mut ShardCore<D>, t: usize, now: u64) {
        loop {
            self.read_ws(core, t, now);
            match self.conns.get_mut(t) {
                Some(conn) if conn.drained && matches!(conn.state, ConnState::Ws { .. }) => {
                    conn.drained = false;
                }
                _ => return,
            }
        }
    }

    /// Hands each connection a take-over moved to its new session.
    fn follow_rekeys(&mut self, core: &mut ShardCore<D>) {
        let mut rekeys = Vec::new();
        core.drain_rekeys(&mut rekeys);
        for (old, new) in rekeys {
            self.rekey_conn(core, old, new);
        }
    }

    /// A take-over handed the connection of session `old` to session `new`.
    pub(super) fn rekey_conn(&mut self, core: &ShardCore<D>, old: SessionKey, new: SessionKey) {
        let Some(t) = core.session(new).map(|s| s.transport) else {
            return;
        };
        if let Some(conn) = self.conns.get_mut(t) {
            if conn.session == Some(old) {
                conn.session = Some(new);
            }
        }
    }

    /// Reads and drops whatever a closed connection still sends, until its FIN.
    pub(super) fn read_drain(&mut self, core: &mut ShardCore<D>, t: usize, now: u64) {
        let conn = &mut self.conns[t];
        let mut chunk = [0u8; READ_CHUNK_BYTES];
        loop {
            match conn.stream.read(&mut chunk) {
                Ok(0) => return self.remove(core, t, now),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.remove(core, t, now),
            }
        }
    }
}
