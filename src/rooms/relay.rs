//! Messages in a room: room logic hooks and their actions, relays of `room.message`,
//! `room.message.bytes` and `position.update`, state acks and resyncs routed to `sync`.

use super::*;

/// Runs a logic hook and carries out the actions it asked for (no input to relay).
pub(super) fn run_hook<H: Host>(
    cx: &mut Cx<'_, H>,
    rk: RoomKey,
    now: u64,
    hook: impl FnOnce(&mut dyn logic::RoomLogic, &mut RoomCtx<'_>),
) {
    let mut actions = std::mem::take(&mut cx.rooms.actions);
    if let Some(room) = cx.rooms.slab.get_mut(rk) {
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
    run_actions(cx, rk, &mut actions, None, now);
    cx.rooms.actions = actions;
}

/// The input being handled, for `Action::Relay`.
pub(super) struct Relayed<'x> {
    input: &'x Input<'x>,
    class: Class,
}

pub(super) fn run_actions<H: Host>(
    cx: &mut Cx<'_, H>,
    rk: RoomKey,
    actions: &mut Vec<Action>,
    relayed: Option<&Relayed<'_>>,
    _now: u64,
) {
    for action in actions.drain(..) {
        let Some(room) = cx.rooms.slab.get(rk) else {
            return;
        };
        let room_id = room.id.clone();
        match action {
            Action::Relay => {
                let Some(r) = relayed else { continue };
                let input = r.input;
                cx.fan_out(rk, r.class, None, by_codec_and_bin, |w, m| {
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
                cx.fan_out(rk, Class::Reliable, None, by_codec, |w, _| {
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
                    &mut cx.eng.scratch,
                    "room.message",
                    None,
                    Some(&room_id),
                    2,
                    |w| {
                        w.key("type").str(&msg_type).key("data").json(&data);
                    },
                );
                cx.eng.send_to(at, frame, Class::Reliable);
            }
            Action::Set { path, value } => sync::apply_op(cx, rk, Op::Set(path, value)),
            Action::Del { path } => sync::apply_op(cx, rk, Op::Del(path)),
        }
    }
}

pub(super) fn unreliable_key(client_id: &str, msg_type: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    client_id.hash(&mut h);
    msg_type.hash(&mut h);
    h.finish() | 1
}

/// A command for a room whose home is this shard, from a member wherever it lives.
pub(super) fn room_input<H: Host>(
    cx: &mut Cx<'_, H>,
    rk: RoomKey,
    sender: ReplyTo,
    env: &decode::Envelope<'_, '_>,
    cmd: Command<'_, '_>,
    now: u64,
) {
    let at = sender.at;
    let Some(room) = cx.rooms.slab.get(rk) else {
        return;
    };
    let Some(member) = room.member_at(at) else {
        // A remote session's frame raced its leave: still answer its RPC.
        let (r, room_id) = (
            Refusal::new(ErrorCode::NotInRoom, "not in this room"),
            room.id.clone(),
        );
        return refuse(cx, sender, env.rid, Some(&room_id), &r);
    };
    let to = ReplyTo {
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
            let unreliable = cx
                .eng
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
            let mut actions = std::mem::take(&mut cx.rooms.actions);
            {
                let room = cx.rooms.slab.get_mut(rk).expect("live room");
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
                cx,
                rk,
                &mut actions,
                Some(&Relayed {
                    input: &input,
                    class,
                }),
                now,
            );
            cx.rooms.actions = actions;
            ack(cx, to, env.rid, Some(&room_id));
        }
        Command::Relay => {
            let class = Class::Unreliable(unreliable_key(&client_id, env.t));
            let t = env.t;
            let p = env.p;
            cx.fan_out(rk, class, Some(at), by_codec, |w, _| {
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
            ack(cx, to, env.rid, Some(&room_id));
        }
        Command::StateAck { seq, checksum } => {
            sync::handle_ack(cx, rk, at, seq, checksum);
            ack(cx, to, env.rid, Some(&room_id));
        }
        Command::StateResync => {
            sync::queue_resync(cx, rk, at);
            ack(cx, to, env.rid, Some(&room_id));
        }
        Command::Join { .. }
        | Command::Leave
        | Command::List { .. }
        | Command::Enqueue { .. }
        | Command::Dequeue
        | Command::Unknown => {}
    }
}
