//! The matchmaker: one for the whole server, living on shard `MATCHMAKER`, fed through
//! the mesh. FIFO per (room type, size); a session holds at most one ticket; tickets
//! expire; a match creates the room on its home shard with the participants' seats
//! reserved, and that shard tells every participant.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::codec::Codec;
use crate::core::outbound::Class;
use crate::core::{home_shard, SessionAt, SessionKey, ShardId};

use super::decode::{ErrorCode, Refusal};
use super::{encode, Cx, Host, Mesh, PendingJoin};

/// The shard the matchmaker lives on.
pub const MATCHMAKER: ShardId = ShardId(0);

/// Smallest and largest match size.
pub const SIZE_MIN: i64 = 2;
/// Largest match size.
pub const SIZE_MAX: i64 = 64;

/// One participant of a match.
#[derive(Clone, Debug)]
pub struct Participant {
    /// Its session.
    pub at: SessionAt,
    /// Its public id.
    pub client_id: Arc<str>,
    /// Its codec.
    pub codec: Codec,
}

/// Messages to (and from) the matchmaker. Replies to clients go out as frames.
#[derive(Debug)]
pub enum MmMsg {
    /// Queue (or re-queue) the sender's session.
    Enqueue {
        /// Session on the sending shard.
        from: SessionKey,
        /// Its public id.
        client_id: Arc<str>,
        /// Its codec.
        codec: Codec,
        /// Registered room type.
        room_type: &'static str,
        /// Players per match.
        size: u32,
        /// RPC id.
        rid: Option<Box<str>>,
    },
    /// Drop the sender's ticket (`matchmaking.dequeue`).
    Dequeue {
        /// Session on the sending shard.
        from: SessionKey,
        /// Its codec.
        codec: Codec,
        /// RPC id.
        rid: Option<Box<str>>,
    },
    /// The session disconnected: drop its ticket silently.
    Remove {
        /// Session on the sending shard.
        from: SessionKey,
    },
    /// A session with a ticket moved: it is now `new_key` on the sending shard.
    Rekey {
        /// Where it was.
        old: SessionAt,
        /// Its key on the sending shard.
        new_key: SessionKey,
    },
    /// To the room's home: create the matched room and tell the participants.
    Found {
        /// New room id.
        room_id: Arc<str>,
        /// Its type.
        room_type: &'static str,
        /// `max_players`.
        size: u32,
        /// In ticket order.
        participants: Vec<Participant>,
        /// The ticket that completed the match, and its RPC id.
        completer: Option<Box<str>>,
    },
}

struct Ticket {
    who: Participant,
    expires_ms: u64,
}

/// The matchmaker's queues (empty on every shard but `MATCHMAKER`).
#[derive(Default)]
pub struct Matchmaker {
    queues: HashMap<(&'static str, u32), VecDeque<Ticket>>,
    holders: HashMap<SessionAt, (&'static str, u32)>,
}

impl Matchmaker {
    fn remove(&mut self, at: SessionAt) -> bool {
        let Some(queue_key) = self.holders.remove(&at) else {
            return false;
        };
        if let Some(q) = self.queues.get_mut(&queue_key) {
            q.retain(|t| t.who.at != at);
        }
        true
    }
}

/// Sends a message to the matchmaker (handled at once when it lives here).
fn send<H: Host>(cx: &mut Cx<'_, H>, msg: MmMsg, now: u64) {
    if cx.eng.id == MATCHMAKER {
        let here = cx.eng.id;
        handle(cx, here, msg, now);
    } else {
        cx.post(MATCHMAKER, Mesh::Matchmaking(Box::new(msg)));
    }
}

fn reply<H: Host>(cx: &mut Cx<'_, H>, to: SessionAt, frame: crate::codec::Frame) {
    cx.eng.send_to(to, frame, Class::Reliable);
}

/// `matchmaking.enqueue` from a local session (validated here, queued by the matchmaker).
pub(crate) fn enqueue<H: Host>(
    cx: &mut Cx<'_, H>,
    key: SessionKey,
    room_type: Option<&str>,
    size: Option<i64>,
    rid: Option<&str>,
    now: u64,
) -> Result<(), Refusal> {
    let room_type = room_type.unwrap_or("echo_room");
    let registered = cx.eng.cfg.rooms.types.iter().any(|t| t == room_type);
    let Some((room_type, _)) = super::logic::builtin(room_type).filter(|_| registered) else {
        return Err(Refusal::new(
            ErrorCode::UnknownRoomType,
            format!("unknown room type {room_type:?}"),
        ));
    };
    let size = match size {
        Some(s) if (SIZE_MIN..=SIZE_MAX).contains(&s) => s as u32,
        _ => {
            return Err(Refusal::new(
                ErrorCode::BadRequest,
                "size must be an integer in 2..=64",
            ))
        }
    };
    let client = super::client_of_mut(cx, key);
    client.ticket = true;
    let msg = MmMsg::Enqueue {
        from: key,
        client_id: client.client_id.clone(),
        codec: client.codec,
        room_type,
        size,
        rid: rid.map(Box::from),
    };
    send(cx, msg, now);
    Ok(())
}

/// `matchmaking.dequeue` from a local session.
pub(crate) fn dequeue<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey, rid: Option<&str>, now: u64) {
    let client = super::client_of_mut(cx, key);
    client.ticket = false;
    let codec = client.codec;
    send(
        cx,
        MmMsg::Dequeue {
            from: key,
            codec,
            rid: rid.map(Box::from),
        },
        now,
    );
}

/// A session that held a ticket is gone (disconnect, park): its ticket goes too.
pub(crate) fn forget_ticket<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey) {
    let had = cx
        .client_mut(key)
        .is_some_and(|c| std::mem::take(&mut c.ticket));
    if had {
        send(cx, MmMsg::Remove { from: key }, 0);
    }
}

/// A session with a ticket moved here from `old`.
pub(crate) fn rekey<H: Host>(cx: &mut Cx<'_, H>, old: SessionAt, new: SessionAt) {
    debug_assert_eq!(new.shard, cx.eng.id);
    send(
        cx,
        MmMsg::Rekey {
            old,
            new_key: new.key,
        },
        0,
    );
}

/// A matchmaker message from shard `from` (or from this shard).
pub(crate) fn handle<H: Host>(cx: &mut Cx<'_, H>, from: ShardId, msg: MmMsg, now: u64) {
    match msg {
        MmMsg::Enqueue {
            from: key,
            client_id,
            codec,
            room_type,
            size,
            rid,
        } => {
            let at = SessionAt { shard: from, key };
            let ttl = cx.eng.cfg.matchmaking.ticket_ttl_ms;
            let mm = &mut cx.rooms.matchmaker;
            mm.remove(at);
            let queue = mm.queues.entry((room_type, size)).or_default();
            queue.push_back(Ticket {
                who: Participant {
                    at,
                    client_id,
                    codec,
                },
                expires_ms: now + ttl,
            });
            if queue.len() < size as usize {
                mm.holders.insert(at, (room_type, size));
                let position = queue.len() as u64;
                if let Some(rid) = rid {
                    let frame = encode::rpc_ok(codec, &mut cx.eng.scratch, &rid, None, 4, |w| {
                        w.key("queued").bool(true);
                        w.key("room_type")
                            .str(room_type)
                            .key("size")
                            .u64(u64::from(size));
                        w.key("position").u64(position);
                    });
                    reply(cx, at, frame);
                }
                return;
            }
            let participants: Vec<Participant> =
                queue.drain(..size as usize).map(|t| t.who).collect();
            for p in &participants {
                mm.holders.remove(&p.at);
            }
            let room_id: Arc<str> = Arc::from(format!("match-{}", cx.eng.random_hex(8)));
            let home = home_shard(&room_id, cx.eng.shards);
            let found = MmMsg::Found {
                room_id,
                room_type,
                size,
                participants,
                completer: rid,
            };
            if home == cx.eng.id {
                found_here(cx, found, now);
            } else {
                cx.post(home, Mesh::Matchmaking(Box::new(found)));
            }
        }
        MmMsg::Dequeue {
            from: key,
            codec,
            rid,
        } => {
            let at = SessionAt { shard: from, key };
            let removed = cx.rooms.matchmaker.remove(at);
            if let Some(rid) = rid {
                let frame = encode::rpc_ok(codec, &mut cx.eng.scratch, &rid, None, 1, |w| {
                    w.key("removed").bool(removed);
                });
                reply(cx, at, frame);
            }
        }
        MmMsg::Remove { from: key } => {
            cx.rooms.matchmaker.remove(SessionAt { shard: from, key });
        }
        MmMsg::Rekey { old, new_key } => {
            let mm = &mut cx.rooms.matchmaker;
            if let Some(queue_key) = mm.holders.remove(&old) {
                let new = SessionAt {
                    shard: from,
                    key: new_key,
                };
                mm.holders.insert(new, queue_key);
                if let Some(t) = mm
                    .queues
                    .get_mut(&queue_key)
                    .and_then(|q| q.iter_mut().find(|t| t.who.at == old))
                {
                    t.who.at = new;
                }
            }
        }
        found @ MmMsg::Found { .. } => found_here(cx, found, now),
    }
}

/// On the matched room's home: create it with reserved seats, answer the completing RPC
/// and send `match.found` to every participant.
fn found_here<H: Host>(cx: &mut Cx<'_, H>, found: MmMsg, now: u64) {
    let MmMsg::Found {
        room_id,
        room_type,
        size,
        participants,
        completer,
    } = found
    else {
        return;
    };
    let join = PendingJoin {
        rid: None,
        room_id: room_id.clone(),
        room_type: Some(room_type),
        options: Some(serde_json::json!({ "max_players": size })),
    };
    let rk = super::create_room(cx, &join, now);
    let until = now + cx.eng.cfg.matchmaking.seat_reservation_ms;
    if let Some(room) = cx.rooms.slab.get_mut(rk) {
        room.reserved = participants.iter().map(|p| p.client_id.clone()).collect();
        room.reserved_until_ms = until;
    }
    let listing = super::listing(cx.rooms.slab.get(rk).expect("new room"));
    cx.publish_listing(&room_id, Some(listing));
    let ids: Vec<Arc<str>> = participants.iter().map(|p| p.client_id.clone()).collect();
    let last = participants.len().saturating_sub(1);
    for (i, p) in participants.iter().enumerate() {
        if i == last {
            if let Some(rid) = &completer {
                let frame =
                    encode::rpc_ok(p.codec, &mut cx.eng.scratch, rid, Some(&room_id), 2, |w| {
                        w.key("matched").bool(true).key("room").str(&room_id);
                    });
                reply(cx, p.at, frame);
            }
        }
        let frame = encode::frame(
            p.codec,
            &mut cx.eng.scratch,
            "match.found",
            None,
            Some(&room_id),
            4,
            |w| {
                w.key("room").str(&room_id).key("room_type").str(room_type);
                w.key("size").u64(u64::from(size));
                w.key("participants").array(ids.len() as u32);
                for id in &ids {
                    w.str(id);
                }
                w.end_array();
            },
        );
        reply(cx, p.at, frame);
    }
}

/// Expired tickets (on the matchmaker's shard): `matchmaking.expired {room_type, size}`.
pub(crate) fn tick<H: Host>(cx: &mut Cx<'_, H>, now: u64) {
    if cx.eng.id != MATCHMAKER {
        return;
    }
    let mut expired: Vec<(Participant, &'static str, u32)> = Vec::new();
    let mm = &mut cx.rooms.matchmaker;
    for (&(room_type, size), queue) in mm.queues.iter_mut() {
        while queue.front().is_some_and(|t| t.expires_ms <= now) {
            let t = queue.pop_front().expect("front");
            expired.push((t.who, room_type, size));
        }
    }
    mm.queues.retain(|_, q| !q.is_empty());
    for (who, room_type, size) in expired {
        cx.rooms.matchmaker.holders.remove(&who.at);
        let frame = encode::frame(
            who.codec,
            &mut cx.eng.scratch,
            "matchmaking.expired",
            None,
            None,
            2,
            |w| {
                w.key("room_type")
                    .str(room_type)
                    .key("size")
                    .u64(u64::from(size));
            },
        );
        reply(cx, who.at, frame);
    }
}
