//! Rooms and their members: `room.join_or_create` (local, by moving the session to the
//! room's home, or as a remote member), `room.leave`, `room.list`, room lifecycle.

use super::*;

pub(super) fn join(
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
    let rs = rooms_of(core, key);
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
        session.pending_join = Some(Box::new(pending));
        core.request_move(key, home);
    } else {
        // Already in rooms here: stay, and be a remote member of that room.
        let rs = rooms_mut(core, key);
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

pub(super) fn member_of(
    core: &ShardCore,
    at: MemberAt,
    remote: Option<&RemoteJoin>,
) -> Option<Member> {
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

pub(super) fn options_of(value: Option<&serde_json::Value>) -> RoomOptions {
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

/// A joiner on another shard learns the outcome of its forwarded join (its shard keeps
/// the membership only when it succeeded).
fn tell_remote_joiner(core: &mut ShardCore, at: MemberAt, join: &PendingJoin, ok: bool) {
    if let MemberAt::Remote(shard, key) = at {
        let msg = MeshMsg::JoinResult {
            session: key,
            room_id: join.room_id.clone(),
            ok,
            rid: join.rid.clone(),
        };
        core.post(shard, msg);
    }
}

pub(super) fn join_member(
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
        tell_remote_joiner(core, at, &join, false);
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
    tell_remote_joiner(core, at, &join, true);
    if let MemberAt::Local(key) = at {
        let home = core.id;
        rooms_mut(core, key).memberships.push(Membership {
            room_id: join.room_id.clone(),
            home,
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
    announce_membership(core, rk, "room.joined", &client_id, at);
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

/// A join or leave: `t` (`room.joined` / `room.left`) `{client_id}` then `room.members`
/// to every member. In a crowd (more than `limits.presence_members_max` members) only the
/// joiner hears it, with the member list cut to that bound (and a leave tells nobody).
pub(super) fn announce_membership(
    core: &mut ShardCore,
    rk: RoomKey,
    t: &str,
    client_id: &str,
    subject: MemberAt,
) {
    let cap = core.cfg.limits.presence_members_max;
    let Some(room) = core.rooms.get(rk) else {
        return;
    };
    let crowd = room.members.len() > cap;
    let joined = room.has(subject);
    if crowd && !joined {
        return;
    }
    let count = room.members.len();
    let ids: Vec<Arc<str>> = room
        .members
        .iter()
        .take(cap)
        .map(|m| m.client_id.clone())
        .collect();
    let room_id = room.id.clone();
    let event = |w: &mut codec::Writer<'_>| {
        encode::begin(w, t, None, Some(&room_id), 1);
        w.key("client_id").str(client_id);
        encode::end(w);
    };
    let members = |w: &mut codec::Writer<'_>| {
        encode::begin(w, "room.members", None, Some(&room_id), 2);
        w.key("members").array(ids.len() as u32);
        for id in &ids {
            w.str(id);
        }
        w.end_array();
        w.key("count").u64(count as u64);
        encode::end(w);
    };
    if crowd {
        let codec = room.member_at(subject).map_or(Codec::Json, |m| m.codec);
        for write in [&event as &dyn Fn(&mut codec::Writer<'_>), &members] {
            let mut w = codec::Writer::new(codec, &mut core.scratch);
            write(&mut w);
            let frame = w.finish();
            core.send_to(subject, frame, Class::Reliable);
        }
    } else {
        core.fan_out(rk, Class::Reliable, None, by_codec, &|w, _| event(w));
        core.fan_out(rk, Class::Reliable, None, by_codec, &|w, _| members(w));
    }
}

pub(super) fn leave(
    core: &mut ShardCore,
    key: SessionKey,
    peer: Peer,
    env: &decode::Envelope<'_, '_>,
    now: u64,
) {
    let rs = rooms_of(core, key);
    let Some(room_id) = env.room else {
        return refuse(core, peer, env.rid, None, &no_room_named());
    };
    let Some(m) = rs.membership(room_id).filter(|m| m.joined).cloned() else {
        let r = Refusal::new(ErrorCode::NotInRoom, format!("not in room {room_id:?}"));
        return refuse(core, peer, env.rid, Some(room_id), &r);
    };
    rooms_mut(core, key).forget(room_id);
    leave_membership(core, key, m, env.rid, now);
}

/// A member leaves a room whose home is this shard: `room.left` and `room.members` to the
/// rest; an empty room is disposed.
pub(super) fn leave_here(
    core: &mut ShardCore,
    at: MemberAt,
    room_id: &str,
    rid: Option<&str>,
    now: u64,
) {
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
    announce_membership(core, rk, "room.left", &client_id, at);
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
pub(super) fn dispose_room(core: &mut ShardCore, rk: RoomKey) {
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
        leave_membership(core, key, m, None, now);
    }
}

/// A local session leaves one room: here, or through the mesh at the room's home (which
/// answers the RPC, if any).
fn leave_membership(
    core: &mut ShardCore,
    key: SessionKey,
    m: Membership,
    rid: Option<&str>,
    now: u64,
) {
    if m.home == core.id {
        leave_here(core, MemberAt::Local(key), &m.room_id, rid, now);
    } else {
        let msg = MeshMsg::RemoteLeave {
            from: key,
            room_id: m.room_id,
            rid: rid.map(Box::from),
        };
        core.post(m.home, msg);
    }
}

pub(super) fn list(core: &mut ShardCore, peer: Peer, rid: Option<&str>, room_type: Option<&str>) {
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
