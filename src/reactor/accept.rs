//! Accepting and HTTP: new connections (refused with 503 past the caps, paused on
//! EMFILE), their request heads, the upgrade (routed to a dialect by the core, then
//! answered 101 and handed to tungstenite), and plain replies (`/healthz`, `/metrics`,
//! errors), each written out before the socket is drained and closed.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::Ordering;

use mio::{Interest, Token};

use super::conn::{Conn, ConnState};
use super::inbound::{self, Carry};
use super::{Reactor, ACCEPT_PAUSE_MS, READ_CHUNK_BYTES, REFUSING_MAX};
use crate::core::{Dialect, ShardCore, Upgrade};
use crate::http;
use crate::metrics::ShardMetrics;

impl<D: Dialect> Reactor<D> {
    pub(super) fn accept_all(&mut self, core: &mut ShardCore<D>, now: u64) {
        if self.accept_paused_until.is_some() {
            return;
        }
        let limits = core.config().limits.clone();
        loop {
            match self.listener.accept() {
                Ok((mut stream, addr)) => {
                    let total = self.total_conns.load(Ordering::Relaxed);
                    let full =
                        total >= limits.conns_max || self.conns.len() >= limits.conns_per_shard_max;
                    if full {
                        tracing::debug!(shard = self.id.0, %addr, total, "connection refused: at the connection cap");
                        ShardMetrics::add(&self.metrics.refused, 1);
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
                    let until_ms = now + limits.handshake_ms;
                    let state = if full {
                        // Answer 503, then close gracefully (reading what the client sent, so
                        // the kernel does not reset the connection before it reads the answer).
                        self.refusing += 1;
                        let body =
                            http::reply(503, "Service Unavailable", "text/plain", b"server full\n");
                        ConnState::Reply {
                            bytes: body.into_boxed_slice(),
                            written: 0,
                            until_ms,
                        }
                    } else {
                        ConnState::Http {
                            buf: Vec::new(),
                            until_ms,
                        }
                    };
                    let t = token.0;
                    entry.insert(Conn::new(stream, state, full));
                    if full {
                        self.write_reply(core, t, now);
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

    /// Reads a request head; once complete, answers it or, for an upgrade a dialect takes,
    /// opens the session and starts the WebSocket.
    pub(super) fn read_http(&mut self, core: &mut ShardCore<D>, t: usize, now: u64) {
        let all_metrics = self.all_metrics.clone();
        let conn = &mut self.conns[t];
        let ConnState::Http { buf, .. } = &mut conn.state else {
            return;
        };
        let mut chunk = [0u8; READ_CHUNK_BYTES];
        loop {
            match conn.stream.read(&mut chunk) {
                Ok(0) => return self.remove(core, t, now),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.remove(core, t, now),
            }
            if buf.len() > crate::limits::HTTP_HEAD_BYTES_MAX {
                break;
            }
        }
        let parsed = http::parse(buf, || crate::metrics::render(&all_metrics));
        let upgrade = match parsed {
            Ok(None) => return,
            Err(reply) => return self.start_reply(core, t, reply, now),
            Ok(Some(http::Request::Reply(reply))) => return self.start_reply(core, t, reply, now),
            Ok(Some(http::Request::Get { path, query })) => {
                let get = crate::core::HttpGet {
                    path: &path,
                    query: &query,
                };
                let reply = match core.http_get(&get, now) {
                    Some(r) => {
                        http::reply_with(r.status, r.reason, r.content_type, r.headers, &r.body)
                    }
                    None => http::not_found(),
                };
                return self.start_reply(core, t, reply, now);
            }
            Ok(Some(http::Request::Upgrade {
                request,
                path,
                query,
                origin,
                head_len,
            })) => {
                let peer = conn.stream.peer_addr().ok().map(|a| a.ip());
                let head = Upgrade {
                    path: &path,
                    query: &query,
                    origin: origin.as_deref(),
                    peer,
                };
                let routed = core
                    .route(&head, now)
                    .map_err(|r| http::reply(r.status, r.reason, "text/plain", r.body.as_bytes()));
                let accepted = routed.and_then(|routed| Ok((routed, http::accept(&request)?)));
                match accepted {
                    Err(reply) => return self.start_reply(core, t, reply, now),
                    Ok((routed, response)) => (routed, response, buf.split_off(head_len)),
                }
            }
        };
        let (routed, response, rest) = upgrade;
        let ctx = inbound::context(rest, routed.message_bytes_max);
        let conn = &mut self.conns[t];
        conn.state = ConnState::Ws {
            ctx,
            carry: Carry::default(),
            closing_since_ms: 0,
        };
        let key = core.handle_open(t, routed.route, &response, now);
        self.conns[t].session = Some(key);
        self.read_ws(core, t, now);
    }

    /// Answers a request head with a plain reply, held to the head's deadline.
    fn start_reply(&mut self, core: &mut ShardCore<D>, t: usize, bytes: Vec<u8>, now: u64) {
        let until_ms = match self.conns[t].state {
            ConnState::Http { until_ms, .. } => until_ms,
            _ => now + core.config().limits.handshake_ms,
        };
        self.conns[t].state = ConnState::Reply {
            bytes: bytes.into_boxed_slice(),
            written: 0,
            until_ms,
        };
        self.write_reply(core, t, now);
    }

    pub(super) fn write_reply(&mut self, core: &mut ShardCore<D>, t: usize, now: u64) {
        let conn = &mut self.conns[t];
        let ConnState::Reply { bytes, written, .. } = &mut conn.state else {
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
                Err(_) => return self.remove(core, t, now),
            }
        }
        self.start_drain(core, t, now);
    }
}
