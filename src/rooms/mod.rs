//! The rooms dialect ("Message Catalog"): handshake, rooms, room messages, state frames.
//! Decodes frames into commands (`decode`), applies them to the shard core's rooms and
//! sessions, and encodes replies and broadcasts (`encode`). Sockets, threads and the mesh
//! transport are not here; cross-shard work goes out as `MeshMsg`s.

pub mod decode;
pub mod encode;
mod handshake;
pub mod matchmaking;
mod membership;
mod relay;
pub mod resume;
pub mod sync;

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::auth;
use crate::codec::{self, Codec, Decoded, Value};
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

use handshake::*;
pub(crate) use handshake::{handshake_ok, open_session};
pub(crate) use membership::{create_room, listing};
use membership::{join, join_member, leave, leave_here, list};
pub use membership::{join_here, leave_all, tick_rooms};
use relay::*;

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

/// A handshaken session's rooms state (its frames are only handled once it is open).
pub(crate) fn rooms_of(core: &ShardCore, key: SessionKey) -> &RoomsSession {
    core.sessions
        .get(key)
        .and_then(|s| s.rooms.as_ref())
        .expect("open session")
}

/// A handshaken session's rooms state, mutably.
pub(crate) fn rooms_mut(core: &mut ShardCore, key: SessionKey) -> &mut RoomsSession {
    core.sessions
        .get_mut(key)
        .and_then(|s| s.rooms.as_mut())
        .expect("open session")
}

/// The refusal of a room command that names no room.
fn no_room_named() -> Refusal {
    Refusal::new(ErrorCode::BadRequest, "no room named")
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
    let failure = match core.decoder.decode_fast(peer.codec, bytes, |root| {
        (!too_large).then(|| decode::tape_message(root)).flatten()
    }) {
        Ok(Decoded::Fast(message)) => {
            dispatch_message(core, key, peer, message, original, now);
            None
        }
        Ok(Decoded::Tree(value)) if too_large => {
            core.metrics.dropped(DropReason::TooLarge);
            let refusal = Refusal::new(
                ErrorCode::PayloadTooLarge,
                "frame over limits.frame_bytes_max",
            );
            refuse(core, peer, decode::rid_of(&value), None, &refusal);
            None
        }
        Ok(Decoded::Tree(value)) => {
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
    if !admit(core, key, peer, &env, now) {
        return;
    }
    let relay_types = &core.cfg.policy.unreliable_types;
    let cmd = match decode::command(&env, relay_types) {
        Ok(c) => c,
        Err(r) => return refuse(core, peer, env.rid, env.room, &r),
    };
    run_command(core, key, peer, &env, cmd, original, now);
}

/// A `room.message` the JSON fast path read off the tape: the same admission and command
/// as the full path, without the value tree.
fn dispatch_message(
    core: &mut ShardCore,
    key: SessionKey,
    peer: Peer,
    message: decode::TapeMessage<'_>,
    original: Option<Box<[u8]>>,
    now: u64,
) {
    let env = decode::Envelope {
        t: "room.message",
        rid: message.rid,
        room: Some(message.room),
        p: None,
    };
    if !admit(core, key, peer, &env, now) {
        return;
    }
    let cmd = Command::Message {
        msg_type: std::borrow::Cow::Borrowed(message.msg_type),
        data: message.data.as_ref(),
        bytes_b64: None,
    };
    run_command(core, key, peer, &env, cmd, original, now);
}

/// The session's rate buckets: false when the frame was refused (or the session closed
/// for abuse).
fn admit(
    core: &mut ShardCore,
    key: SessionKey,
    peer: Peer,
    env: &decode::Envelope<'_, '_>,
    now: u64,
) -> bool {
    let state_control = matches!(env.t, "state.ack" | "state.resync");
    let session = core.sessions.get_mut(key).expect("live session");
    let bucket = if state_control {
        &mut session.state_bucket
    } else {
        &mut session.bucket
    };
    match bucket.take(now, crate::limits::ABUSE_FACTOR) {
        crate::core::bucket::Verdict::Allow => true,
        crate::core::bucket::Verdict::Limited => {
            core.metrics.dropped(DropReason::RateLimited);
            refuse(
                core,
                peer,
                env.rid,
                env.room,
                &Refusal::new(ErrorCode::RateLimited, "over limits.msgs_per_s"),
            );
            false
        }
        crate::core::bucket::Verdict::Abusive => {
            send_error(
                core,
                key,
                "rate_limited",
                "far over limits.msgs_per_s: closing",
            );
            core.close(key, 1008, "rate_limited");
            false
        }
    }
}

/// Carries out a validated, admitted command.
fn run_command(
    core: &mut ShardCore,
    key: SessionKey,
    peer: Peer,
    env: &decode::Envelope<'_, '_>,
    cmd: Command<'_, '_>,
    original: Option<Box<[u8]>>,
    now: u64,
) {
    match cmd {
        Command::Join { room_type, options } => join(core, key, peer, env, room_type, options, now),
        Command::Leave => leave(core, key, peer, env, now),
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
                return refuse(core, peer, env.rid, None, &no_room_named());
            };
            let rs = rooms_of(core, key);
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
                room_input(core, rk, peer, env, cmd, now);
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
        MeshMsg::ResumeProbe { from: key } => {
            core.post(from, MeshMsg::ResumeProbeAck { session: key })
        }
        MeshMsg::ResumeProbeAck { session } => resume::probe_answered(core, session, now),
        MeshMsg::Adopt(_)
        | MeshMsg::Deliver { .. }
        | MeshMsg::Directory { .. }
        | MeshMsg::Parked { .. } => {}
    }
}
