//! The rooms dialect ("Message Catalog"): handshake, rooms, room messages, state frames.
//! Decodes frames into commands (`decode`), applies them to the shard core's rooms and
//! sessions, and encodes replies and broadcasts (`encode`). Sockets, threads and the mesh
//! transport are not here; cross-shard work goes out as `MeshMsg`s.

pub mod decode;
pub mod encode;
pub mod matchmaking;
pub mod resume;
pub mod sync;

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::auth;
use crate::codec::{self, Codec, Value};
use crate::core::logic::{self, Action, Input, RoomCtx};
use crate::core::outbound::Class;
use crate::core::room::{home_shard, Member, MemberAt, Room, RoomOptions};
use crate::core::session::{Hello, Membership, PendingJoin, Phase, RoomsSession};
use crate::core::state::Op;
use crate::core::{
    by_codec, by_codec_and_bin, Listing, MeshMsg, RemoteJoin, RoomKey, SessionKey, ShardCore,
    ShardId,
};
use crate::metrics::DropReason;
use decode::{Command, ErrorCode, Refusal};

/// The room type of a join that names none (and of a room id that names none).
pub const DEFAULT_ROOM_TYPE: &str = "echo_room";

/// A room type clients may use: registered in `rooms.types` and built in.
pub(crate) fn registered_type(core: &ShardCore, name: &str) -> Result<&'static str, Refusal> {
    let registered = core.cfg.rooms.types.iter().any(|t| t == name);
    match logic::builtin(name).filter(|_| registered) {
        Some((room_type, _)) => Ok(room_type),
        None => Err(Refusal::new(
            ErrorCode::UnknownRoomType,
            format!("unknown room type {name:?}"),
        )),
    }
}

/// Where an answer goes: the session's codec and location.
#[derive(Clone, Copy)]
struct Peer {
    at: MemberAt,
    codec: Codec,
}

fn peer_of(core: &ShardCore, key: SessionKey) -> Option<Peer> {
    let rs = core.sessions.get(key)?.rooms.as_ref()?;
    Some(Peer {
        at: MemberAt::Local(key),
        codec: rs.codec,
    })
}

/// Sends `error {code, reason}` to a local session (handshake errors go out as JSON).
pub fn send_error(core: &mut ShardCore, key: SessionKey, code: &str, reason: &str) {
    let codec = core
        .sessions
        .get(key)
        .and_then(|s| s.rooms.as_ref())
        .map_or(Codec::Json, |r| r.codec);
    core.metrics.error(code);
    let frame = encode::error(codec, &mut core.scratch, None, code, reason);
    core.send(key, frame, Class::Reliable);
}

/// A failed handshake: `error {code, reason}` in JSON, then close 1008.
pub fn fail_handshake(core: &mut ShardCore, key: SessionKey, code: &str, reason: &str) {
    send_error(core, key, code, reason);
    core.close(key, 1008, code);
}

/// Answers a refused request: `rpc.response {ok:false}` when it had an id, else `error`.
fn refuse(
    core: &mut ShardCore,
    peer: Peer,
    rid: Option<&str>,
    room: Option<&str>,
    refusal: &Refusal,
) {
    let code = refusal.code.as_str();
    core.metrics.error(code);
    let frame = match rid {
        Some(rid) => encode::rpc_error(
            peer.codec,
            &mut core.scratch,
            rid,
            room,
            code,
            &refusal.reason,
        ),
        None => encode::error(peer.codec, &mut core.scratch, room, code, &refusal.reason),
    };
    core.send_to(peer.at, frame, Class::Reliable);
}

/// `rpc.response {ok:true}` with no other fields.
fn ack(core: &mut ShardCore, peer: Peer, rid: Option<&str>, room: Option<&str>) {
    if let Some(rid) = rid {
        let frame = encode::rpc_ok(peer.codec, &mut core.scratch, rid, room, 0, |_| {});
        core.send_to(peer.at, frame, Class::Reliable);
    }
}

/// One complete message from a session.
pub fn handle_frame(core: &mut ShardCore, key: SessionKey, bytes: &mut [u8], now: u64) {
    let Some(session) = core.sessions.get(key) else {
        return;
    };
    match session.phase {
        Phase::Closing | Phase::Parked { .. } => {}
        Phase::ExpectHandshake { .. } => handshake(core, key, bytes, now),
        Phase::Open => envelope(core, key, bytes, now),
    }
}

fn handshake(core: &mut ShardCore, key: SessionKey, bytes: &mut [u8], now: u64) {
    if bytes.len() > core.cfg.limits.frame_bytes_max {
        return fail_handshake(core, key, "bad_handshake", "handshake frame too large");
    }
    let unix_now = core.unix_ms(now);
    let hello = read_hello(&mut core.decoder, &core.cfg, &core.secrets, bytes, unix_now);
    let hello = match hello {
        Ok(h) => h,
        Err((code, reason)) => return fail_handshake(core, key, code, &reason),
    };
    let elsewhere = hello
        .resume
        .as_deref()
        .and_then(|sid| resume::parked_elsewhere(core, sid));
    match elsewhere {
        Some(shard) => {
            // The session to resume is parked on another shard: move there to finish.
            let session = core.sessions.get_mut(key).expect("live session");
            session.pending_hello = Some(hello);
            core.request_move(key, shard);
        }
        None => {
            resume::finish_handshake(core, key, hello, now);
        }
    }
}

/// Decodes, validates and authenticates a handshake frame.
fn read_hello(
    decoder: &mut codec::Decoder,
    cfg: &crate::config::Config,
    secrets: &auth::Secrets,
    bytes: &mut [u8],
    unix_now: u64,
) -> Result<Hello, (&'static str, String)> {
    let value = decoder
        .decode(Codec::Json, bytes)
        .map_err(|_| ("bad_handshake", "handshake is not JSON".to_string()))?;
    let hello = decode::handshake(&value).map_err(|r| (r.code.as_str(), r.reason.to_string()))?;
    let authenticated = auth::authenticate(
        cfg.auth.mode,
        secrets,
        hello.project_id,
        hello.token,
        unix_now,
    )
    .map_err(|e| ("unauthorized", e.reason().to_string()))?;
    Ok(Hello {
        codec: hello.codec,
        project_id: hello.project_id.into(),
        authenticated,
        features: hello.features,
        resume: hello.session_id.map(Box::from),
    })
}

/// Starts a new session on a validated handshake (`resumed:false`).
pub(crate) fn open_session(core: &mut ShardCore, key: SessionKey, hello: Hello) {
    let session_id = core.random_hex(16);
    let client_id: Arc<str> = Arc::from(format!("c{}", core.random_hex(6)));
    let rooms = RoomsSession {
        codec: hello.codec,
        session_id: session_id.into(),
        client_id,
        project_id: hello.project_id,
        authenticated: hello.authenticated,
        features: hello.features,
        memberships: Default::default(),
        inflight: Default::default(),
        ticket: false,
    };
    let frame = handshake_ok(core, &rooms, false);
    let Some(session) = core.sessions.get_mut(key) else {
        return;
    };
    session.rooms = Some(rooms);
    session.phase = Phase::Open;
    core.send(key, frame, Class::Reliable);
}

/// `handshake.ok` for a new or resumed session.
pub(crate) fn handshake_ok(core: &mut ShardCore, rs: &RoomsSession, resumed: bool) -> codec::Frame {
    let f = rs.features;
    let accepted: Vec<&str> = [
        ("crc32", f.crc32),
        ("nested_ops", f.nested_ops),
        ("bin_bytes", f.bin_bytes),
    ]
    .iter()
    .filter(|(_, on)| *on)
    .map(|(name, _)| *name)
    .collect();
    let len = 7 + u32::from(f.crc32) + u32::from(!accepted.is_empty());
    let mode_text = core.cfg.auth.mode.to_string();
    encode::frame(
        rs.codec,
        &mut core.scratch,
        "handshake.ok",
        None,
        None,
        len,
        |w| {
            w.key("codec").str(rs.codec.name());
            w.key("session_id").str(&rs.session_id);
            w.key("resumed").bool(resumed);
            w.key("auth_mode").str(&mode_text);
            w.key("authenticated").bool(rs.authenticated);
            w.key("project_id").str(&rs.project_id);
            if f.crc32 {
                w.key("checksum").str("crc32");
            }
            w.key("client_id").str(&rs.client_id);
            if !accepted.is_empty() {
                w.key("features").array(accepted.len() as u32);
                for a in &accepted {
                    w.str(a);
                }
                w.end_array();
            }
        },
    )
}

fn envelope(core: &mut ShardCore, key: SessionKey, bytes: &mut [u8], now: u64) {
    let Some(peer) = peer_of(core, key) else {
        return;
    };
    let too_large = bytes.len() > core.cfg.limits.frame_bytes_max;
    // A frame for a room on another shard is forwarded as it came, so keep the original
    // bytes when this session has such rooms (JSON decoding unescapes in place).
    let has_remote = core
        .sessions
        .get(key)
        .and_then(|s| s.rooms.as_ref())
        .is_some_and(|rs| rs.memberships.iter().any(|m| m.home != core.id));
    let original: Option<Box<[u8]>> = has_remote.then(|| Box::from(&*bytes));
    let failure = match core.decoder.decode(peer.codec, bytes) {
        Ok(value) if too_large => {
            core.metrics.dropped(DropReason::TooLarge);
            let refusal = Refusal::new(
                ErrorCode::PayloadTooLarge,
                "frame over limits.frame_bytes_max",
            );
            refuse(core, peer, decode::rid_of(&value), None, &refusal);
            None
        }
        Ok(value) => {
            dispatch(core, key, peer, &value, original, now);
            None
        }
        Err(_) if too_large => Some(Refusal::new(
            ErrorCode::PayloadTooLarge,
            "frame over limits.frame_bytes_max",
        )),
        Err(e) => Some(Refusal::new(ErrorCode::BadRequest, e.to_string())),
    };
    if let Some(refusal) = failure {
        if refusal.code == ErrorCode::PayloadTooLarge {
            core.metrics.dropped(DropReason::TooLarge);
        }
        // Answer the RPC even so, when its id can still be read.
        let rid = codec::recover::top_level_str(peer.codec, bytes, "rid");
        refuse(core, peer, rid.as_deref(), None, &refusal);
    }
}

fn dispatch(
    core: &mut ShardCore,
    key: SessionKey,
    peer: Peer,
    value: &Value<'_>,
    original: Option<Box<[u8]>>,
    now: u64,
) {
    let env = match decode::envelope(value) {
        Ok(e) => e,
        Err(r) => return refuse(core, peer, decode::rid_of(value), None, &r),
    };
    let state_control = matches!(env.t, "state.ack" | "state.resync");
    let session = core.sessions.get_mut(key).expect("live session");
    let bucket = if state_control {
        &mut session.state_bucket
    } else {
        &mut session.bucket
    };
    match bucket.take(now, crate::limits::ABUSE_FACTOR) {
        crate::core::bucket::Verdict::Allow => {}
        crate::core::bucket::Verdict::Limited => {
            core.metrics.dropped(DropReason::RateLimited);
            return refuse(
                core,
                peer,
                env.rid,
                env.room,
                &Refusal::new(ErrorCode::RateLimited, "over limits.msgs_per_s"),
            );
        }
        crate::core::bucket::Verdict::Abusive => {
            send_error(
                core,
                key,
                "rate_limited",
                "far over limits.msgs_per_s: closing",
            );
            return core.close(key, 1008, "rate_limited");
        }
    }
    let relay_types = &core.cfg.policy.unreliable_types;
    let cmd = match decode::command(&env, relay_types) {
        Ok(c) => c,
        Err(r) => return refuse(core, peer, env.rid, env.room, &r),
    };
    match cmd {
        Command::Join { room_type, options } => {
            join(core, key, peer, &env, room_type, options, now)
        }
        Command::Leave => leave(core, key, peer, &env, now),
        Command::List { room_type } => list(core, peer, env.rid, room_type),
        Command::Enqueue { room_type, size } => {
            if let Err(r) = matchmaking::enqueue(core, key, room_type, size, env.rid, now) {
                refuse(core, peer, env.rid, None, &r);
            }
        }
        Command::Dequeue => matchmaking::dequeue(core, key, env.rid, now),
        Command::Unknown => {
            let r = Refusal::new(
                ErrorCode::UnknownType,
                format!("unknown message type {:?}", env.t),
            );
            refuse(core, peer, env.rid, env.room, &r)
        }
        cmd => {
            let Some(room_id) = env.room else {
                // A late ack (the room was just left) is not worth an error, unless it is an RPC.
                if matches!(cmd, Command::StateAck { .. }) && env.rid.is_none() {
                    return;
                }
                return refuse(
                    core,
                    peer,
                    env.rid,
                    None,
                    &Refusal::new(ErrorCode::BadRequest, "no room named"),
                );
            };
            let rs = core
                .sessions
                .get(key)
                .and_then(|s| s.rooms.as_ref())
                .expect("open session");
            let home = match rs.membership(room_id) {
                Some(m) if m.joined => m.home,
                _ => {
                    if matches!(cmd, Command::StateAck { .. }) && env.rid.is_none() {
                        return;
                    }
                    let r = Refusal::new(ErrorCode::NotInRoom, format!("not in room {room_id:?}"));
                    return refuse(core, peer, env.rid, Some(room_id), &r);
                }
            };
            if home == core.id {
                let Some(&rk) = core.room_ids.get(room_id) else {
                    let r = Refusal::new(ErrorCode::RoomNotFound, "room is gone");
                    return refuse(core, peer, env.rid, Some(room_id), &r);
                };
                room_input(core, rk, peer, &env, cmd, now);
            } else {
                let bytes = original.unwrap_or_default();
                let room_id: Arc<str> = Arc::from(room_id);
                core.post(
                    home,
                    MeshMsg::RemoteInput {
                        from: key,
                        room_id,
                        codec: peer.codec,
                        bytes,
                    },
                );
            }
        }
    }
}

fn join(
    core: &mut ShardCore,
    key: SessionKey,
    peer: Peer,
    env: &decode::Envelope<'_, '_>,
    room_type: Option<&str>,
    options: Option<&Value<'_>>,
    now: u64,
) {
    // No type: join the room whatever its type, or create an echo_room.
    let room_type = match room_type.map(|t| registered_type(core, t)).transpose() {
        Ok(t) => t,
        Err(r) => return refuse(core, peer, env.rid, env.room, &r),
    };
    let room_id: Arc<str> = match env.room {
        Some(r) if !r.is_empty() => Arc::from(r),
        _ => Arc::from(format!(
            "{}:default",
            room_type.unwrap_or(DEFAULT_ROOM_TYPE)
        )),
    };
    let rooms_max = core.cfg.limits.rooms_per_session_max;
    let rs = core
        .sessions
        .get(key)
        .and_then(|s| s.rooms.as_ref())
        .expect("open session");
    if rs.membership(&room_id).is_some() {
        let r = Refusal::new(ErrorCode::AlreadyJoined, "already in this room");
        return refuse(core, peer, env.rid, Some(&room_id), &r);
    }
    if rs.memberships.len() >= rooms_max {
        let r = Refusal::new(
            ErrorCode::BadRequest,
            "in too many rooms (limits.rooms_per_session_max)",
        );
        return refuse(core, peer, env.rid, Some(&room_id), &r);
    }
    if let Some(rid) = env.rid {
        if rs.inflight.iter().any(|r| &**r == rid) {
            let r = Refusal::new(ErrorCode::BadRequest, "duplicate in-flight rid");
            return refuse(core, peer, env.rid, Some(&room_id), &r);
        }
    }
    let pending = PendingJoin {
        rid: env.rid.map(Box::from),
        room_id: room_id.clone(),
        room_type,
        options: options.map(codec::to_json),
    };
    let home = home_shard(&room_id, core.shards);
    let no_rooms = rs.memberships.is_empty();
    if home == core.id {
        join_here(core, MemberAt::Local(key), pending, now);
    } else if no_rooms {
        // Move the session to the room's home: the room and its members share one core.
        let session = core.sessions.get_mut(key).expect("live session");
        session.pending_join = Some(pending);
        core.request_move(key, home);
    } else {
        // Already in rooms here: stay, and be a remote member of that room.
        let rs = core
            .sessions
            .get_mut(key)
            .and_then(|s| s.rooms.as_mut())
            .expect("open session");
        rs.memberships.push(Membership {
            room_id: room_id.clone(),
            home,
            joined: false,
        });
        if let Some(rid) = env.rid {
            rs.inflight.push(rid.into());
        }
        let msg = RemoteJoin {
            from: key,
            client_id: rs.client_id.clone(),
            codec: rs.codec,
            features: rs.features,
            join: pending,
        };
        core.post(home, MeshMsg::RemoteJoin(Box::new(msg)));
    }
}

fn member_of(core: &ShardCore, at: MemberAt, remote: Option<&RemoteJoin>) -> Option<Member> {
    match (at, remote) {
        (MemberAt::Local(key), _) => {
            let rs = core.sessions.get(key)?.rooms.as_ref()?;
            Some(Member {
                client_id: rs.client_id.clone(),
                at,
                codec: rs.codec,
                features: rs.features,
                acked_seq: 0,
            })
        }
        (MemberAt::Remote(..), Some(rj)) => Some(Member {
            client_id: rj.client_id.clone(),
            at,
            codec: rj.codec,
            features: rj.features,
            acked_seq: 0,
        }),
        (MemberAt::Remote(..), None) => None,
    }
}

fn options_of(value: Option<&serde_json::Value>) -> RoomOptions {
    let Some(o) = value else {
        return RoomOptions::default();
    };
    RoomOptions {
        max_players: o
            .get("max_players")
            .and_then(|m| {
                m.as_u64().or_else(|| {
                    m.as_f64()
                        .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                        .map(|f| f as u64)
                })
            })
            .map(|m| m.min(u64::from(u32::MAX)) as u32),
        private: o.get("private").and_then(|p| p.as_bool()).unwrap_or(false),
        metadata: o.get("metadata").filter(|m| !m.is_null()).cloned(),
    }
}

pub(crate) fn listing(room: &Room) -> Listing {
    Listing {
        room_type: room.room_type,
        members: room.members.len(),
        max_players: room.options.max_players,
        private: room.options.private,
        metadata: room.options.metadata.clone(),
    }
}

/// Joins a member to a room whose home is this shard (creating the room if needed), in
/// the order the protocol fixes: rpc reply, `room.joined` and `room.members` to all,
/// `state.snapshot` to the joiner.
pub fn join_here(core: &mut ShardCore, at: MemberAt, join: PendingJoin, now: u64) {
    join_member(core, at, None, join, now);
}

fn join_member(
    core: &mut ShardCore,
    at: MemberAt,
    remote: Option<&RemoteJoin>,
    join: PendingJoin,
    now: u64,
) {
    let Some(member) = member_of(core, at, remote) else {
        return;
    };
    let peer = Peer {
        at,
        codec: member.codec,
    };
    let rid = join.rid.as_deref();
    let refuse_join = |core: &mut ShardCore, r: Refusal| {
        refuse(core, peer, rid, Some(&join.room_id), &r);
        if let MemberAt::Remote(shard, key) = at {
            core.post(
                shard,
                MeshMsg::JoinResult {
                    session: key,
                    room_id: join.room_id.clone(),
                    ok: false,
                    rid: join.rid.clone(),
                },
            );
        }
    };
    let rk = match core.room_ids.get(&join.room_id) {
        Some(&rk) => {
            let room = core.rooms.get(rk).expect("indexed room");
            if join.room_type.is_some_and(|t| t != room.room_type) {
                let r = Refusal::new(
                    ErrorCode::BadRequest,
                    format!("room exists with type {}", room.room_type),
                );
                return refuse_join(core, r);
            }
            if room.has(at) {
                return refuse_join(
                    core,
                    Refusal::new(ErrorCode::AlreadyJoined, "already in this room"),
                );
            }
            if room.is_full(core.cfg.limits.room_members_max) {
                return refuse_join(core, Refusal::new(ErrorCode::RoomFull, "room is full"));
            }
            if room.is_reserved(now) && !room.reserved.contains(&member.client_id) {
                let r = Refusal::new(ErrorCode::RoomFull, "seats are reserved for a match");
                return refuse_join(core, r);
            }
            rk
        }
        None => create_room(core, &join, now),
    };
    if let MemberAt::Remote(shard, key) = at {
        core.post(
            shard,
            MeshMsg::JoinResult {
                session: key,
                room_id: join.room_id.clone(),
                ok: true,
                rid: join.rid.clone(),
            },
        );
    } else if let MemberAt::Local(key) = at {
        let rs = core
            .sessions
            .get_mut(key)
            .and_then(|s| s.rooms.as_mut())
            .expect("open session");
        rs.memberships.push(Membership {
            room_id: join.room_id.clone(),
            home: core.id,
            joined: true,
        });
    }
    let client_id = member.client_id.clone();
    let room = core.rooms.get_mut(rk).expect("live room");
    room.members.push(member);
    let room_type = room.room_type;
    let room_id = room.id.clone();
    if let Some(rid) = rid {
        let frame = encode::rpc_ok(peer.codec, &mut core.scratch, rid, Some(&room_id), 3, |w| {
            w.key("room").str(&room_id);
            w.key("room_type").str(room_type);
            w.key("client_id").str(&client_id);
        });
        core.send_to(at, frame, Class::Reliable);
    }
    core.fan_out(rk, Class::Reliable, None, by_codec, &|w, _| {
        encode::begin(w, "room.joined", None, Some(&room_id), 1);
        w.key("client_id").str(&client_id);
        encode::end(w);
    });
    broadcast_members(core, rk);
    sync::send_snapshot(core, rk, at);
    run_hook(core, rk, now, |logic, ctx| logic.on_join(ctx, &client_id));
    let l = listing(core.rooms.get(rk).expect("live room"));
    core.publish_listing(&room_id, Some(l));
}

pub(crate) fn create_room(core: &mut ShardCore, join: &PendingJoin, now: u64) -> RoomKey {
    let (room_type, logic) =
        logic::builtin(join.room_type.unwrap_or(DEFAULT_ROOM_TYPE)).expect("registered type");
    let room = Room {
        id: join.room_id.clone(),
        room_type,
        members: Vec::new(),
        options: options_of(join.options.as_ref()),
        state: serde_json::Value::Object(Default::default()),
        seq: 0,
        logic,
        pending_ops: Vec::new(),
        reserved: Vec::new(),
        reserved_until_ms: 0,
        digest: crate::core::canon::StateDigest::build(&serde_json::Value::Object(
            Default::default(),
        )),
    };
    let rk: RoomKey = core.rooms.insert(room);
    core.room_ids.insert(join.room_id.clone(), rk);
    crate::metrics::ShardMetrics::add(&core.metrics.rooms, 1);
    run_hook(core, rk, now, |logic, ctx| logic.on_create(ctx));
    // State set before anyone joined is the initial state, not a patch.
    let room = core.rooms.get_mut(rk).expect("live room");
    room.pending_ops.clear();
    room.digest = crate::core::canon::StateDigest::build(&room.state);
    core.dirty_rooms.retain(|r| *r != rk);
    rk
}

fn broadcast_members(core: &mut ShardCore, rk: RoomKey) {
    let Some(room) = core.rooms.get(rk) else {
        return;
    };
    let ids: Vec<Arc<str>> = room.members.iter().map(|m| m.client_id.clone()).collect();
    let room_id = room.id.clone();
    core.fan_out(rk, Class::Reliable, None, by_codec, &|w, _| {
        encode::begin(w, "room.members", None, Some(&room_id), 2);
        w.key("members").array(ids.len() as u32);
        for id in &ids {
            w.str(id);
        }
        w.end_array();
        w.key("count").u64(ids.len() as u64);
        encode::end(w);
    });
}

/// Runs a logic hook and carries out the actions it asked for (no input to relay).
fn run_hook(
    core: &mut ShardCore,
    rk: RoomKey,
    now: u64,
    hook: impl FnOnce(&mut dyn logic::RoomLogic, &mut RoomCtx<'_>),
) {
    let mut actions = std::mem::take(&mut core.actions);
    if let Some(room) = core.rooms.get_mut(rk) {
        let Room {
            logic,
            state,
            members,
            ..
        } = room;
        hook(
            logic.as_mut(),
            &mut RoomCtx::new(state, members.len(), &mut actions),
        );
    }
    run_actions(core, rk, &mut actions, None, now);
    core.actions = actions;
}

/// The input being handled, for `Action::Relay`.
struct Relayed<'x> {
    input: &'x Input<'x>,
    class: Class,
}

fn run_actions(
    core: &mut ShardCore,
    rk: RoomKey,
    actions: &mut Vec<Action>,
    relayed: Option<&Relayed<'_>>,
    _now: u64,
) {
    for action in actions.drain(..) {
        let Some(room) = core.rooms.get_mut(rk) else {
            return;
        };
        let room_id = room.id.clone();
        match action {
            Action::Relay => {
                let Some(r) = relayed else { continue };
                let input = r.input;
                core.fan_out(rk, r.class, None, by_codec_and_bin, &|w, m| {
                    encode::relayed_message(
                        w,
                        m,
                        &room_id,
                        input.msg_type,
                        input.data,
                        input.bytes_b64,
                        input.client_id,
                    );
                });
            }
            Action::Broadcast { msg_type, data } => {
                core.fan_out(rk, Class::Reliable, None, by_codec, &|w, _| {
                    encode::begin(w, "room.message", None, Some(&room_id), 2);
                    w.key("type").str(&msg_type).key("data").json(&data);
                    encode::end(w);
                });
            }
            Action::SendTo {
                client_id,
                msg_type,
                data,
            } => {
                let Some(m) = room.member(&client_id) else {
                    continue;
                };
                let (at, codec) = (m.at, m.codec);
                let frame = encode::frame(
                    codec,
                    &mut core.scratch,
                    "room.message",
                    None,
                    Some(&room_id),
                    2,
                    |w| {
                        w.key("type").str(&msg_type).key("data").json(&data);
                    },
                );
                core.send_to(at, frame, Class::Reliable);
            }
            Action::Set { path, value } => sync::apply_op(core, rk, Op::Set(path, value)),
            Action::Del { path } => sync::apply_op(core, rk, Op::Del(path)),
        }
    }
}

fn unreliable_key(client_id: &str, msg_type: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    client_id.hash(&mut h);
    msg_type.hash(&mut h);
    h.finish() | 1
}

/// A command for a room whose home is this shard, from a member wherever it lives.
fn room_input(
    core: &mut ShardCore,
    rk: RoomKey,
    sender: Peer,
    env: &decode::Envelope<'_, '_>,
    cmd: Command<'_, '_>,
    now: u64,
) {
    let at = sender.at;
    let Some(room) = core.rooms.get(rk) else {
        return;
    };
    let Some(member) = room.members.iter().find(|m| m.at == at) else {
        // A remote session's frame raced its leave: still answer its RPC.
        let (r, room_id) = (
            Refusal::new(ErrorCode::NotInRoom, "not in this room"),
            room.id.clone(),
        );
        return refuse(core, sender, env.rid, Some(&room_id), &r);
    };
    let peer = Peer {
        at,
        codec: member.codec,
    };
    let client_id = member.client_id.clone();
    let room_id = room.id.clone();
    match cmd {
        Command::Message {
            msg_type,
            data,
            bytes_b64,
        } => {
            let unreliable = core
                .cfg
                .policy
                .unreliable_room_message_types
                .iter()
                .any(|t| *t == *msg_type);
            let class = if unreliable {
                Class::Unreliable(unreliable_key(&client_id, &msg_type))
            } else {
                Class::Reliable
            };
            let input = Input {
                msg_type: &msg_type,
                data,
                bytes_b64,
                client_id: &client_id,
            };
            let mut actions = std::mem::take(&mut core.actions);
            {
                let room = core.rooms.get_mut(rk).expect("live room");
                let Room {
                    logic,
                    state,
                    members,
                    ..
                } = room;
                logic.on_message(
                    &mut RoomCtx::new(state, members.len(), &mut actions),
                    &input,
                );
            }
            run_actions(
                core,
                rk,
                &mut actions,
                Some(&Relayed {
                    input: &input,
                    class,
                }),
                now,
            );
            core.actions = actions;
            ack(core, peer, env.rid, Some(&room_id));
        }
        Command::Relay => {
            let class = Class::Unreliable(unreliable_key(&client_id, env.t));
            let t = env.t;
            let p = env.p;
            core.fan_out(rk, class, Some(at), by_codec, &|w, _| {
                let len = 3 + u32::from(p.is_some());
                w.map(len + 1)
                    .key("v")
                    .u64(1)
                    .key("t")
                    .str(t)
                    .key("room")
                    .str(&room_id);
                w.key("from").str(&client_id);
                if let Some(p) = p {
                    w.key("p").value(p);
                }
                w.end_map();
            });
            ack(core, peer, env.rid, Some(&room_id));
        }
        Command::StateAck { seq, checksum } => {
            sync::handle_ack(core, rk, at, seq, checksum);
            ack(core, peer, env.rid, Some(&room_id));
        }
        Command::StateResync => {
            sync::queue_resync(core, rk, at);
            ack(core, peer, env.rid, Some(&room_id));
        }
        Command::Join { .. }
        | Command::Leave
        | Command::List { .. }
        | Command::Enqueue { .. }
        | Command::Dequeue
        | Command::Unknown => {}
    }
}

fn leave(
    core: &mut ShardCore,
    key: SessionKey,
    peer: Peer,
    env: &decode::Envelope<'_, '_>,
    now: u64,
) {
    let rs = core
        .sessions
        .get(key)
        .and_then(|s| s.rooms.as_ref())
        .expect("open session");
    let Some(room_id) = env.room else {
        return refuse(
            core,
            peer,
            env.rid,
            None,
            &Refusal::new(ErrorCode::BadRequest, "no room named"),
        );
    };
    let Some(m) = rs.membership(room_id).filter(|m| m.joined).cloned() else {
        let r = Refusal::new(ErrorCode::NotInRoom, format!("not in room {room_id:?}"));
        return refuse(core, peer, env.rid, Some(room_id), &r);
    };
    let rs = core
        .sessions
        .get_mut(key)
        .and_then(|s| s.rooms.as_mut())
        .expect("open session");
    rs.forget(room_id);
    if m.home == core.id {
        leave_here(core, MemberAt::Local(key), &m.room_id, env.rid, now);
    } else {
        core.post(
            m.home,
            MeshMsg::RemoteLeave {
                from: key,
                room_id: m.room_id,
                rid: env.rid.map(Box::from),
            },
        );
    }
}

/// A member leaves a room whose home is this shard: `room.left` and `room.members` to the
/// rest; an empty room is disposed.
fn leave_here(core: &mut ShardCore, at: MemberAt, room_id: &str, rid: Option<&str>, now: u64) {
    let Some(&rk) = core.room_ids.get(room_id) else {
        return;
    };
    let room = core.rooms.get_mut(rk).expect("indexed room");
    let Some(member) = room.remove(at) else {
        return;
    };
    let room_id = room.id.clone();
    ack(
        core,
        Peer {
            at,
            codec: member.codec,
        },
        rid,
        Some(&room_id),
    );
    let client_id = member.client_id.clone();
    core.fan_out(rk, Class::Reliable, None, by_codec, &|w, _| {
        encode::begin(w, "room.left", None, Some(&room_id), 1);
        w.key("client_id").str(&client_id);
        encode::end(w);
    });
    broadcast_members(core, rk);
    run_hook(core, rk, now, |logic, ctx| logic.on_leave(ctx, &client_id));
    let room = core.rooms.get(rk).expect("live room");
    if room.members.is_empty() && !room.is_reserved(now) {
        dispose_room(core, rk);
    } else {
        let l = listing(room);
        core.publish_listing(&room_id, Some(l));
    }
}

/// Removes a room from this shard and from every shard's directory.
fn dispose_room(core: &mut ShardCore, rk: RoomKey) {
    let Some(room) = core.rooms.remove(rk) else {
        return;
    };
    core.room_ids.remove(&room.id);
    core.dirty_rooms.retain(|r| *r != rk);
    core.resyncs.retain(|(r, _)| *r != rk);
    crate::metrics::ShardMetrics::sub(&core.metrics.rooms, 1);
    core.publish_listing(&room.id, None);
}

/// A session ends: it leaves every room, wherever the room lives.
pub fn leave_all(core: &mut ShardCore, key: SessionKey, now: u64) {
    let Some(rs) = core.sessions.get_mut(key).and_then(|s| s.rooms.as_mut()) else {
        return;
    };
    let memberships = std::mem::take(&mut rs.memberships);
    for m in memberships {
        if m.home == core.id {
            leave_here(core, MemberAt::Local(key), &m.room_id, None, now);
        } else {
            core.post(
                m.home,
                MeshMsg::RemoteLeave {
                    from: key,
                    room_id: m.room_id,
                    rid: None,
                },
            );
        }
    }
}

fn list(core: &mut ShardCore, peer: Peer, rid: Option<&str>, room_type: Option<&str>) {
    let Some(rid) = rid else { return };
    let rooms: Vec<(&Arc<str>, &Listing)> = core
        .directory
        .iter()
        .filter(|(_, l)| !l.private && room_type.is_none_or(|t| t == l.room_type))
        .collect();
    let mut buf = std::mem::take(&mut core.scratch);
    let frame = encode::rpc_ok(peer.codec, &mut buf, rid, None, 1, |w| {
        w.key("rooms").array(rooms.len() as u32);
        for (id, l) in &rooms {
            let len = 3 + u32::from(l.max_players.is_some()) + u32::from(l.metadata.is_some());
            w.map(len)
                .key("id")
                .str(id)
                .key("room_type")
                .str(l.room_type);
            w.key("members").u64(l.members as u64);
            if let Some(m) = l.max_players {
                w.key("max_players").u64(u64::from(m));
            }
            if let Some(meta) = &l.metadata {
                w.key("metadata").json(meta);
            }
            w.end_map();
        }
        w.end_array();
    });
    core.scratch = buf;
    core.send_to(peer.at, frame, Class::Reliable);
}

/// Room ticks: each room's `on_tick`.
/// A reserved room whose reservation ended with nobody in it is disposed.
pub fn tick_rooms(core: &mut ShardCore, now: u64) {
    let keys: Vec<RoomKey> = core.rooms.keys().collect();
    for rk in keys {
        run_hook(core, rk, now, |logic, ctx| logic.on_tick(ctx, now));
        let Some(room) = core.rooms.get_mut(rk) else {
            continue;
        };
        if !room.reserved.is_empty() && now >= room.reserved_until_ms {
            room.reserved.clear();
            if room.members.is_empty() {
                dispose_room(core, rk);
            }
        }
    }
}

/// Rooms-dialect mesh messages.
pub fn handle_mesh(core: &mut ShardCore, from: ShardId, msg: MeshMsg, now: u64) {
    match msg {
        MeshMsg::RemoteJoin(rj) => {
            let at = MemberAt::Remote(from, rj.from);
            let join = rj.join.clone();
            join_member(core, at, Some(&rj), join, now);
        }
        MeshMsg::JoinResult {
            session,
            room_id,
            ok,
            rid,
        } => {
            let Some(rs) = core
                .sessions
                .get_mut(session)
                .and_then(|s| s.rooms.as_mut())
            else {
                if ok {
                    core.post(
                        from,
                        MeshMsg::RemoteLeave {
                            from: session,
                            room_id,
                            rid: None,
                        },
                    );
                }
                return;
            };
            if let Some(rid) = rid {
                rs.answered(&rid);
            }
            let still_wanted = rs.memberships.iter_mut().find(|m| m.room_id == room_id);
            match (ok, still_wanted) {
                (true, Some(m)) => m.joined = true,
                (true, None) => core.post(
                    from,
                    MeshMsg::RemoteLeave {
                        from: session,
                        room_id,
                        rid: None,
                    },
                ),
                (false, _) => rs.forget(&room_id),
            }
        }
        MeshMsg::RemoteLeave {
            from: key,
            room_id,
            rid,
        } => {
            leave_here(
                core,
                MemberAt::Remote(from, key),
                &room_id,
                rid.as_deref(),
                now,
            );
        }
        MeshMsg::RemoteInput {
            from: key,
            room_id,
            codec,
            bytes,
        } => {
            let peer = Peer {
                at: MemberAt::Remote(from, key),
                codec,
            };
            let mut bytes = bytes.into_vec();
            // The sending shard validated the frame already.
            let decoded = core.decoder.decode(codec, &mut bytes);
            if let Ok(value) = decoded {
                if let Ok(env) = decode::envelope(&value) {
                    if let Ok(cmd) = decode::command(&env, &core.cfg.policy.unreliable_types) {
                        match core.room_ids.get(&room_id) {
                            Some(&rk) => room_input(core, rk, peer, &env, cmd, now),
                            None => {
                                let r = Refusal::new(ErrorCode::RoomNotFound, "room is gone");
                                refuse(core, peer, env.rid, Some(&room_id), &r);
                            }
                        }
                    }
                }
            }
        }
        MeshMsg::RemotePresence {
            from: key,
            room_id,
            presence,
            codec,
            features,
        } => {
            if let Some(&rk) = core.room_ids.get(&room_id) {
                resume::remote_presence(
                    core,
                    rk,
                    MemberAt::Remote(from, key),
                    presence,
                    codec,
                    features,
                );
            }
        }
        MeshMsg::Matchmaking(msg) => matchmaking::handle(core, from, *msg, now),
        MeshMsg::Adopt(_)
        | MeshMsg::Deliver { .. }
        | MeshMsg::Directory { .. }
        | MeshMsg::Parked { .. } => {}
    }
}
