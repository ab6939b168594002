//! The seam between the engine and the dialects: the one trait a dialect set implements,
//! and the values that cross it. The engine calls these hooks and knows no dialect; a
//! dialect reaches the engine only through the [`Engine`] its hooks are handed.
//!
//! ```text
//!  upgrade ─► route ─► session + handle_open ─► handle_message … ─► handle_close ─► (parked) ─► handle_end
//!  every turn: handle_mesh (its own messages), handle_arrival (a session moved here),
//!              handle_timer (its deadlines), handle_tick (every TICK_MS), end_turn
//!  a reliable queue overflowing: overflow_frame, then close 1008
//! ```
//!
//! The engine is generic over one `Dialect`: the server runs the set of every dialect
//! (`crate::dialects::Dialects`, an enum dispatch: no dynamic dispatch and no allocation
//! on the way of a message), and a test can run the engine with a dialect of its own.

use std::net::IpAddr;
use std::sync::Arc;

use super::engine::Engine;
use super::keys::{SessionAt, SessionKey, ShardId};
use crate::codec::Frame;
use crate::config::Config;
use crate::metrics::DialectMetrics;

/// A set of dialects the engine runs: one value per shard, owning the dialects' shard
/// state (rooms, lobbies, codes…), called by the engine at each event.
pub trait Dialect: Sized + Send + 'static {
    /// What a session's dialect keeps for it, in the session record (it moves with the
    /// session).
    type Session: Send + 'static;
    /// The dialects' own messages between shards.
    type Mesh: Send + 'static;
    /// What a dialect's timer carries (see [`Engine::set_timer`]).
    type Timer: Send + 'static;
    /// What an upgrade's path and query selected, handed to [`Dialect::handle_open`].
    type Route: 'static;
    /// What every shard's instance shares, built once per server (server-wide per-address
    /// limits, say); lock-free or read-only, never on the way of a message.
    type Shared: Send + Sync + 'static;

    /// The shared part, once per server.
    fn shared(cfg: &Arc<Config>) -> Self::Shared;

    /// The dialect state of one shard.
    fn new(shard: ShardId, shards: usize, cfg: &Arc<Config>, shared: &Arc<Self::Shared>) -> Self;

    /// Counters the dialects keep, for `/metrics` beside the engine's.
    fn metrics(&self) -> Vec<Arc<dyn DialectMetrics>>;

    /// Picks the dialect of a WebSocket upgrade (its path, query, headers, peer). A
    /// refusal is answered with its HTTP status and the connection closed.
    fn route(
        &mut self,
        eng: &mut Engine<Self>,
        upgrade: &Upgrade<'_>,
        now: u64,
    ) -> Result<Routed<Self::Route>, HttpRefusal>;

    /// A plain HTTP `GET` of a path the engine does not serve (`/healthz` and `/metrics`
    /// are its own): the reply, or `None` for a 404.
    fn http_get(
        &mut self,
        eng: &mut Engine<Self>,
        get: &HttpGet<'_>,
        now: u64,
    ) -> Option<HttpReply>;

    /// The state a session opened on `route` starts with.
    fn session(route: &Self::Route) -> Self::Session;

    /// A connection finished its upgrade on `route`; its session exists (with the state
    /// [`Dialect::session`] gave it).
    fn handle_open(
        &mut self,
        eng: &mut Engine<Self>,
        key: SessionKey,
        route: Self::Route,
        now: u64,
    );

    /// A complete text or binary message from an open session. The buffer may be
    /// modified (JSON is unescaped in place).
    fn handle_message(
        &mut self,
        eng: &mut Engine<Self>,
        key: SessionKey,
        message: Message<'_>,
        now: u64,
    );

    /// The session's connection is ending (see [`CloseReason`]); called once. The answer
    /// says what happens once the socket is gone: the session ends, or it is parked.
    fn handle_close(
        &mut self,
        eng: &mut Engine<Self>,
        key: SessionKey,
        reason: CloseReason,
        now: u64,
    ) -> AfterClose;

    /// The session ends for good (closed, or its park deadline passed): the last look at
    /// its state. The engine removes it right after.
    fn handle_end(&mut self, eng: &mut Engine<Self>, key: SessionKey, now: u64);

    /// A timer set with [`Engine::set_timer`] is due.
    fn handle_timer(&mut self, eng: &mut Engine<Self>, timer: Self::Timer, now: u64);

    /// Every [`super::TICK_MS`] (sweeps that are cheaper in bulk than as timers).
    fn handle_tick(&mut self, eng: &mut Engine<Self>, now: u64);

    /// A dialect message from another shard.
    fn handle_mesh(&mut self, eng: &mut Engine<Self>, from: ShardId, msg: Self::Mesh, now: u64);

    /// A session moved here (see [`Engine::request_move`]); `from` is where it was.
    fn handle_arrival(
        &mut self,
        eng: &mut Engine<Self>,
        key: SessionKey,
        from: SessionAt,
        now: u64,
    );

    /// The end of a turn: what the dialect batches per turn goes out (state patches…).
    fn end_turn(&mut self, eng: &mut Engine<Self>, now: u64);

    /// The frame to send before close 1008 when a reliable frame would overflow the
    /// session's outbound queue (`limits.outbound_bytes_max`); `None`: just the close.
    fn overflow_frame(&mut self, eng: &mut Engine<Self>, key: SessionKey) -> Option<Frame>;
}

/// A complete message from a client.
pub struct Message<'a> {
    /// Its payload, reassembled from fragments.
    pub bytes: &'a mut [u8],
    /// Sent as a binary message (else text, valid UTF-8).
    pub binary: bool,
}

/// Why a session's connection is ending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent a close frame with this code (1005 when it had none).
    Client(u16),
    /// The server closed it (idle, a limit, a protocol error, the dialect, shutdown).
    Server,
    /// The socket went away without a close frame.
    Dropped,
}

/// What the end of a connection means for its session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterClose {
    /// The session ends with its connection.
    Gone,
    /// The session waits without a connection until `until_ms` (for a resume); then it
    /// ends.
    Park {
        /// When the session ends for good.
        until_ms: u64,
    },
}

/// A WebSocket upgrade request as routing sees it.
#[derive(Clone, Copy, Debug)]
pub struct Upgrade<'a> {
    /// The path, without the query.
    pub path: &'a str,
    /// The query, without `?` (empty when none).
    pub query: &'a str,
    /// The `Origin` header.
    pub origin: Option<&'a str>,
    /// The client's address.
    pub peer: Option<IpAddr>,
}

impl Upgrade<'_> {
    /// The first value of a query parameter, percent-decoded.
    pub fn param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

/// A plain HTTP `GET` as a dialect sees it.
#[derive(Clone, Copy, Debug)]
pub struct HttpGet<'a> {
    /// The path, without the query.
    pub path: &'a str,
    /// The query, without `?`.
    pub query: &'a str,
}

/// A dialect's answer to a plain `GET`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpReply {
    /// HTTP status.
    pub status: u16,
    /// Its reason phrase.
    pub reason: &'static str,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// More headers (`Access-Control-Allow-Origin`, …).
    pub headers: &'static [(&'static str, &'static str)],
    /// The body.
    pub body: Vec<u8>,
}

/// An accepted upgrade: the route and the connection's bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Routed<R> {
    /// What the path selected.
    pub route: R,
    /// Largest message (and frame) the WebSocket layer reads on this connection; a larger
    /// one closes it with 1009.
    pub message_bytes_max: usize,
}

/// An upgrade refused before the WebSocket starts: answered with this HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpRefusal {
    /// HTTP status (404 unknown path, 400, 403, 429…).
    pub status: u16,
    /// Its reason phrase.
    pub reason: &'static str,
    /// The body, one line.
    pub body: &'static str,
}

impl HttpRefusal {
    /// 404: no dialect at this path.
    pub const NOT_FOUND: HttpRefusal = HttpRefusal {
        status: 404,
        reason: "Not Found",
        body: "no dialect at this path\n",
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_percent_decoded() {
        let up = Upgrade {
            path: "/",
            query: "ugi=a%2Db&token=x+y&ugi=second",
            origin: None,
            peer: None,
        };
        assert_eq!(up.param("ugi").as_deref(), Some("a-b"));
        assert_eq!(up.param("token").as_deref(), Some("x y"));
        assert_eq!(up.param("nope"), None);
    }
}
