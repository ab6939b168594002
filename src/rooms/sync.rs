//! State sync of the rooms dialect: ops batched per turn into one `state.patch` per room,
//! snapshots (on join, on resume, on resync, every `snapshot_every` patches), CRC-32
//! checksums for clients that asked, acks and resyncs. The op semantics are
//! `state`'s; the checksum is `canon`'s.

use crate::codec::Writer;
use crate::core::outbound::Class;
use crate::core::SessionAt;

use super::room::{Member, RoomKey};
use super::state::{self, Op};
use super::{by_codec_nesting_and_crc, canon, encode, Cx, Host};

/// Applies one op to a room's state; a change joins this turn's patch.
pub(crate) fn apply_op<H: Host>(cx: &mut Cx<'_, H>, rk: RoomKey, op: Op) {
    let Some(room) = cx.rooms.slab.get_mut(rk) else {
        return;
    };
    if let Ok(true) = state::apply(&mut room.state, &op) {
        room.pending_ops.push(op);
        if !cx.rooms.patches.contains(&rk) {
            cx.rooms.patches.push(rk);
        }
    }
}

/// Sends every room's pending patch, then the resyncs asked for this turn.
pub(crate) fn flush_patches<H: Host>(cx: &mut Cx<'_, H>) {
    for rk in std::mem::take(&mut cx.rooms.patches) {
        flush_room(cx, rk);
    }
    for (rk, at) in std::mem::take(&mut cx.rooms.resyncs) {
        send_snapshot(cx, rk, at);
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
pub(crate) fn flush_room<H: Host>(cx: &mut Cx<'_, H>, rk: RoomKey) {
    let state_cfg = cx.eng.cfg.state.clone();
    let Some(room) = cx.rooms.slab.get_mut(rk) else {
        return;
    };
    let ops = std::mem::take(&mut room.pending_ops);
    if ops.is_empty() {
        return;
    }
    cx.rooms.patches.retain(|r| *r != rk);
    room.seq += 1;
    let seq = room.seq;
    let root_set = ops.iter().any(|op| op.path().is_empty());
    let top = touched_keys(&ops);
    if root_set {
        room.digest = canon::StateDigest::build(&room.state);
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
    cx.fan_out(
        rk,
        Class::Reliable,
        None,
        by_codec_nesting_and_crc,
        |w, m| {
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
pub(crate) fn send_snapshot<H: Host>(cx: &mut Cx<'_, H>, rk: RoomKey, at: SessionAt) {
    flush_room(cx, rk);
    let Some(room) = cx.rooms.slab.get_mut(rk) else {
        return;
    };
    let Some(Member {
        codec, features, ..
    }) = room.member_at(at).cloned()
    else {
        return;
    };
    let crc = features.crc32.then(|| room.digest.crc32());
    let room = cx.rooms.slab.get(rk).expect("live room");
    let len = 2 + u32::from(crc.is_some());
    let frame = encode::frame(
        codec,
        &mut cx.eng.scratch,
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
    cx.eng.send_to(at, frame, Class::Reliable);
}

/// Asks for a snapshot at the end of this turn (at most one per member and room).
pub(crate) fn queue_resync<H: Host>(cx: &mut Cx<'_, H>, rk: RoomKey, at: SessionAt) {
    if !cx.rooms.resyncs.contains(&(rk, at)) {
        cx.rooms.resyncs.push((rk, at));
    }
}

/// `state.ack`: records the member's seq; a seq ahead of the room's, or the room's seq
/// with another CRC-32 (for clients that negotiated it), gets a fresh snapshot. Other
/// checksum types (the reference SDK's SHA-256 text) are ignored.
pub(crate) fn handle_ack<H: Host>(
    cx: &mut Cx<'_, H>,
    rk: RoomKey,
    at: SessionAt,
    seq: Option<i64>,
    checksum: Option<u32>,
) {
    let Some(room) = cx.rooms.slab.get_mut(rk) else {
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
        queue_resync(cx, rk, at);
    }
}
