//! The dialect set huddle runs, and the only place that lists the dialects: which path
//! reaches each one, what a session, a mesh message and a timer of each look like, and
//! the enum dispatch from the engine's hooks to them (static: no dynamic dispatch and no
//! allocation on the way of a message).
//!
//! | path | dialect |
//! |---|---|
//! | `/rooms` | rooms |
//! | `/` | shared: the first message decides (today every first message is the rooms handshake) |
//! | `/echo` | echo, when `[echo] enabled = true` |
//! | anything else | HTTP 404 |
//!
//! Adding a dialect: a module with its hooks, a variant in each enum here, its paths in
//! [`Dialects::route`] — nothing in the engine changes.

use std::sync::Arc;

use crate::codec::Frame;
use crate::config::Config;
use crate::core::{
    AfterClose, CloseReason, Dialect, Engine, HttpRefusal, Message, Routed, SessionAt, SessionKey,
    ShardId, Upgrade,
};
use crate::echo::Echo;
use crate::metrics::DialectMetrics;
use crate::rooms::{self, Rooms, RoomsSession};

/// Every dialect's state on one shard.
pub struct Dialects {
    /// The rooms dialect.
    pub rooms: Rooms,
    /// `[echo]`: whether `/echo` is served, and its message bound.
    echo: crate::config::EchoConfig,
    /// The rooms dialect's message bound (16 frames' worth: see `Limits`).
    rooms_message_bytes_max: usize,
}

/// What a session's dialect keeps for it.
pub enum DialectSession {
    /// Opened on `/`, no message read yet: rooms, unless its first message belongs to
    /// another dialect that shares `/` (none does yet; pairkit's `type` will).
    Shared(RoomsSession),
    /// The rooms dialect.
    Rooms(RoomsSession),
    /// The echo dialect.
    Echo,
}

/// The dialects' messages between shards.
pub enum DialectMesh {
    /// The rooms dialect's.
    Rooms(rooms::Mesh),
}

/// The dialects' timers.
pub enum DialectTimer {
    /// The rooms dialect's.
    Rooms(rooms::Timer),
}

/// What an upgrade's path selected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/rooms`.
    Rooms,
    /// `/`: the first message decides.
    Shared,
    /// `/echo`.
    Echo,
}

/// Which dialect a session speaks, for dispatch.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rooms,
    Echo,
}

fn kind_of<D: Dialect<Session = DialectSession>>(eng: &Engine<D>, key: SessionKey) -> Option<Kind> {
    Some(match eng.session(key)?.dialect {
        DialectSession::Shared(_) | DialectSession::Rooms(_) => Kind::Rooms,
        DialectSession::Echo => Kind::Echo,
    })
}

impl Dialects {
    /// The first message on `/` settles the session's dialect. Every first message is the
    /// rooms dialect's today (its handshake, or anything it refuses as one); a dialect
    /// that shares `/` adds here the shape of message that claims the session for it.
    fn settle_shared(eng: &mut Engine<Self>, key: SessionKey) {
        if let Some(session) = eng.session_mut(key) {
            if let DialectSession::Shared(rooms) = &mut session.dialect {
                session.dialect = DialectSession::Rooms(std::mem::take(rooms));
            }
        }
    }
}

impl Dialect for Dialects {
    type Session = DialectSession;
    type Mesh = DialectMesh;
    type Timer = DialectTimer;
    type Route = Route;

    fn new(_shard: ShardId, _shards: usize, cfg: &Arc<Config>) -> Self {
        Dialects {
            rooms: Rooms::new(cfg),
            echo: cfg.echo.clone(),
            rooms_message_bytes_max: cfg.limits.declared_bytes_max(),
        }
    }

    fn metrics(&self) -> Vec<Arc<dyn DialectMetrics>> {
        vec![self.rooms.metrics.clone()]
    }

    fn route(&mut self, upgrade: &Upgrade<'_>) -> Result<Routed<Route>, HttpRefusal> {
        let rooms = |route| Routed {
            route,
            message_bytes_max: self.rooms_message_bytes_max,
        };
        match upgrade.path {
            "/rooms" => Ok(rooms(Route::Rooms)),
            "/" => Ok(rooms(Route::Shared)),
            "/echo" if self.echo.enabled => Ok(Routed {
                route: Route::Echo,
                message_bytes_max: self.echo.message_bytes_max,
            }),
            _ => Err(HttpRefusal::NOT_FOUND),
        }
    }

    fn session(route: &Route) -> DialectSession {
        match route {
            Route::Rooms => DialectSession::Rooms(RoomsSession::new()),
            Route::Shared => DialectSession::Shared(RoomsSession::new()),
            Route::Echo => DialectSession::Echo,
        }
    }

    fn handle_open(&mut self, eng: &mut Engine<Self>, key: SessionKey, route: Route, now: u64) {
        match route {
            Route::Rooms | Route::Shared => self.rooms.handle_open(eng, key, now),
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
            DialectSession::Echo => Echo::handle_message(eng, key, message),
            DialectSession::Shared(_) => {
                Self::settle_shared(eng, key);
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
            Some(Kind::Echo) | None => AfterClose::Gone,
        }
    }

    fn handle_end(&mut self, eng: &mut Engine<Self>, key: SessionKey, now: u64) {
        if kind_of(eng, key) == Some(Kind::Rooms) {
            self.rooms.handle_end(eng, key, now);
        }
    }

    fn handle_timer(&mut self, eng: &mut Engine<Self>, timer: DialectTimer, _now: u64) {
        match timer {
            DialectTimer::Rooms(t) => self.rooms.handle_timer(eng, t),
        }
    }

    fn handle_tick(&mut self, eng: &mut Engine<Self>, now: u64) {
        self.rooms.handle_tick(eng, now);
    }

    fn handle_mesh(&mut self, eng: &mut Engine<Self>, from: ShardId, msg: DialectMesh, now: u64) {
        match msg {
            DialectMesh::Rooms(m) => self.rooms.handle_mesh(eng, from, m, now),
        }
    }

    fn handle_arrival(
        &mut self,
        eng: &mut Engine<Self>,
        key: SessionKey,
        from: SessionAt,
        now: u64,
    ) {
        if kind_of(eng, key) == Some(Kind::Rooms) {
            self.rooms.handle_arrival(eng, key, from, now);
        }
    }

    fn end_turn(&mut self, eng: &mut Engine<Self>, _now: u64) {
        self.rooms.end_turn(eng);
    }

    fn overflow_frame(&mut self, eng: &mut Engine<Self>, key: SessionKey) -> Option<Frame> {
        match kind_of(eng, key)? {
            Kind::Rooms => self.rooms.overflow_frame(eng, key),
            Kind::Echo => None,
        }
    }
}

impl rooms::Host for Dialects {
    fn rooms(session: &DialectSession) -> Option<&RoomsSession> {
        match session {
            DialectSession::Rooms(r) | DialectSession::Shared(r) => Some(r),
            DialectSession::Echo => None,
        }
    }

    fn rooms_mut(session: &mut DialectSession) -> Option<&mut RoomsSession> {
        match session {
            DialectSession::Rooms(r) | DialectSession::Shared(r) => Some(r),
            DialectSession::Echo => None,
        }
    }

    fn mesh(msg: rooms::Mesh) -> DialectMesh {
        DialectMesh::Rooms(msg)
    }

    fn timer(timer: rooms::Timer) -> DialectTimer {
        DialectTimer::Rooms(timer)
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

    fn upgrade(path: &str) -> Upgrade<'_> {
        Upgrade {
            path,
            query: "",
            origin: None,
            peer: None,
        }
    }

    #[test]
    fn each_path_reaches_its_dialect_and_an_unknown_one_is_404() {
        let mut cfg = Config::default();
        let mut d = Dialects::new(ShardId(0), 1, &Arc::new(cfg.clone()));
        let route = |d: &mut Dialects, p| d.route(&upgrade(p)).map(|r| r.route);
        assert_eq!(route(&mut d, "/rooms"), Ok(Route::Rooms));
        assert_eq!(route(&mut d, "/"), Ok(Route::Shared));
        assert_eq!(
            route(&mut d, "/echo"),
            Err(HttpRefusal::NOT_FOUND),
            "off by default"
        );
        assert_eq!(route(&mut d, "/nope"), Err(HttpRefusal::NOT_FOUND));
        assert_eq!(route(&mut d, "/rooms/"), Err(HttpRefusal::NOT_FOUND));
        cfg.echo.enabled = true;
        cfg.echo.message_bytes_max = 1 << 20;
        let mut d = Dialects::new(ShardId(0), 1, &Arc::new(cfg.clone()));
        let echo = d.route(&upgrade("/echo")).unwrap();
        assert_eq!(echo.route, Route::Echo);
        assert_eq!(echo.message_bytes_max, 1 << 20);
        let rooms = d.route(&upgrade("/rooms")).unwrap();
        assert_eq!(rooms.message_bytes_max, cfg.limits.declared_bytes_max());
    }
}
