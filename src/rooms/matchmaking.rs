//! The matchmaker: one for the whole server, living on shard `MATCHMAKER`, fed through
//! the mesh. FIFO per (room type, size); a session holds at most one ticket; tickets
//! expire; a match creates the room on its home shard with the participants' seats
//! reserved, and that shard tells every participant.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::codec::Codec;
use crate::core::outbound::Class;
use crate::core::room::{home_shard, MemberAt};
use crate::core::session::PendingJoin;
use crate::core::{MeshMsg, SessionKey, ShardCore, ShardId};

use super::decode::{ErrorCode, Refusal};
use super::encode;

/// The shard the matchmaker lives on.
pub const MATCHMAKER: ShardId = ShardId(0);

/// Smallest and largest match size.
pub const SIZE_MIN: i64 = 2;
/// Largest match size.
pub const SIZE_MAX: i64 = 64;

/// A session wherever it lives: (shard, key).
pub type Addr = (ShardId, SessionKey);

/// One participant of a match.
#[derive(Clone, Debug)]
pub struct Participant {
    /// Its session.
    pub at: Addr,
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
        old: Addr,
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
    holders: HashMap<Addr, (&'static str, u32)>,
}

impl Matchmaker {
    fn remove(&mut self, at: Addr) -> bool {
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
pub fn send(core: &mut ShardCore, msg: MmMsg, now: u64) {
    if core.id == MATCHMAKER {
        handle(core, core.id, msg, now);
    } else {
        core.post(MATCHMAKER, MeshMsg::Matchmaking(Box::new(msg)));
    }
}

fn reply(core: &mut ShardCore, to: Addr, frame: crate::codec::Frame) {
    let at = if to.0 == core.id {
        MemberAt::Local(to.1)
    } else {
        MemberAt::Remote(to.0, to.1)
    };
    core.send_to(at, frame, Class::Reliable);
}

/// `matchmaking.enqueue` from a local session (validated here, queued by the matchmaker).
pub fn enqueue(
    core: &mut ShardCore,
    key: SessionKey,
    room_type: Option<&str>,
    size: Option<i64>,
    rid: Option<&str>,
    now: u64,
) -> Result<(), Refusal> {
    let room_type = room_type.unwrap_or("echo_room");
    let registered = core.cfg.rooms.types.iter().any(|t| t == room_type);
    let Some((room_type, _)) = crate::core::logic::builtin(room_type).filter(|_| registered) else {
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
    let rs = super::rooms_mut(core, key);
    rs.ticket = true;
    let msg = MmMsg::Enqueue {
        from: key,
        client_id: rs.client_id.clone(),
        codec: rs.codec,
        room_type,
        size,
        rid: rid.map(Box::from),
    };
    send(core, msg, now);
    Ok(())
}

/// `matchmaking.dequeue` from a local session.
pub fn dequeue(core: &mut ShardCore, key: SessionKey, rid: Option<&str>, now: u64) {
    let rs = super::rooms_mut(core, key);
    rs.ticket = false;
    let codec = rs.codec;
    send(
        core,
        MmMsg::Dequeue {
            from: key,
            codec,
            rid: rid.map(Box::from),
        },
        now,
    );
}

/// A session that held a ticket is gone (disconnect, park): its ticket goes too.
pub fn forget_ticket(core: &mut ShardCore, key: SessionKey) {
    let had = core
        .sessions
        .get_mut(key)
        .and_then(|s| s.rooms.as_mut())
        .is_some_and(|rs| std::mem::take(&mut rs.ticket));
    if had {
        send(core, MmMsg::Remove { from: key }, 0);
    }
}

/// A session with a ticket moved here from `old`.
pub fn rekey(core: &mut ShardCore, old: Addr, new: Addr) {
    debug_assert_eq!(new.0, core.id);
    send(
        core,
        MmMsg::Rekey {
            old,
            new_key: new.1,
        },
        0,
    );
}

/// A matchmaker message from shard `from` (or from this shard).
pub fn handle(core: &mut ShardCore, from: ShardId, msg: MmMsg, now: u64) {
    match msg {
        MmMsg::Enqueue {
            from: key,
            client_id,
            codec,
            room_type,
            size,
            rid,
        } => {
            let at = (from, key);
            let ttl = core.cfg.matchmaking.ticket_ttl_ms;
            let mm = &mut core.matchmaker;
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
                    let frame = encode::rpc_ok(codec, &mut core.scratch, &rid, None, 4, |w| {
                        w.key("queued").bool(true);
                        w.key("room_type")
                            .str(room_type)
                            .key("size")
                            .u64(u64::from(size));
                        w.key("position").u64(position);
                    });
                    reply(core, at, frame);
                }
                return;
            }
            let participants: Vec<Participant> =
                queue.drain(..size as usize).map(|t| t.who).collect();
            for p in &participants {
                mm.holders.remove(&p.at);
            }
            let room_id: Arc<str> = Arc::from(format!("match-{}", core.random_hex(8)));
            let home = home_shard(&room_id, core.shards);
            let found = MmMsg::Found {
                room_id,
                room_type,
                size,
                participants,
                completer: rid,
            };
            if home == core.id {
                found_here(core, found, now);
            } else {
                core.post(home, MeshMsg::Matchmaking(Box::new(found)));
            }
        }
        MmMsg::Dequeue {
            from: key,
            codec,
            rid,
        } => {
            let removed = core.matchmaker.remove((from, key));
            if let Some(rid) = rid {
                let frame = encode::rpc_ok(codec, &mut core.scratch, &rid, None, 1, |w| {
                    w.key("removed").bool(removed);
                });
                reply(core, (from, key), frame);
            }
        }
        MmMsg::Remove { from: key } => {
            core.matchmaker.remove((from, key));
        }
        MmMsg::Rekey { old, new_key } => {
            let mm = &mut core.matchmaker;
            if let Some(queue_key) = mm.holders.remove(&old) {
                let new = (from, new_key);
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
        found @ MmMsg::Found { .. } => found_here(core, found, now),
    }
}

/// On the matched room's home: create it with reserved seats, answer the completing RPC
/// and send `match.found` to every participant.
fn found_here(core: &mut ShardCore, found: MmMsg, now: u64) {
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
    let rk = super::create_room(core, &join, now);
    let until = now + core.cfg.matchmaking.seat_reservation_ms;
    if let Some(room) = core.rooms.get_mut(rk) {
        room.reserved = participants.iter().map(|p| p.client_id.clone()).collect();
        room.reserved_until_ms = until;
    }
    let listing = super::listing(core.rooms.get(rk).expect("new room"));
    core.publish_listing(&room_id, Some(listing));
    let ids: Vec<Arc<str>> = participants.iter().map(|p| p.client_id.clone()).collect();
    let last = participants.len().saturating_sub(1);
    for (i, p) in participants.iter().enumerate() {
        if i == last {
            if let Some(rid) = &completer {
                let frame =
                    encode::rpc_ok(p.codec, &mut core.scratch, rid, Some(&room_id), 2, |w| {
                        w.key("matched").bool(true).key("room").str(&room_id);
                    });
                reply(core, p.at, frame);
            }
        }
        let frame = encode::frame(
            p.codec,
            &mut core.scratch,
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
        reply(core, p.at, frame);
    }
}

/// Expired tickets (on the matchmaker's shard): `matchmaking.expired {room_type, size}`.
pub fn tick(core: &mut ShardCore, now: u64) {
    if core.id != MATCHMAKER {
        return;
    }
    let mut expired: Vec<(Participant, &'static str, u32)> = Vec::new();
    let mm = &mut core.matchmaker;
    for (&(room_type, size), queue) in mm.queues.iter_mut() {
        while queue.front().is_some_and(|t| t.expires_ms <= now) {
            let t = queue.pop_front().expect("front");
            expired.push((t.who, room_type, size));
        }
    }
    mm.queues.retain(|_, q| !q.is_empty());
    for (who, room_type, size) in expired {
        core.matchmaker.holders.remove(&who.at);
        let frame = encode::frame(
            who.codec,
            &mut core.scratch,
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
        reply(core, who.at, frame);
    }
}
