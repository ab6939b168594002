//! A turn's writes: each dirty connection's queued frames go out in one gathered `send`
//! (one vectored write past `GATHER_BYTES_MAX`), or wait for the flush interval. While it
//! writes, the turn polls without waiting every few connections and handles what arrived
//! first, so those frames ride in the writes not yet made. Frames per write is what the
//! kernel charges for (see the README's performance section).

use std::io::{self, IoSlice, Write};
use std::net::Shutdown;

use mio::{Interest, Token};

use super::conn::ConnState;
use super::{Reactor, DRAIN_MS};
use crate::core::outbound::IOVECS_MAX;
use crate::core::{Dialect, SessionKey, ShardCore};
use crate::metrics::ShardMetrics;

/// Connections written between two zero-timeout polls while flushing every turn; the
/// gap doubles after each poll that found nothing, up to `FLUSH_CHUNK_MAX`.
const FLUSH_CHUNK: usize = 4;
const FLUSH_CHUNK_MAX: usize = 64;
/// Zero-timeout polls while flushing one turn, so a flood cannot hold the turn open.
const INTERLEAVES_MAX: usize = 256;
/// Connections whose records are loaded together, in one pass, before they are
/// written (see `Reactor::warm`).
const WARM_AHEAD: usize = 16;
/// Queued bytes up to which a connection's frames are gathered into one buffer.
pub(super) const GATHER_BYTES_MAX: usize = 16 * 1024;

impl<D: Dialect> Reactor<D> {
    /// A turn's writes start: no interleaved poll yet.
    pub(super) fn begin_writes(&mut self) {
        self.interleaves = 0;
        self.chunk = if self.flush_interval_us == 0 {
            FLUSH_CHUNK
        } else {
            usize::MAX
        };
    }

    /// Writes (or defers) these sessions' frames, `chunk` connections at a time with a
    /// poll that does not wait between chunks: messages that arrived meanwhile are
    /// handled first, and their frames join the writes still to come.
    pub(super) fn write_batch(&mut self, core: &mut ShardCore<D>, keys: &[SessionKey], now: u64) {
        let mut next = 0;
        while next < keys.len() {
            let end = if self.interleaves < INTERLEAVES_MAX {
                next.saturating_add(self.chunk).min(keys.len())
            } else {
                keys.len()
            };
            while next < end {
                let warm_end = (next + WARM_AHEAD).min(end);
                self.warm(core, &keys[next..warm_end]);
                while next < warm_end {
                    self.flush_or_defer(core, keys[next], now);
                    next += 1;
                }
            }
            if next == keys.len() {
                break;
            }
            self.interleaves += 1;
            if self.poll_now() {
                self.handle_events(core, now);
                core.settle_input(self, now);
                self.chunk = FLUSH_CHUNK;
            } else {
                // Nothing came: look less often (a wide room written frame by frame pays
                // for no empty polls), yet often enough to catch the next arrival.
                self.chunk = (self.chunk * 2).min(FLUSH_CHUNK_MAX);
            }
        }
    }

    /// Loads what the next writes touch (each session's front line and first queued
    /// frame, its connection) in one pass: the loads are independent, so their cache
    /// misses overlap instead of each stalling its own write. At a wide room every write
    /// is its own `send`, and the kernel's networking evicts these records between two
    /// writes (`hugeroom`: huddle's own code fell from 5.0% to 3.1% of server CPU).
    fn warm(&self, core: &ShardCore<D>, keys: &[SessionKey]) {
        for &key in keys {
            if let Some(session) = core.session(key) {
                std::hint::black_box(session.out.front_len());
                if let Some(conn) = self.conns.get(session.transport) {
                    std::hint::black_box(conn.session);
                }
            }
        }
    }

    /// With `limits.flush_interval_us` > 0 a connection's frames are held for one
    /// interval from the first one queued (a game tick batching its sends), so it is
    /// written at most once per interval; closing connections go at once. Every hold is
    /// the same length, so the deferred queue is in due order.
    fn flush_or_defer(&mut self, core: &mut ShardCore<D>, key: SessionKey, now: u64) {
        let interval = self.flush_interval_us;
        if interval == 0 {
            return self.flush(core, key, now);
        }
        let Some(session) = core.session_to_flush(key) else {
            return;
        };
        let (t, closing) = (session.transport, session.is_closing());
        let now_us = self.now_us();
        let Some(conn) = self.conns.get_mut(t) else {
            return;
        };
        if closing {
            self.flush(core, key, now);
        } else if !conn.deferred {
            conn.deferred = true;
            self.deferred.push_back((key, now_us + interval));
        }
    }

    /// Flushes deferred connections whose interval has passed.
    pub(super) fn flush_deferred(&mut self, core: &mut ShardCore<D>, now: u64) {
        if self.deferred.is_empty() {
            return;
        }
        let now_us = self.now_us();
        while let Some(&(key, at)) = self.deferred.front() {
            if at > now_us {
                break;
            }
            self.deferred.pop_front();
            let t = core.session(key).map(|s| s.transport);
            if let Some(conn) = t.and_then(|t| self.conns.get_mut(t)) {
                if conn.session == Some(key) {
                    conn.deferred = false;
                }
            }
            self.flush(core, key, now);
        }
    }

    /// Writes a session's queued frames: one gathered send (or, past `GATHER_BYTES_MAX`,
    /// one vectored write) per round, until the queue is empty or the socket would block.
    /// A closing session's connection is shut once its close frame is out.
    pub(super) fn flush(&mut self, core: &mut ShardCore<D>, key: SessionKey, now: u64) {
        let Some(session) = core.session_to_flush(key) else {
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
                Ok(0) => return self.remove(core, t, now),
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
                Err(_) => return self.remove(core, t, now),
            }
        }
        let closing = session.is_closing();
        if blocked != self.conns[t].wants_write {
            let _ = self.set_write_interest(t, blocked);
        }
        if !blocked && closing {
            core.handle_disconnect(key, now);
            self.conns[t].session = None;
            self.start_drain(core, t, now);
        }
    }

    pub(super) fn set_write_interest(&mut self, t: usize, on: bool) -> io::Result<()> {
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

    /// Shuts our side and reads until the client's FIN (or `DRAIN_MS`).
    pub(super) fn start_drain(&mut self, core: &mut ShardCore<D>, t: usize, now: u64) {
        let conn = &mut self.conns[t];
        let _ = conn.stream.shutdown(Shutdown::Write);
        conn.state = ConnState::Draining {
            until_ms: now + DRAIN_MS,
        };
        self.read_drain(core, t, now);
    }
}
