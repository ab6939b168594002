//! Sessions crossing shards: a session leaving (its socket deregistered and sent with its
//! WebSocket state and record through the mesh) and arriving (registered here, handed to
//! the core, read at once: frames may already wait in its buffers); and the rest of what
//! the mesh brings.

use std::sync::atomic::Ordering;

use mio::{Interest, Token};

use super::conn::{Conn, ConnState, MovedConn};
use super::{Reactor, MESH_BATCH_MAX};
use crate::core::{Dialect, MeshMsg, Moved, SessionKey, ShardCore, ShardId};

impl<D: Dialect> Reactor<D> {
    /// What other shards sent: arriving sessions are adopted, the rest goes to the core.
    pub(super) fn receive(&mut self, core: &mut ShardCore<D>, now: u64) {
        let mut msgs = std::mem::take(&mut self.mesh_in);
        self.port
            .drain(MESH_BATCH_MAX, |from, msg| msgs.push((from, msg)));
        for (from, msg) in msgs.drain(..) {
            match msg {
                MeshMsg::Adopt(moved) => self.adopt(core, *moved, now),
                other => core.handle_mesh(from, other, now),
            }
        }
        self.mesh_in = msgs;
    }

    /// Sends a session, its socket and its WebSocket state to shard `to`.
    pub(super) fn send_away(&mut self, core: &mut ShardCore<D>, key: SessionKey, to: ShardId) {
        let Some(session) = core.session(key) else {
            return;
        };
        let t = session.transport;
        if !self.conns.contains(t) {
            return;
        }
        let mut conn = self.conns.remove(t);
        let _ = self.poll.registry().deregister(&mut conn.stream);
        let ConnState::Ws { ctx, carry, .. } = conn.state else {
            return;
        };
        let Some(session) = core.take_session(key) else {
            return;
        };
        let moved = Moved {
            session,
            from: crate::core::SessionAt {
                shard: self.id,
                key,
            },
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
            "session moves to another shard"
        );
        self.port.send(to, MeshMsg::Adopt(Box::new(moved)));
    }

    /// A session moved here: its socket is registered and it is read at once.
    fn adopt(&mut self, core: &mut ShardCore<D>, moved: Moved<D>, now: u64) {
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
        entry.insert(Conn::new(
            stream,
            ConnState::Ws {
                ctx,
                carry,
                closing_since_ms: 0,
            },
            false,
        ));
        let key = core.handle_adopt(moved.session, moved.from, t, now);
        self.conns[t].session = Some(key);
        let mut rekeys = Vec::new();
        core.drain_rekeys(&mut rekeys);
        for (old, new) in rekeys {
            self.rekey_conn(core, old, new);
        }
        // Frames may already sit in the WebSocket buffer: epoll will not report them.
        self.read_ws(core, t, now);
    }
}
