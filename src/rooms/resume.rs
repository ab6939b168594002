//! Sessions and resume: a dropped session is parked for `session.resume_ttl_ms`; a
//! handshake with its `session_id` (same project) on any shard takes it over — the new
//! connection moves to the shard where the session is parked, which is its rooms' home.
//! Parked sessions are listed on every shard (session id → shard) through the mesh.

use std::sync::Arc;

use crate::core::outbound::Class;
use crate::core::room::MemberAt;
use crate::core::session::{Hello, Phase, RoomsSession};
use crate::core::{by_codec, MeshMsg, RoomKey, SessionKey, ShardCore, ShardId};

use super::{encode, sync};

/// What a parked session's rooms hear.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    /// `room.dropped`: the member's connection dropped; it may come back.
    Dropped,
    /// `room.reconnected`: it came back (and gets a fresh snapshot).
    Reconnected,
}

impl Presence {
    fn t(self) -> &'static str {
        match self {
            Presence::Dropped => "room.dropped",
            Presence::Reconnected => "room.reconnected",
        }
    }
}

/// Tells every shard where a parked session is (`None`: no longer parked).
fn publish_parked(core: &mut ShardCore, session_id: &Arc<str>, at: Option<ShardId>) {
    match at {
        Some(s) => {
            core.parked.insert(session_id.clone(), s);
        }
        None => {
            core.parked.remove(session_id);
        }
    }
    core.post_to_others(|| MeshMsg::Parked {
        session_id: session_id.clone(),
        at,
    });
}

/// The connection dropped: keep the session (and its room seats) for a resume.
pub fn park(core: &mut ShardCore, key: SessionKey, now: u64) {
    let ttl = core.cfg.session.resume_ttl_ms;
    super::matchmaking::forget_ticket(core, key);
    let Some(s) = core.sessions.get_mut(key) else {
        return;
    };
    s.phase = Phase::Parked {
        until_ms: now + ttl,
    };
    s.transport = usize::MAX;
    s.out = Default::default();
    s.park_on_close = false;
    let rs = s.rooms.as_ref().expect("parked sessions are handshaken");
    let session_id: Arc<str> = Arc::from(&*rs.session_id);
    core.parked_here.insert(session_id.clone(), key);
    publish_parked(core, &session_id, Some(core.id));
    announce(core, key, Presence::Dropped);
}

/// The resume window passed: the session leaves its rooms for good.
pub fn expire(core: &mut ShardCore, key: SessionKey, now: u64) {
    let Some(rs) = core.sessions.get(key).and_then(|s| s.rooms.as_ref()) else {
        return;
    };
    let session_id: Arc<str> = Arc::from(&*rs.session_id);
    core.parked_here.remove(&session_id);
    publish_parked(core, &session_id, None);
    super::leave_all(core, key, now);
    core.sessions.remove(key);
}

/// Sends a presence event to every room of a session (remote rooms through the mesh).
fn announce(core: &mut ShardCore, key: SessionKey, presence: Presence) {
    let Some(rs) = core.sessions.get(key).and_then(|s| s.rooms.as_ref()) else {
        return;
    };
    let memberships: Vec<_> = rs
        .memberships
        .iter()
        .filter(|m| m.joined)
        .cloned()
        .collect();
    let (codec, features) = (rs.codec, rs.features);
    for m in memberships {
        if m.home == core.id {
            if let Some(&rk) = core.room_ids.get(&m.room_id) {
                presence_here(core, rk, MemberAt::Local(key), presence);
            }
        } else {
            core.post(
                m.home,
                MeshMsg::RemotePresence {
                    from: key,
                    room_id: m.room_id.clone(),
                    presence,
                    codec,
                    features,
                },
            );
        }
    }
}

/// A presence event in a room whose home is this shard: the other members hear it; on a
/// reconnect the member gets a fresh snapshot.
pub fn presence_here(core: &mut ShardCore, rk: RoomKey, at: MemberAt, presence: Presence) {
    let Some(room) = core.rooms.get(rk) else {
        return;
    };
    let Some(member) = room.members.iter().find(|m| m.at == at) else {
        return;
    };
    let client_id = member.client_id.clone();
    let room_id = room.id.clone();
    core.fan_out(rk, Class::Reliable, Some(at), by_codec, &|w, _| {
        encode::begin(w, presence.t(), None, Some(&room_id), 1);
        w.key("client_id").str(&client_id);
        encode::end(w);
    });
    if presence == Presence::Reconnected {
        sync::send_snapshot(core, rk, at);
    }
}

/// A remote member reconnected with maybe another codec: update its entry first.
pub fn remote_presence(
    core: &mut ShardCore,
    rk: RoomKey,
    at: MemberAt,
    presence: Presence,
    codec: crate::codec::Codec,
    features: crate::core::room::Features,
) {
    if let Some(m) = core.rooms.get_mut(rk).and_then(|r| r.member_at_mut(at)) {
        m.codec = codec;
        m.features = features;
    }
    presence_here(core, rk, at, presence);
}

/// Finishes a handshake on the shard that should own it: resumes the parked session named
/// by `hello.resume` when it is parked here for the same project, otherwise starts a new
/// session. Returns the key now owning the connection.
pub fn finish_handshake(
    core: &mut ShardCore,
    key: SessionKey,
    hello: Hello,
    now: u64,
) -> SessionKey {
    let parked = hello
        .resume
        .as_deref()
        .and_then(|sid| find_parked(core, sid, &hello.project_id));
    match parked {
        Some(p) => take_over(core, key, p, hello, now),
        None => {
            super::open_session(core, key, hello);
            key
        }
    }
}

/// Finishes a handshake here, or moves the connection to the shard where the session it
/// resumes is parked and finishes it there.
pub fn route_handshake(core: &mut ShardCore, key: SessionKey, hello: Hello, now: u64) {
    let elsewhere = hello
        .resume
        .as_deref()
        .and_then(|sid| core.parked.get(sid).copied())
        .filter(|s| *s != core.id);
    match elsewhere {
        Some(shard) => {
            let session = core.sessions.get_mut(key).expect("live session");
            session.pending_hello = Some(Box::new(hello));
            core.request_move(key, shard);
        }
        None => {
            finish_handshake(core, key, hello, now);
        }
    }
}

/// Asks every other shard for an answer before routing a resume this shard knows
/// nothing of. The connection is not read meanwhile (its session waits with its hello).
pub fn probe(core: &mut ShardCore, key: SessionKey, hello: Hello) {
    let others = (core.shards - 1) as u16;
    let session = core.sessions.get_mut(key).expect("live session");
    session.pending_hello = Some(Box::new(hello));
    session.probes = others;
    core.post_to_others(|| MeshMsg::ResumeProbe { from: key });
}

/// One shard answered a probe; the last answer routes the handshake.
pub fn probe_answered(core: &mut ShardCore, key: SessionKey, now: u64) {
    let Some(session) = core.sessions.get_mut(key) else {
        return;
    };
    session.probes = session.probes.saturating_sub(1);
    if session.probes > 0 {
        return;
    }
    let Some(hello) = session.pending_hello.take() else {
        return;
    };
    route_handshake(core, key, *hello, now);
    // Frames that arrived while the probe was out are waiting in the connection.
    core.rereads.push(key);
}

fn find_parked(core: &ShardCore, session_id: &str, project_id: &str) -> Option<SessionKey> {
    let key = *core.parked_here.get(session_id)?;
    let s = core.sessions.get(key)?;
    let same_project = s
        .rooms
        .as_ref()
        .is_some_and(|r| &*r.project_id == project_id);
    (matches!(s.phase, Phase::Parked { .. }) && same_project).then_some(key)
}

/// The new connection (`fresh`) takes over the parked session `parked`.
fn take_over(
    core: &mut ShardCore,
    fresh: SessionKey,
    parked: SessionKey,
    hello: Hello,
    now: u64,
) -> SessionKey {
    let Some(new) = core.sessions.remove(fresh) else {
        return fresh;
    };
    let delay = core.cfg.session.resume_frames_delay_ms;
    let s = core.sessions.get_mut(parked).expect("parked session");
    s.transport = new.transport;
    s.out = new.out;
    s.bucket = new.bucket;
    s.state_bucket = new.state_bucket;
    s.last_rx_ms = now;
    s.pinged = false;
    s.phase = Phase::Open;
    let rs: &mut RoomsSession = s.rooms.as_mut().expect("handshaken");
    rs.codec = hello.codec;
    rs.features = hello.features;
    rs.authenticated = hello.authenticated;
    let session_id: Arc<str> = Arc::from(&*rs.session_id);
    let rs = rs.clone();
    // Local rooms learn the member's (maybe new) codec now; remote ones with the frames.
    let (codec, features) = (rs.codec, rs.features);
    for m in rs.memberships.iter().filter(|m| m.home == core.id) {
        if let Some(member) = core
            .room_ids
            .get(&m.room_id)
            .copied()
            .and_then(|rk| core.rooms.get_mut(rk))
            .and_then(|r| r.member_at_mut(MemberAt::Local(parked)))
        {
            member.codec = codec;
            member.features = features;
        }
    }
    core.parked_here.remove(&session_id);
    publish_parked(core, &session_id, None);
    core.rekeys.push((fresh, parked));
    let frame = super::handshake_ok(core, &rs, true);
    core.send(parked, frame, Class::Reliable);
    core.timers.push((now + delay, parked));
    parked
}

/// The frames that follow a resume after `session.resume_frames_delay_ms`: every room
/// hears `room.reconnected` and the client gets a fresh snapshot of each.
pub fn send_resume_frames(core: &mut ShardCore, key: SessionKey, _now: u64) {
    let open = core
        .sessions
        .get(key)
        .is_some_and(|s| s.phase == Phase::Open);
    if open {
        announce(core, key, Presence::Reconnected);
    }
}
