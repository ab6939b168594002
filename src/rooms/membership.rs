//! Rooms and their members: `room.join_or_create` (local, by moving the session to the
//! room's home, or as a remote member), `room.leave`, `room.list`, room lifecycle.

use super::*;

pub(super) fn join<H: Host>(
    cx: &mut Cx<'_, H>,
    key: SessionKey,
    to: ReplyTo,
    env: &decode::Envelope<'_, '_>,
    room_type: Option<&str>,
    options: Option<&Value<'_>>,
    now: u64,
) {
    // No type: join the room whatever its type, or create an echo_room.
    let room_type = match room_type.map(|t| registered_type(cx, t)).transpose() {
        Ok(t) => t,
        Err(r) => return refuse(cx, to, env.rid, env.room, &r),
    };
    let room_id: Arc<str> = match env.room {
        Some(r) if !r.is_empty() => Arc::from(r),
        _ => Arc::from(format!(
            "{}:default",
            room_type.unwrap_or(DEFAULT_ROOM_TYPE)
        )),
    };
    let rooms_max = cx.eng.cfg.limits.rooms_per_session_max;
    let client = client_of(cx, key);
    if client.membership(&room_id).is_some() {
        let r = Refusal::new(ErrorCode::AlreadyJoined, "already in this room");
        return refuse(cx, to, env.rid, Some(&room_id), &r);
    }
    if client.memberships.len() >= rooms_max {
        let r = Refusal::new(
            ErrorCode::BadRequest,
            "in too many rooms (limits.rooms_per_session_max)",
        );
        return refuse(cx, to, env.rid, Some(&room_id), &r);
    }
    if let Some(rid) = env.rid {
        if client.inflight.iter().any(|r| &**r == rid) {
            let r = Refusal::new(ErrorCode::BadRequest, "duplicate in-flight rid");
            return refuse(cx, to, env.rid, Some(&room_id), &r);
        }
    }
    let pending = PendingJoin {
        rid: env.rid.map(Box::from),
        room_id: room_id.clone(),
        room_type,
        options: options.map(codec::to_json),
    };
    let home = home_shard(&room_id, cx.eng.shards);
    let no_rooms = client.memberships.is_empty();
    if home == cx.eng.id {
        let here = cx.eng.here(key);
        join_here(cx, here, pending, now);
    } else if no_rooms {
        // Move the session to the room's home: the room and its members share one core.
        client_of_mut(cx, key).pending_join = Some(Box::new(pending));
        cx.eng.request_move(key, home);
    } else {
        // Already in rooms here: stay, and be a remote member of that room.
        let client = client_of_mut(cx, key);
        client.memberships.push(Membership {
            room_id: room_id.clone(),
            home,
            joined: false,
        });
        if let Some(rid) = env.rid {
            client.inflight.push(rid.into());
        }
        let msg = RemoteJoin {
            from: key,
            client_id: client.client_id.clone(),
            codec: client.codec,
            features: client.features,
            join: pending,
        };
        cx.post(home, Mesh::RemoteJoin(Box::new(msg)));
    }
}

/// The member a session becomes: from its own state when it lives here, from the
/// forwarded join when it lives on another shard.
fn member_of<H: Host>(
    cx: &Cx<'_, H>,
    at: SessionAt,
    remote: Option<&RemoteJoin>,
) -> Option<Member> {
    match remote {
        None if at.shard == cx.eng.id => {
            let client = cx.client(at.key)?;
            Some(Member {
                client_id: client.client_id.clone(),
                at,
                codec: client.codec,
                features: client.features,
                acked_seq: 0,
            })
        }
        Some(rj) if at.shard != cx.eng.id => Some(Member {
            client_id: rj.client_id.clone(),
            at,
            codec: rj.codec,
            features: rj.features,
            acked_seq: 0,
        }),
        _ => None,
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
pub(crate) fn join_here<H: Host>(cx: &mut Cx<'_, H>, at: SessionAt, join: PendingJoin, now: u64) {
    join_member(cx, at, None, join, now);
}

/// A joiner on another shard learns the outcome of its forwarded join (its shard keeps
/// the membership only when it succeeded).
fn tell_remote_joiner<H: Host>(cx: &mut Cx<'_, H>, at: SessionAt, join: &PendingJoin, ok: bool) {
    if at.shard != cx.eng.id {
        let msg = Mesh::JoinResult {
            session: at.key,
            room_id: join.room_id.clone(),
            ok,
            rid: join.rid.clone(),
        };
        cx.post(at.shard, msg);
    }
}

pub(super) fn join_member<H: Host>(
    cx: &mut Cx<'_, H>,
    at: SessionAt,
    remote: Option<&RemoteJoin>,
    join: PendingJoin,
    now: u64,
) {
    let Some(member) = member_of(cx, at, remote) else {
        return;
    };
    let to = ReplyTo {
        at,
        codec: member.codec,
    };
    let rid = join.rid.as_deref();
    let refuse_join = |cx: &mut Cx<'_, H>, r: Refusal| {
        refuse(cx, to, rid, Some(&join.room_id), &r);
        tell_remote_joiner(cx, at, &join, false);
    };
    let rk = match cx.rooms.by_id.get(&join.room_id) {
        Some(&rk) => {
            let room = cx.rooms.slab.get(rk).expect("indexed room");
            if join.room_type.is_some_and(|t| t != room.room_type) {
                let r = Refusal::new(
                    ErrorCode::BadRequest,
                    format!("room exists with type {}", room.room_type),
                );
                return refuse_join(cx, r);
            }
            if room.has(at) {
                return refuse_join(
                    cx,
                    Refusal::new(ErrorCode::AlreadyJoined, "already in this room"),
                );
            }
            if room.is_full(cx.eng.cfg.limits.room_members_max) {
                return refuse_join(cx, Refusal::new(ErrorCode::RoomFull, "room is full"));
            }
            if room.is_reserved(now) && !room.reserved.contains(&member.client_id) {
                let r = Refusal::new(ErrorCode::RoomFull, "seats are reserved for a match");
                return refuse_join(cx, r);
            }
            rk
        }
        None => create_room(cx, &join, now),
    };
    tell_remote_joiner(cx, at, &join, true);
    if at.shard == cx.eng.id {
        let home = cx.eng.id;
        client_of_mut(cx, at.key).memberships.push(Membership {
            room_id: join.room_id.clone(),
            home,
            joined: true,
        });
    }
    let client_id = member.client_id.clone();
    let room = cx.rooms.slab.get_mut(rk).expect("live room");
    room.members.push(member);
    let room_type = room.room_type;
    let room_id = room.id.clone();
    if let Some(rid) = rid {
        let frame = encode::rpc_ok(to.codec, &mut cx.eng.scratch, rid, Some(&room_id), 3, |w| {
            w.key("room").str(&room_id);
            w.key("room_type").str(room_type);
            w.key("client_id").str(&client_id);
        });
        cx.eng.send_to(at, frame, Class::Reliable);
    }
    announce_membership(cx, rk, "room.joined", &client_id, at);
    sync::send_snapshot(cx, rk, at);
    run_hook(cx, rk, now, |logic, ctx| logic.on_join(ctx, &client_id));
    let l = listing(cx.rooms.slab.get(rk).expect("live room"));
    cx.publish_listing(&room_id, Some(l));
}

pub(crate) fn create_room<H: Host>(cx: &mut Cx<'_, H>, join: &PendingJoin, now: u64) -> RoomKey {
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
        digest: canon::StateDigest::build(&serde_json::Value::Object(Default::default())),
    };
    let rk: RoomKey = cx.rooms.slab.insert(room);
    cx.rooms.by_id.insert(join.room_id.clone(), rk);
    ShardMetrics::add(&cx.rooms.metrics.rooms, 1);
    run_hook(cx, rk, now, |logic, ctx| logic.on_create(ctx));
    // State set before anyone joined is the initial state, not a patch.
    let room = cx.rooms.slab.get_mut(rk).expect("live room");
    room.pending_ops.clear();
    room.digest = canon::StateDigest::build(&room.state);
    cx.rooms.patches.retain(|r| *r != rk);
    rk
}

/// A join or leave: `t` (`room.joined` / `room.left`) `{client_id}` then `room.members`
/// to every member. In a crowd (more than `limits.presence_members_max` members) only the
/// joiner hears it, with the member list cut to that bound (and a leave tells nobody).
pub(super) fn announce_membership<H: Host>(
    cx: &mut Cx<'_, H>,
    rk: RoomKey,
    t: &str,
    client_id: &str,
    subject: SessionAt,
) {
    let cap = cx.eng.cfg.limits.presence_members_max;
    let Some(room) = cx.rooms.slab.get(rk) else {
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
            let mut w = codec::Writer::new(codec, &mut cx.eng.scratch);
            write(&mut w);
            let frame = w.finish();
            cx.eng.send_to(subject, frame, Class::Reliable);
        }
    } else {
        cx.fan_out(rk, Class::Reliable, None, by_codec, |w, _| event(w));
        cx.fan_out(rk, Class::Reliable, None, by_codec, |w, _| members(w));
    }
}

pub(super) fn leave<H: Host>(
    cx: &mut Cx<'_, H>,
    key: SessionKey,
    to: ReplyTo,
    env: &decode::Envelope<'_, '_>,
    now: u64,
) {
    let Some(room_id) = env.room else {
        return refuse(cx, to, env.rid, None, &no_room_named());
    };
    let client = client_of(cx, key);
    let Some(m) = client.membership(room_id).filter(|m| m.joined).cloned() else {
        let r = Refusal::new(ErrorCode::NotInRoom, format!("not in room {room_id:?}"));
        return refuse(cx, to, env.rid, Some(room_id), &r);
    };
    client_of_mut(cx, key).forget(room_id);
    leave_membership(cx, key, m, env.rid, now);
}

/// A member leaves a room whose home is this shard: `room.left` and `room.members` to the
/// rest; an empty room is disposed.
pub(super) fn leave_here<H: Host>(
    cx: &mut Cx<'_, H>,
    at: SessionAt,
    room_id: &str,
    rid: Option<&str>,
    now: u64,
) {
    let Some(&rk) = cx.rooms.by_id.get(room_id) else {
        return;
    };
    let room = cx.rooms.slab.get_mut(rk).expect("indexed room");
    let Some(member) = room.remove(at) else {
        return;
    };
    let room_id = room.id.clone();
    let to = ReplyTo {
        at,
        codec: member.codec,
    };
    ack(cx, to, rid, Some(&room_id));
    let client_id = member.client_id.clone();
    announce_membership(cx, rk, "room.left", &client_id, at);
    run_hook(cx, rk, now, |logic, ctx| logic.on_leave(ctx, &client_id));
    let room = cx.rooms.slab.get(rk).expect("live room");
    if room.members.is_empty() && !room.is_reserved(now) {
        dispose_room(cx, rk);
    } else {
        let l = listing(room);
        cx.publish_listing(&room_id, Some(l));
    }
}

/// Removes a room from this shard and from every shard's directory.
pub(super) fn dispose_room<H: Host>(cx: &mut Cx<'_, H>, rk: RoomKey) {
    let Some(room) = cx.rooms.slab.remove(rk) else {
        return;
    };
    cx.rooms.by_id.remove(&room.id);
    cx.rooms.patches.retain(|r| *r != rk);
    cx.rooms.resyncs.retain(|(r, _)| *r != rk);
    ShardMetrics::sub(&cx.rooms.metrics.rooms, 1);
    cx.publish_listing(&room.id, None);
}

/// A session ends: it leaves every room, wherever the room lives.
pub(crate) fn leave_all<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey, now: u64) {
    let Some(client) = cx.client_mut(key) else {
        return;
    };
    let memberships = std::mem::take(&mut client.memberships);
    for m in memberships {
        leave_membership(cx, key, m, None, now);
    }
}

/// A local session leaves one room: here, or through the mesh at the room's home (which
/// answers the RPC, if any).
fn leave_membership<H: Host>(
    cx: &mut Cx<'_, H>,
    key: SessionKey,
    m: Membership,
    rid: Option<&str>,
    now: u64,
) {
    if m.home == cx.eng.id {
        let at = cx.eng.here(key);
        leave_here(cx, at, &m.room_id, rid, now);
    } else {
        let msg = Mesh::RemoteLeave {
            from: key,
            room_id: m.room_id,
            rid: rid.map(Box::from),
        };
        cx.post(m.home, msg);
    }
}

pub(super) fn list<H: Host>(
    cx: &mut Cx<'_, H>,
    to: ReplyTo,
    rid: Option<&str>,
    room_type: Option<&str>,
) {
    let Some(rid) = rid else { return };
    let rooms: Vec<(&Arc<str>, &Listing)> = cx
        .rooms
        .directory
        .iter()
        .filter(|(_, l)| !l.private && room_type.is_none_or(|t| t == l.room_type))
        .collect();
    let mut buf = std::mem::take(&mut cx.eng.scratch);
    let frame = encode::rpc_ok(to.codec, &mut buf, rid, None, 1, |w| {
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
    cx.eng.scratch = buf;
    cx.eng.send_to(to.at, frame, Class::Reliable);
}

/// Room ticks: each room's `on_tick`.
/// A reserved room whose reservation ended with nobody in it is disposed.
pub(crate) fn tick_rooms<H: Host>(cx: &mut Cx<'_, H>, now: u64) {
    let keys: Vec<RoomKey> = cx.rooms.slab.keys().collect();
    for rk in keys {
        run_hook(cx, rk, now, |logic, ctx| logic.on_tick(ctx, now));
        let Some(room) = cx.rooms.slab.get_mut(rk) else {
            continue;
        };
        if !room.reserved.is_empty() && now >= room.reserved_until_ms {
            room.reserved.clear();
            if room.members.is_empty() {
                dispose_room(cx, rk);
            }
        }
    }
}
