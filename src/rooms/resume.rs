//! Sessions and resume: a dropped session is parked for `session.resume_ttl_ms`; a
//! handshake with its `session_id` (same project) on any shard takes it over — the new
//! connection moves to the shard where the session is parked, which is its rooms' home.
//! Parked sessions are listed on every shard (session id → shard) through the mesh.

use std::sync::Arc;

use super::{encode, sync, Cx, Host, Mesh, RoomsSession, Timer};
use crate::core::outbound::Class;
use crate::core::session::Phase;
use crate::core::{AfterClose, SessionAt, SessionKey, ShardId};
use crate::rooms::room::Features;
use crate::rooms::{by_codec, room::RoomKey, Hello};

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
fn publish_parked<H: Host>(cx: &mut Cx<'_, H>, session_id: &Arc<str>, at: Option<ShardId>) {
    match at {
        Some(s) => {
            cx.rooms.parked.insert(session_id.clone(), s);
        }
        None => {
            cx.rooms.parked.remove(session_id);
        }
    }
    cx.post_to_others(|| Mesh::Parked {
        session_id: session_id.clone(),
        at,
    });
}

/// The connection is ending: keep the session (and its room seats) for a resume. Its
/// rooms hear `room.dropped`, its ticket goes, every shard learns where it is parked.
pub(crate) fn park<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey, now: u64) -> AfterClose {
    let ttl = cx.eng.cfg.session.resume_ttl_ms;
    super::matchmaking::forget_ticket(cx, key);
    let Some(client) = cx.client(key) else {
        return AfterClose::Gone;
    };
    let session_id: Arc<str> = Arc::from(&*client.session_id);
    cx.rooms.parked_here.insert(session_id.clone(), key);
    let here = cx.eng.id;
    publish_parked(cx, &session_id, Some(here));
    announce(cx, key, Presence::Dropped);
    AfterClose::Park {
        until_ms: now + ttl,
    }
}

/// A session that ends is no longer listed as parked (its resume window passed).
pub(crate) fn unlist<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey) {
    let Some(client) = cx.client(key) else {
        return;
    };
    let session_id: Arc<str> = Arc::from(&*client.session_id);
    if cx.rooms.parked_here.get(&session_id) == Some(&key) {
        cx.rooms.parked_here.remove(&session_id);
        publish_parked(cx, &session_id, None);
    }
}

/// Sends a presence event to every room of a session (remote rooms through the mesh).
fn announce<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey, presence: Presence) {
    let Some(client) = cx.client(key) else {
        return;
    };
    let memberships: Vec<_> = client
        .memberships
        .iter()
        .filter(|m| m.joined)
        .cloned()
        .collect();
    let (codec, features) = (client.codec, client.features);
    for m in memberships {
        if m.home == cx.eng.id {
            if let Some(&rk) = cx.rooms.by_id.get(&m.room_id) {
                let at = cx.eng.here(key);
                presence_here(cx, rk, at, presence);
            }
        } else {
            let msg = Mesh::RemotePresence {
                from: key,
                room_id: m.room_id.clone(),
                presence,
                codec,
                features,
            };
            cx.post(m.home, msg);
        }
    }
}

/// A presence event in a room whose home is this shard: the other members hear it; on a
/// reconnect the member gets a fresh snapshot.
pub(super) fn presence_here<H: Host>(
    cx: &mut Cx<'_, H>,
    rk: RoomKey,
    at: SessionAt,
    presence: Presence,
) {
    let Some(room) = cx.rooms.slab.get(rk) else {
        return;
    };
    let Some(member) = room.member_at(at) else {
        return;
    };
    let client_id = member.client_id.clone();
    let room_id = room.id.clone();
    cx.fan_out(rk, Class::Reliable, Some(at), by_codec, |w, _| {
        encode::begin(w, presence.t(), None, Some(&room_id), 1);
        w.key("client_id").str(&client_id);
        encode::end(w);
    });
    if presence == Presence::Reconnected {
        sync::send_snapshot(cx, rk, at);
    }
}

/// A remote member reconnected with maybe another codec: update its entry first.
pub(super) fn remote_presence<H: Host>(
    cx: &mut Cx<'_, H>,
    rk: RoomKey,
    at: SessionAt,
    presence: Presence,
    codec: crate::codec::Codec,
    features: Features,
) {
    if let Some(m) = cx.rooms.slab.get_mut(rk).and_then(|r| r.member_at_mut(at)) {
        m.codec = codec;
        m.features = features;
    }
    presence_here(cx, rk, at, presence);
}

/// Finishes a handshake on the shard that should own it: resumes the parked session named
/// by `hello.resume` when it is parked here for the same project, otherwise starts a new
/// session.
pub(super) fn finish_handshake<H: Host>(
    cx: &mut Cx<'_, H>,
    key: SessionKey,
    hello: Hello,
    now: u64,
) {
    let parked = hello
        .resume
        .as_deref()
        .and_then(|sid| find_parked(cx, sid, &hello.project_id));
    match parked {
        Some(p) => take_over(cx, key, p, hello, now),
        None => super::open_session(cx, key, hello, now),
    }
}

/// Finishes a handshake here, or moves the connection to the shard where the session it
/// resumes is parked and finishes it there.
pub(super) fn route_handshake<H: Host>(
    cx: &mut Cx<'_, H>,
    key: SessionKey,
    hello: Hello,
    now: u64,
) {
    let elsewhere = hello
        .resume
        .as_deref()
        .and_then(|sid| cx.rooms.parked.get(sid).copied())
        .filter(|s| *s != cx.eng.id);
    match elsewhere {
        Some(shard) => {
            if let Some(RoomsSession::Handshake { hello: held, .. }) = cx.session_mut(key) {
                *held = Some(Box::new(hello));
                cx.eng.request_move(key, shard);
            }
        }
        None => finish_handshake(cx, key, hello, now),
    }
}

/// Asks every other shard for an answer before routing a resume this shard knows
/// nothing of. The connection is not read meanwhile (its session waits with its hello).
pub(super) fn probe<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey, hello: Hello) {
    let others = (cx.eng.shards - 1) as u16;
    if let Some(RoomsSession::Handshake {
        hello: held,
        probes,
    }) = cx.session_mut(key)
    {
        *held = Some(Box::new(hello));
        *probes = others;
        cx.eng.pause_reads(key);
        cx.post_to_others(|| Mesh::ResumeProbe { from: key });
    }
}

/// One shard answered a probe; the last answer routes the handshake.
pub(super) fn probe_answered<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey, now: u64) {
    let Some(RoomsSession::Handshake { hello, probes }) = cx.session_mut(key) else {
        return;
    };
    *probes = probes.saturating_sub(1);
    if *probes > 0 {
        return;
    }
    let Some(hello) = hello.take() else {
        return;
    };
    route_handshake(cx, key, *hello, now);
    // Frames that arrived while the probe was out are waiting in the connection.
    cx.eng.resume_reads(key);
}

fn find_parked<H: Host>(cx: &Cx<'_, H>, session_id: &str, project_id: &str) -> Option<SessionKey> {
    let key = *cx.rooms.parked_here.get(session_id)?;
    let parked = matches!(cx.eng.session(key)?.phase, Phase::Parked { .. });
    let same_project = cx.client(key).is_some_and(|c| &*c.project_id == project_id);
    (parked && same_project).then_some(key)
}

/// The new connection (`fresh`) takes over the parked session `parked`.
fn take_over<H: Host>(
    cx: &mut Cx<'_, H>,
    fresh: SessionKey,
    parked: SessionKey,
    hello: Hello,
    now: u64,
) {
    if cx.eng.take_over(fresh, parked, now).is_none() {
        return;
    }
    let delay = cx.eng.cfg.session.resume_frames_delay_ms;
    let limits = &cx.eng.cfg.limits;
    let state_bucket = crate::core::bucket::TokenBucket::new(
        limits.msgs_per_s * crate::limits::STATE_CONTROL_FACTOR,
        limits.msgs_burst * crate::limits::STATE_CONTROL_FACTOR,
        now,
    );
    let here = cx.eng.id;
    let client = cx
        .client_mut(parked)
        .expect("a parked session is handshaken");
    client.codec = hello.codec;
    client.features = hello.features;
    client.authenticated = hello.authenticated;
    client.state_bucket = state_bucket;
    let session_id: Arc<str> = Arc::from(&*client.session_id);
    let (codec, features) = (client.codec, client.features);
    let local_rooms: Vec<Arc<str>> = client
        .memberships
        .iter()
        .filter(|m| m.home == here)
        .map(|m| m.room_id.clone())
        .collect();
    // Local rooms learn the member's (maybe new) codec now; remote ones with the frames.
    let at = cx.eng.here(parked);
    for room_id in local_rooms {
        if let Some(member) = cx
            .rooms
            .by_id
            .get(&room_id)
            .copied()
            .and_then(|rk| cx.rooms.slab.get_mut(rk))
            .and_then(|r| r.member_at_mut(at))
        {
            member.codec = codec;
            member.features = features;
        }
    }
    cx.rooms.parked_here.remove(&session_id);
    publish_parked(cx, &session_id, None);
    let mut buf = std::mem::take(&mut cx.eng.scratch);
    let mode = cx.eng.cfg.auth.mode;
    let client = cx.client(parked).expect("handshaken");
    let frame = super::handshake_ok(&mut buf, mode, client, true);
    cx.eng.scratch = buf;
    cx.eng.send(parked, frame, Class::Reliable);
    cx.eng
        .set_timer(now + delay, H::timer(Timer::ResumeFrames(parked)));
}

/// The frames that follow a resume after `session.resume_frames_delay_ms`: every room
/// hears `room.reconnected` and the client gets a fresh snapshot of each.
pub(super) fn send_resume_frames<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey) {
    let open = cx.eng.session(key).is_some_and(|s| s.is_open());
    if open {
        announce(cx, key, Presence::Reconnected);
    }
}
