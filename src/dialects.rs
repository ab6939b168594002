//! The dialect set huddle runs, and the only place that lists the dialects: which path
//! reaches each one, what a session, a mesh message and a timer of each look like, and
//! the enum dispatch from the engine's hooks to them (static: no dynamic dispatch and no
//! allocation on the way of a message).
//!
//! | path | dialect |
//! |---|---|
//! | `/rooms` | rooms |
//! | `/cl5`, and `/` with a `ugi` query | cloudlink |
//! | `<peerjs_prefix>peerjs`, `<peerjs_prefix>peerjs/peerjs` | cloudlink's PeerJS broker |
//! | `/pairkit` | pairkit |
//! | `/` without `ugi` | shared: the first message decides (an object with `type` is pairkit; anything else is the rooms handshake) |
//! | `/echo` | echo, when `[echo] enabled = true` |
//! | anything else | HTTP 404 |
//!
//! Plain HTTP `GET`s the engine does not serve (`/healthz`, `/metrics`) go to the dialects
//! too: pairkit serves its controller page (`/play` and `/play/<version>/<file>`), then
//! cloudlink answers the broker's `<prefix><key>/id` and `/peers`.
//!
//! Adding a dialect: a module with its hooks, a variant in each enum here, its paths in
//! [`Dialects::route`] — nothing in the engine changes.

use std::sync::Arc;

use crate::cloudlink::peerjs::{PeerRoute, PeerSession};
use crate::cloudlink::{self, ClSession, ClShared, Cloudlink, Signaling};
use crate::codec::Frame;
use crate::config::Config;
use crate::core::{
    AfterClose, CloseReason, Dialect, Engine, HttpGet, HttpRefusal, HttpReply, Message, Routed,
    SessionAt, SessionKey, ShardId, Upgrade,
};
use crate::echo::Echo;
use crate::metrics::DialectMetrics;
use crate::pairkit::{self, Pairkit, PkRoute, PkSocket};
use crate::rooms::{self, Rooms, RoomsSession};

/// Every dialect's state on one shard.
pub struct Dialects {
    /// The rooms dialect.
    pub rooms: Rooms,
    /// The cloudlink dialect.
    pub cloudlink: Cloudlink,
    /// The pairkit dialect.
    pub pairkit: Pairkit,
    /// `[echo]`: whether `/echo` is served, and its message bound.
    echo: crate::config::EchoConfig,
    /// The rooms dialect's message bound (16 frames' worth: see `Limits`).
    rooms_message_bytes_max: usize,
    /// Cloudlink's: one frame (`limits.frame_bytes_max`).
    cloudlink_message_bytes_max: usize,
}

/// What a session's dialect keeps for it.
pub enum DialectSession {
    /// Opened on `/`, no message read yet: rooms, unless its first message is an object
    /// with a `type` (pairkit). Keeps the client's address for pairkit's join throttle.
    Shared(PkRoute),
    /// The rooms dialect.
    Rooms(RoomsSession),
    /// The cloudlink dialect.
    Cloudlink(ClSession),
    /// The cloudlink dialect's PeerJS broker.
    Peerjs(PeerSession),
    /// The pairkit dialect.
    Pairkit(PkSocket),
    /// The echo dialect.
    Echo,
}

/// The dialects' messages between shards.
pub enum DialectMesh {
    /// The rooms dialect's.
    Rooms(rooms::Mesh),
    /// The cloudlink dialect's.
    Cloudlink(cloudlink::Mesh),
    /// The pairkit dialect's.
    Pairkit(pairkit::Mesh),
}

/// The dialects' timers.
pub enum DialectTimer {
    /// The rooms dialect's.
    Rooms(rooms::Timer),
    /// The cloudlink dialect's.
    Cloudlink(cloudlink::Timer),
    /// The pairkit dialect's.
    Pairkit(pairkit::Timer),
}

/// What an upgrade's path selected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/rooms`.
    Rooms,
    /// `/` without `ugi`: the first message decides.
    Shared(PkRoute),
    /// `/cl5`, or `/` with `ugi`.
    Cloudlink(Signaling),
    /// The PeerJS broker's socket.
    Peerjs(PeerRoute),
    /// `/pairkit`.
    Pairkit(PkRoute),
    /// `/echo`.
    Echo,
}

/// Which dialect a session speaks, for dispatch.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rooms,
    Cloudlink,
    Pairkit,
    Echo,
}

fn kind_of<D: Dialect<Session = DialectSession>>(eng: &Engine<D>, key: SessionKey) -> Option<Kind> {
    Some(match eng.session(key)?.dialect {
        DialectSession::Shared(_) | DialectSession::Rooms(_) => Kind::Rooms,
        DialectSession::Cloudlink(_) | DialectSession::Peerjs(_) => Kind::Cloudlink,
        DialectSession::Pairkit(_) => Kind::Pairkit,
        DialectSession::Echo => Kind::Echo,
    })
}

impl Dialects {
    /// The first message on `/` settles the session's dialect: a text frame holding a
    /// JSON object with a `type` is pairkit's; anything else is the rooms handshake (or
    /// what it refuses as one). Read from a copy: the message itself is parsed in place
    /// by the dialect it goes to.
    fn settle_shared(
        &mut self,
        eng: &mut Engine<Self>,
        key: SessionKey,
        message: &Message<'_>,
        now: u64,
    ) {
        let pairkit = !message.binary && {
            let mut copy = message.bytes.to_vec();
            let typed = matches!(
                eng.decoder.decode(crate::codec::Codec::Json, &mut copy),
                Ok(v) if crate::codec::field(&v, "type").is_some()
            );
            typed
        };
        let Some(session) = eng.session_mut(key) else {
            return;
        };
        let DialectSession::Shared(route) = session.dialect else {
            return;
        };
        if pairkit {
            session.dialect = DialectSession::Pairkit(PkSocket::new(route));
            self.pairkit.handle_open(eng, key, now);
        } else {
            session.dialect = DialectSession::Rooms(RoomsSession::new());
        }
    }
}

impl Dialect for Dialects {
    type Session = DialectSession;
    type Mesh = DialectMesh;
    type Timer = DialectTimer;
    type Route = Route;
    type Shared = ClShared;

    fn shared(cfg: &Arc<Config>) -> ClShared {
        ClShared::new(cfg)
    }

    fn new(_shard: ShardId, _shards: usize, cfg: &Arc<Config>, shared: &Arc<ClShared>) -> Self {
        Dialects {
            rooms: Rooms::new(cfg),
            cloudlink: Cloudlink::new(cfg, shared.clone()),
            pairkit: Pairkit::new(cfg),
            echo: cfg.echo.clone(),
            rooms_message_bytes_max: cfg.limits.declared_bytes_max(),
            cloudlink_message_bytes_max: cfg.limits.frame_bytes_max,
        }
    }

    fn metrics(&self) -> Vec<Arc<dyn DialectMetrics>> {
        vec![
            self.rooms.metrics.clone(),
            self.cloudlink.metrics.clone(),
            self.pairkit.metrics.clone(),
        ]
    }

    fn route(
        &mut self,
        eng: &mut Engine<Self>,
        upgrade: &Upgrade<'_>,
        now: u64,
    ) -> Result<Routed<Route>, HttpRefusal> {
        let rooms = |route| Routed {
            route,
            message_bytes_max: self.rooms_message_bytes_max,
        };
        if self.cloudlink.is_broker_path(upgrade.path) {
            return Ok(Routed {
                route: Route::Peerjs(cloudlink::peerjs::route(upgrade)),
                message_bytes_max: self.cloudlink_message_bytes_max,
            });
        }
        let cloudlink =
            upgrade.path == "/cl5" || (upgrade.path == "/" && upgrade.param("ugi").is_some());
        if cloudlink {
            let signaling = self.cloudlink.route(eng, upgrade, now)?;
            return Ok(Routed {
                route: Route::Cloudlink(signaling),
                message_bytes_max: self.cloudlink_message_bytes_max,
            });
        }
        match upgrade.path {
            "/rooms" => Ok(rooms(Route::Rooms)),
            "/" => Ok(rooms(Route::Shared(PkRoute { peer: upgrade.peer }))),
            "/pairkit" => Ok(rooms(Route::Pairkit(PkRoute { peer: upgrade.peer }))),
            "/echo" if self.echo.enabled => Ok(Routed {
                route: Route::Echo,
                message_bytes_max: self.echo.message_bytes_max,
            }),
            _ => Err(HttpRefusal::NOT_FOUND),
        }
    }

    fn http_get(
        &mut self,
        eng: &mut Engine<Self>,
        get: &HttpGet<'_>,
        _now: u64,
    ) -> Option<HttpReply> {
        self.pairkit
            .http_get(get)
            .or_else(|| self.cloudlink.http_get(eng, get))
    }

    fn session(route: &Route) -> DialectSession {
        match route {
            Route::Rooms => DialectSession::Rooms(RoomsSession::new()),
            Route::Shared(peer) => DialectSession::Shared(*peer),
            Route::Pairkit(peer) => DialectSession::Pairkit(PkSocket::new(*peer)),
            Route::Cloudlink(signaling) => DialectSession::Cloudlink(Cloudlink::session(signaling)),
            Route::Peerjs(peer) => DialectSession::Peerjs(Cloudlink::peer_session(peer)),
            Route::Echo => DialectSession::Echo,
        }
    }

    fn handle_open(&mut self, eng: &mut Engine<Self>, key: SessionKey, route: Route, now: u64) {
        match route {
            Route::Rooms | Route::Shared(_) => self.rooms.handle_open(eng, key, now),
            Route::Pairkit(_) => self.pairkit.handle_open(eng, key, now),
            Route::Cloudlink(_) | Route::Peerjs(_) => self.cloudlink.handle_open(eng, key),
            Route::Echo => {}
        }
    }

    fn handle_message(
        &mut self,
        eng: &mut Engine<Self>,
        key: SessionKey,
        message: Message<'_>,
        now: u64,
    ) {
        let Some(session) = eng.session(key) else {
            return;
        };
        match session.dialect {
            DialectSession::Rooms(_) => self.rooms.handle_message(eng, key, message, now),
            DialectSession::Cloudlink(_) | DialectSession::Peerjs(_) => {
                self.cloudlink.handle_message(eng, key, message, now)
            }
            DialectSession::Pairkit(_) => self.pairkit.handle_message(eng, key, message, now),
            DialectSession::Echo => Echo::handle_message(eng, key, message),
            DialectSession::Shared(_) => {
                self.settle_shared(eng, key, &message, now);
                self.handle_message(eng, key, message, now);
            }
        }
    }

    fn handle_close(
        &mut self,
        eng: &mut Engine<Self>,
        key: SessionKey,
        reason: CloseReason,
        now: u64,
    ) -> AfterClose {
        match kind_of(eng, key) {
            Some(Kind::Rooms) => self.rooms.handle_close(eng, key, reason, now),
            Some(Kind::Cloudlink) => self.cloudlink.handle_close(eng, key),
            Some(Kind::Pairkit) => self.pairkit.handle_close(eng, key, now),
            Some(Kind::Echo) | None => AfterClose::Gone,
        }
    }

    fn handle_end(&mut self, eng: &mut Engine<Self>, key: SessionKey, now: u64) {
        match kind_of(eng, key) {
            Some(Kind::Rooms) => self.rooms.handle_end(eng, key, now),
            Some(Kind::Cloudlink) => self.cloudlink.handle_end(eng, key),
            Some(Kind::Pairkit | Kind::Echo) | None => {}
        }
    }

    fn handle_timer(&mut self, eng: &mut Engine<Self>, timer: DialectTimer, now: u64) {
        match timer {
            DialectTimer::Rooms(t) => self.rooms.handle_timer(eng, t),
            DialectTimer::Cloudlink(t) => self.cloudlink.handle_timer(eng, t, now),
            DialectTimer::Pairkit(t) => self.pairkit.handle_timer(eng, t, now),
        }
    }

    fn handle_tick(&mut self, eng: &mut Engine<Self>, now: u64) {
        self.rooms.handle_tick(eng, now);
        self.pairkit.handle_tick(eng, now);
    }

    fn handle_mesh(&mut self, eng: &mut Engine<Self>, from: ShardId, msg: DialectMesh, now: u64) {
        match msg {
            DialectMesh::Rooms(m) => self.rooms.handle_mesh(eng, from, m, now),
            DialectMesh::Cloudlink(m) => self.cloudlink.handle_mesh(eng, from, m, now),
            DialectMesh::Pairkit(m) => self.pairkit.handle_mesh(eng, from, m, now),
        }
    }

    fn handle_arrival(
        &mut self,
        eng: &mut Engine<Self>,
        key: SessionKey,
        from: SessionAt,
        now: u64,
    ) {
        match kind_of(eng, key) {
            Some(Kind::Rooms) => self.rooms.handle_arrival(eng, key, from, now),
            Some(Kind::Cloudlink) => self.cloudlink.handle_arrival(eng, key),
            Some(Kind::Pairkit) => self.pairkit.handle_arrival(eng, key, now),
            Some(Kind::Echo) | None => {}
        }
    }

    fn end_turn(&mut self, eng: &mut Engine<Self>, _now: u64) {
        self.rooms.end_turn(eng);
    }

    fn overflow_frame(&mut self, eng: &mut Engine<Self>, key: SessionKey) -> Option<Frame> {
        match kind_of(eng, key)? {
            Kind::Rooms => self.rooms.overflow_frame(eng, key),
            Kind::Cloudlink | Kind::Pairkit | Kind::Echo => None,
        }
    }
}

impl rooms::Host for Dialects {
    /// A session on `/` that has sent nothing is a rooms session waiting for its
    /// handshake (its handshake timer runs).
    fn rooms(session: &DialectSession) -> Option<&RoomsSession> {
        static WAITING: RoomsSession = RoomsSession::Handshake {
            hello: None,
            probes: 0,
        };
        match session {
            DialectSession::Rooms(r) => Some(r),
            DialectSession::Shared(_) => Some(&WAITING),
            _ => None,
        }
    }

    /// Changing a session on `/` that has sent nothing settles it as rooms.
    fn rooms_mut(session: &mut DialectSession) -> Option<&mut RoomsSession> {
        if matches!(session, DialectSession::Shared(_)) {
            *session = DialectSession::Rooms(RoomsSession::new());
        }
        match session {
            DialectSession::Rooms(r) => Some(r),
            _ => None,
        }
    }

    fn mesh(msg: rooms::Mesh) -> DialectMesh {
        DialectMesh::Rooms(msg)
    }

    fn timer(timer: rooms::Timer) -> DialectTimer {
        DialectTimer::Rooms(timer)
    }
}

impl cloudlink::Host for Dialects {
    fn cloudlink(session: &DialectSession) -> Option<&ClSession> {
        match session {
            DialectSession::Cloudlink(c) => Some(c),
            _ => None,
        }
    }

    fn cloudlink_mut(session: &mut DialectSession) -> Option<&mut ClSession> {
        match session {
            DialectSession::Cloudlink(c) => Some(c),
            _ => None,
        }
    }

    fn peerjs(session: &DialectSession) -> Option<&PeerSession> {
        match session {
            DialectSession::Peerjs(p) => Some(p),
            _ => None,
        }
    }

    fn peerjs_mut(session: &mut DialectSession) -> Option<&mut PeerSession> {
        match session {
            DialectSession::Peerjs(p) => Some(p),
            _ => None,
        }
    }

    fn mesh(msg: cloudlink::Mesh) -> DialectMesh {
        DialectMesh::Cloudlink(msg)
    }

    fn timer(timer: cloudlink::Timer) -> DialectTimer {
        DialectTimer::Cloudlink(timer)
    }
}

impl pairkit::Host for Dialects {
    fn pairkit(session: &DialectSession) -> Option<&PkSocket> {
        match session {
            DialectSession::Pairkit(p) => Some(p),
            _ => None,
        }
    }

    fn pairkit_mut(session: &mut DialectSession) -> Option<&mut PkSocket> {
        match session {
            DialectSession::Pairkit(p) => Some(p),
            _ => None,
        }
    }

    fn mesh(msg: pairkit::Mesh) -> DialectMesh {
        DialectMesh::Pairkit(msg)
    }

    fn timer(timer: pairkit::Timer) -> DialectTimer {
        DialectTimer::Pairkit(timer)
    }
}

/// The shard core huddle runs.
pub type Shard = crate::core::ShardCore<Dialects>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::session::Session;

    /// A session's slot is whole cache lines (its generation shares the first with the
    /// fields every fan-out reads) and no bigger than it was before the dialect seam.
    #[test]
    fn a_session_slot_is_five_cache_lines() {
        let (size, align, offset) = crate::core::keys::slot_layout::<Session<DialectSession>>();
        assert_eq!(size, 320);
        assert_eq!(align, 64);
        assert_eq!(offset, 8);
    }

    fn upgrade(target: &str) -> Upgrade<'_> {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Upgrade {
            path,
            query,
            origin: None,
            peer: None,
        }
    }

    #[test]
    fn each_path_reaches_its_dialect_and_an_unknown_one_is_404() {
        let mut cfg = Config::default();
        let mut core = Shard::alone(cfg.clone());
        let mut route = |p| core.route(&upgrade(p), 1).map(|r| r.route);
        assert_eq!(route("/rooms"), Ok(Route::Rooms));
        let shared = Route::Shared(PkRoute { peer: None });
        assert_eq!(route("/"), Ok(shared.clone()));
        assert_eq!(
            route("/pairkit"),
            Ok(Route::Pairkit(PkRoute { peer: None }))
        );
        assert_eq!(
            route("/?x=1"),
            Ok(shared),
            "only a ugi query makes / cloudlink"
        );
        assert_eq!(
            route("/echo"),
            Err(HttpRefusal::NOT_FOUND),
            "off by default"
        );
        assert_eq!(route("/nope"), Err(HttpRefusal::NOT_FOUND));
        assert_eq!(route("/rooms/"), Err(HttpRefusal::NOT_FOUND));
        for target in ["/cl5?ugi=g1", "/?ugi=g1&token=t"] {
            match route(target) {
                Ok(Route::Cloudlink(s)) => {
                    assert_eq!(&*s.ugi, "g1");
                    assert!(s.instance_id.ends_with("_g1") && s.instance_id.len() == 29);
                }
                other => panic!("{target}: {other:?}"),
            }
        }
        match route("/peerjs?key=peerjs&id=a&token=t") {
            Ok(Route::Peerjs(p)) => assert_eq!(p.id.as_deref(), Some("a")),
            other => panic!("the broker: {other:?}"),
        }
        assert!(matches!(route("/peerjs/peerjs"), Ok(Route::Peerjs(_))));
        assert_eq!(route("/peerjs/x"), Err(HttpRefusal::NOT_FOUND));
        assert_eq!(route("/cl5").map_err(|r| r.status), Err(400), "no ugi");
        assert_eq!(
            route("/?ugi=").map_err(|r| r.status),
            Err(400),
            "an empty ugi is cloudlink's"
        );
        cfg.echo.enabled = true;
        cfg.echo.message_bytes_max = 1 << 20;
        let mut core = Shard::alone(cfg.clone());
        let echo = core.route(&upgrade("/echo"), 1).unwrap();
        assert_eq!(echo.route, Route::Echo);
        assert_eq!(echo.message_bytes_max, 1 << 20);
        let rooms = core.route(&upgrade("/rooms"), 1).unwrap();
        assert_eq!(rooms.message_bytes_max, cfg.limits.declared_bytes_max());
        let cl5 = core.route(&upgrade("/cl5?ugi=g"), 1).unwrap();
        assert_eq!(cl5.message_bytes_max, cfg.limits.frame_bytes_max);
    }
}
