//! State sync of the rooms dialect: ops batched per turn into one `state.patch` per room,
//! snapshots (on join, on resume, on resync, every `snapshot_every` patches), CRC-32
//! checksums for clients that asked, acks and resyncs. The op semantics are
//! `core::state`'s; the checksum is `core::canon`'s.

use crate::codec::Writer;
use crate::core::outbound::Class;
use crate::core::room::{Member, MemberAt};
use crate::core::state::{self, Op};
use crate::core::{by_codec_nesting_and_crc, RoomKey, ShardCore};

use super::encode;

/// Applies one op to a room's state; a change joins this turn's patch.
pub fn apply_op(core: &mut ShardCore, rk: RoomKey, op: Op) {
    let Some(room) = core.rooms.get_mut(rk) else {
        return;
    };
    if let Ok(true) = state::apply(&mut room.state, &op) {
        room.pending_ops.push(op);
        if !core.dirty_rooms.contains(&rk) {
            core.dirty_rooms.push(rk);
        }
    }
}

/// Sends every room's pending patch, then the resyncs asked for this turn.
pub fn flush_patches(core: &mut ShardCore) {
    for rk in std::mem::take(&mut core.dirty_rooms) {
        flush_room(core, rk);
    }
    for (rk, at) in std::mem::take(&mut core.resyncs) {
        send_snapshot(core, rk, at);
    }
}

/// The top-level keys an op list touched, in first-touch order.
fn touched_keys(ops: &[Op]) -> Vec<String> {
    let mut top: Vec<String> = Vec::new();
    for op in ops {
        if let Some(k) = state::tokens(op.path())
            .ok()
            .and_then(|t| t.into_iter().next())
        {
            if !top.contains(&k) {
                top.push(k);
            }
        }
    }
    top
}

/// Turns a room's pending ops into one patch (seq + 1), updating the checksum digest.
/// Clients without `nested_ops` get the ops flattened to top-level keys, or a snapshot when
/// the root itself was set; every `snapshot_every`th patch goes out as a snapshot.
pub fn flush_room(core: &mut ShardCore, rk: RoomKey) {
    let state_cfg = core.cfg.state.clone();
    let Some(room) = core.rooms.get_mut(rk) else {
        return;
    };
    let ops = std::mem::take(&mut room.pending_ops);
    if ops.is_empty() {
        return;
    }
    core.dirty_rooms.retain(|r| *r != rk);
    room.seq += 1;
    let seq = room.seq;
    let root_set = ops.iter().any(|op| op.path().is_empty());
    let top = touched_keys(&ops);
    if root_set {
        room.digest = crate::core::canon::StateDigest::build(&room.state);
    } else {
        for k in &top {
            room.digest.set(k, room.state.get(k));
        }
    }
    let checksum = (state_cfg.checksum_every > 0 && seq % state_cfg.checksum_every == 0)
        .then(|| room.digest.crc32());
    let snapshot_now = state_cfg.snapshot_every > 0 && seq % state_cfg.snapshot_every == 0;
    let flat: Vec<(String, Option<serde_json::Value>)> = top
        .into_iter()
        .map(|k| (k.clone(), room.state.get(&k).cloned()))
        .collect();
    let state_now = (root_set || snapshot_now).then(|| room.state.clone());
    let room_id = room.id.clone();
    core.fan_out(
        rk,
        Class::Reliable,
        None,
        by_codec_nesting_and_crc,
        &|w, m| {
            let crc = checksum.filter(|_| m.features.crc32);
            let len = 2 + u32::from(crc.is_some());
            match &state_now {
                Some(full) if snapshot_now || !m.features.nested_ops => {
                    encode::begin(w, "state.snapshot", None, Some(&room_id), len);
                    w.key("state").json(full);
                }
                _ if m.features.nested_ops => {
                    encode::begin(w, "state.patch", None, Some(&room_id), len);
                    w.key("ops").array(ops.len() as u32);
                    for op in &ops {
                        let value = match op {
                            Op::Set(_, v) => Some(v),
                            Op::Del(_) => None,
                        };
                        write_op(w, op.path(), value);
                    }
                    w.end_array();
                }
                _ => {
                    encode::begin(w, "state.patch", None, Some(&room_id), len);
                    w.key("ops").array(flat.len() as u32);
                    for (k, v) in &flat {
                        write_op(w, &format!("/{}", state::escape(k)), v.as_ref());
                    }
                    w.end_array();
                }
            }
            w.key("seq").u64(seq);
            if let Some(c) = crc {
                w.key("checksum").u64(u64::from(c));
            }
            encode::end(w);
        },
    );
}

fn write_op(w: &mut Writer<'_>, path: &str, value: Option<&serde_json::Value>) {
    match value {
        Some(v) => {
            w.map(3)
                .key("op")
                .str("set")
                .key("path")
                .str(path)
                .key("value")
                .json(v)
                .end_map();
        }
        None => {
            w.map(2)
                .key("op")
                .str("del")
                .key("path")
                .str(path)
                .end_map();
        }
    }
}

/// Sends a member a snapshot `{state, seq, checksum?}`. Pending ops are flushed first so
/// a snapshot always carries the seq of the last patch applied.
pub fn send_snapshot(core: &mut ShardCore, rk: RoomKey, at: MemberAt) {
    flush_room(core, rk);
    let Some(room) = core.rooms.get_mut(rk) else {
        return;
    };
    let Some(Member {
        codec, features, ..
    }) = room.members.iter().find(|m| m.at == at).cloned()
    else {
        return;
    };
    let crc = features.crc32.then(|| room.digest.crc32());
    let room = core.rooms.get(rk).expect("live room");
    let len = 2 + u32::from(crc.is_some());
    let frame = encode::frame(
        codec,
        &mut core.scratch,
        "state.snapshot",
        None,
        Some(&room.id),
        len,
        |w| {
            w.key("state").json(&room.state);
            w.key("seq").u64(room.seq);
            if let Some(c) = crc {
                w.key("checksum").u64(u64::from(c));
            }
        },
    );
    core.send_to(at, frame, Class::Reliable);
}

/// Asks for a snapshot at the end of this turn (at most one per member and room).
pub fn queue_resync(core: &mut ShardCore, rk: RoomKey, at: MemberAt) {
    if !core.resyncs.contains(&(rk, at)) {
        core.resyncs.push((rk, at));
    }
}

/// `state.ack`: records the member's seq; a seq ahead of the room's, or the room's seq
/// with another CRC-32 (for clients that negotiated it), gets a fresh snapshot. Other
/// checksum types (the reference SDK's SHA-256 text) are ignored.
pub fn handle_ack(
    core: &mut ShardCore,
    rk: RoomKey,
    at: MemberAt,
    seq: Option<i64>,
    checksum: Option<u32>,
) {
    let Some(room) = core.rooms.get_mut(rk) else {
        return;
    };
    let room_seq = room.seq;
    let current_crc = room.digest.crc32();
    let Some(member) = room.member_at_mut(at) else {
        return;
    };
    let Some(seq) = seq.and_then(|s| u64::try_from(s).ok()) else {
        return;
    };
    let crc32 = member.features.crc32;
    if seq <= room_seq {
        member.acked_seq = member.acked_seq.max(seq);
    }
    let ahead = seq > room_seq;
    let mismatch = crc32 && seq == room_seq && checksum.is_some_and(|c| c != current_crc);
    if ahead || mismatch {
        queue_resync(core, rk, at);
    }
}
